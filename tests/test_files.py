"""Tests for docsyncd.files: static files never leave their folder, for /static/ and /<app>/static/."""

from __future__ import annotations

import os

from bokeh.settings import settings

from docsyncd.files import ContainedFile

from guard_support import ServerTestCase, send
from unit_support import SLIDER_APP, write_dir_app


class StaticContainmentTests(ServerTestCase):
    def setUp(self):
        self.secret = self.tmp_path / "secret.txt"
        self.secret.write_text("top secret")
        (self.tmp_path / "outside").mkdir()
        (self.tmp_path / "outside" / "x.txt").write_text("outside")
        self.app = write_dir_app(self.tmp_path, "dash", {
            "main.py": SLIDER_APP, "static/style.css": "body {}", "static/sub/inner.css": "p {}",
        })
        static = os.path.join(self.app, "static")
        os.symlink(self.secret, os.path.join(static, "leak.txt"))
        os.symlink(self.tmp_path / "outside", os.path.join(static, "leakdir"))
        os.symlink(os.path.join(static, "style.css"), os.path.join(static, "alias.css"))
        self.server = self.start_server(self.app)

    def status(self, path):
        return send(self.server, path).status

    def test_files_inside_are_served(self):
        """Files in the folder, in subfolders and through symlinks that stay inside are served."""
        self.assertEqual(send(self.server, "/dash/static/style.css").body, b"body {}")
        self.assertEqual(send(self.server, "/dash/static/sub/inner.css").body, b"p {}")
        self.assertEqual(send(self.server, "/dash/static/alias.css").body, b"body {}")

    def test_symlink_out_of_the_folder(self):
        """A symlink to a file or a directory outside the folder answers 404."""
        response = send(self.server, "/dash/static/leak.txt")
        self.assertEqual(response.status, 404)
        self.assertNotIn(b"top secret", response.body)
        self.assertEqual(self.status("/dash/static/leakdir/x.txt"), 404)

    def test_dot_dot(self):
        """``..`` segments, plain or percent-encoded, do not climb out of the folder."""
        for path in ["/dash/static/../../secret.txt", "/dash/static/%2e%2e/%2e%2e/secret.txt",
                     "/dash/static/sub/../../../secret.txt", "/static/../../../../../../etc/passwd"]:
            response = send(self.server, path)
            self.assertIn(response.status, (404, 400), path)
            self.assertNotIn(b"top secret", response.body)
            self.assertNotIn(b"root:", response.body)

    def test_encoded_slashes(self):
        """A ``%2F`` inside a segment is not a way out: 404."""
        for path in ["/dash/static/..%2F..%2Fsecret.txt", "/dash/static/sub%2F..%2F..%2F..%2Fsecret.txt",
                     "/static/js%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/dash/static/%2Fetc%2Fpasswd"]:
            response = send(self.server, path)
            self.assertEqual(response.status, 404, path)
            self.assertNotIn(b"top secret", response.body)

    def test_odd_bytes(self):
        """NUL bytes and backslashes in a path are answered 404, not 500."""
        for path in ["/dash/static/style.css%00.txt", "/dash/static/..%5C..%5Csecret.txt"]:
            self.assertEqual(self.status(path), 404, path)

    def test_no_directory_listing(self):
        """A folder is not listed."""
        self.assertEqual(self.status("/dash/static/"), 404)
        self.assertEqual(self.status("/dash/static/sub/"), 404)
        self.assertEqual(self.status("/static/"), 404)

    def test_bokehjs_served(self):
        """BokehJS is still served from /static/."""
        self.assertEqual(self.status("/static/js/bokeh.min.js"), 200)

    def test_bokehjs_folder_is_contained(self):
        """/static/ is a ContainedFile on Bokeh's static folder."""
        self.assertEqual(ContainedFile(settings.bokehjs_path()).folder, os.path.realpath(settings.bokehjs_path()))
