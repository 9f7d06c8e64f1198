"""docsyncd.extensions: Bokeh's extension registry served at /static/extensions/<name>/..., as bokeh serve does.

The extension packages are tests/extension_package/docsync_fake_ext (imported
by the apps here) and docsync_unimported_ext (imported only by the URL lookup).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from bokeh.embed import bundle

from docsyncd import cli

from guard_support import ServerTestCase, send
from unit_support import write_app

PACKAGES = Path(__file__).resolve().parent / "extension_package"
FAKE_JS = (PACKAGES / "docsync_fake_ext" / "dist" / "docsync_fake_ext.min.js").read_text()

#: An app whose document holds a model of the extension package.
EXTENSION_APP = """
from bokeh.io import curdoc
from docsync_fake_ext import FakeExtensionDiv

curdoc().add_root(FakeExtensionDiv(name="fake", text="from an extension"))
"""


@pytest.fixture(autouse=True, scope="module")
def extension_packages_importable():
    sys.path.insert(0, str(PACKAGES))
    yield
    sys.path.remove(str(PACKAGES))


def extension_urls(html: str) -> list[str]:
    return re.findall(r'src="([^"]*/static/extensions/[^"]*)"', html)


class ExtensionServingTests(ServerTestCase):
    def setUp(self):
        self.server = self.start_server(write_app(self.tmp_path, "ext", EXTENSION_APP))

    def test_page_lists_the_extension_and_its_script_is_served(self):
        """The page's bundle names the extension's script under /static/extensions/, and that URL serves the file."""
        (url,) = extension_urls(send(self.server, "/ext").body.decode())
        self.assertEqual(url, "/static/extensions/docsync_fake_ext/docsync_fake_ext.min.js")
        response = send(self.server, url)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body.decode(), FAKE_JS)
        self.assertIn("javascript", response.headers["content-type"])
        self.assertEqual(send(self.server, "/static/extensions/docsync_fake_ext/sub/inner.css").body, b"sub {}\n")

    def test_unversioned_answers_are_revalidated(self):
        """Without ?v= the answer must be revalidated: no-cache, Last-Modified and an ETag, then 304s."""
        url = "/static/extensions/docsync_fake_ext/docsync_fake_ext.min.js"
        first = send(self.server, url)
        self.assertEqual(first.headers["cache-control"], "no-cache")
        self.assertTrue(first.headers["etag"].startswith('"'))
        for headers in ({"If-None-Match": first.headers["etag"]},
                        {"If-Modified-Since": first.headers["last-modified"]}):
            again = send(self.server, url, headers)
            self.assertEqual((again.status, again.body), (304, b""), headers)
        self.assertEqual(send(self.server, url, {"If-None-Match": '"other"'}).status, 200)

    def test_versioned_answers_are_cached_for_a_year(self):
        """With ?v= (Bokeh adds the package version's hash) the answer may be cached for a year."""
        response = send(self.server, "/static/extensions/docsync_fake_ext/docsync_fake_ext.min.js?v=abc")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["cache-control"], f"public, max-age={365 * 24 * 3600}")

    def test_unknown_names_and_folders_answer_404(self):
        """An unknown name, a package that is no extension, a folder and the bare prefix answer 404."""
        for path in ["/static/extensions/nope/x.js", "/static/extensions/os/os.py", "/static/extensions/",
                     "/static/extensions/docsync_fake_ext/", "/static/extensions/docsync_fake_ext/sub/",
                     "/static/extensions/%C3%A9/x.js", "/static/extensions/a.b/x.js", "/static/extensions"]:
            self.assertEqual(send(self.server, path).status, 404, path)

    def test_a_registered_name_is_not_imported_again(self):
        """A name the registry holds is served from its folder (Panel registers ``panel`` itself)."""
        folder = self.tmp_path / "registered"
        folder.mkdir()
        (folder / "a.js").write_text("registered")
        bundle.extension_dirs["docsync_registered"] = folder
        self.addCleanup(bundle.extension_dirs.pop, "docsync_registered")
        self.assertEqual(send(self.server, "/static/extensions/docsync_registered/a.js").body, b"registered")


class ExtensionContainmentTests(ServerTestCase):
    """Files outside an extension's folder are never served, whatever the path or symlink."""

    def setUp(self):
        self.secret = self.tmp_path / "secret.txt"
        self.secret.write_text("top secret")
        (self.tmp_path / "outside").mkdir()
        (self.tmp_path / "outside" / "x.js").write_text("outside")
        folder = self.tmp_path / "ext" / "dist"
        folder.mkdir(parents=True)
        (folder / "ok.js").write_text("ok")
        os.symlink(self.secret, folder / "leak.js")
        os.symlink(self.tmp_path / "outside", folder / "leakdir")
        os.symlink(folder / "ok.js", folder / "alias.js")
        bundle.extension_dirs["docsync_contained"] = folder
        self.addCleanup(bundle.extension_dirs.pop, "docsync_contained")
        self.server = self.start_server(write_app(self.tmp_path, "plain", "from bokeh.io import curdoc\n"))

    def test_inside_served_outside_refused(self):
        """Files and symlinks inside the folder are served; symlinks, ``..`` and ``%2F`` out of it answer 404."""
        base = "/static/extensions/docsync_contained/"
        self.assertEqual(send(self.server, base + "ok.js").body, b"ok")
        self.assertEqual(send(self.server, base + "alias.js").body, b"ok")
        for path in ["leak.js", "leakdir/x.js", "../../secret.txt", "%2e%2e/%2e%2e/secret.txt",
                     "..%2F..%2Fsecret.txt", "ok.js%00", "../dist/ok.js/../../../secret.txt"]:
            response = send(self.server, base + path)
            self.assertIn(response.status, (400, 404), path)
            self.assertNotIn(b"top secret", response.body)
            self.assertNotIn(b"outside", response.body)

    def test_under_prefix(self):
        """With --prefix the extensions are served under it, and nowhere else."""
        server = self.start_server(write_app(self.tmp_path, "other", "from bokeh.io import curdoc\n"),
                                   args=["--prefix", "/pre/fix"])
        self.assertEqual(send(server, "/pre/fix/static/extensions/docsync_contained/ok.js").body, b"ok")
        self.assertEqual(send(server, "/static/extensions/docsync_contained/ok.js").status, 404)


def test_an_installed_extension_not_yet_imported_is_found(tmp_path):
    """A process that never imported an installed extension (a --workers worker that did not run the app yet)
    imports it when its URL is asked for, and serves its file; nothing that is not an extension is imported."""
    from unit_support import InMemoryServer

    assert "docsync_unimported_ext" not in sys.modules
    server = InMemoryServer([write_app(tmp_path, "plain", "from bokeh.io import curdoc\n")])
    try:
        response = send(server, "/static/extensions/docsync_unimported_ext/docsync_unimported_ext.js")
        assert (response.status, response.body) == (200, b"/* docsync_unimported_ext */\n")
        assert "docsync_unimported_ext" in sys.modules
        assert send(server, "/static/extensions/antigravity/x.js").status == 404
        assert "antigravity" not in sys.modules
    finally:
        server.restore()


def test_docsync_html_inlines_the_extension(tmp_path, capsys):
    """``docsync html`` writes the extension's script into the standalone page, as Bokeh's file_html does."""
    out = tmp_path / "page.html"
    assert cli.main(["html", write_app(tmp_path, "ext", EXTENSION_APP), "-o", str(out)]) == 0
    page = out.read_text()
    assert "window.docsync_fake_ext_loaded" in page
    assert "/static/extensions/" not in page

