"""``docsync serve --dev`` in Chromium: editing the app reloads the open page
with the new code; a syntax error shows its traceback in the page and the log;
fixing it brings the app back, all without restarting the server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from e2e_support import ARTIFACTS, REPO, START_TIMEOUT, STOP_TIMEOUT, free_port, wait_until

pytestmark = pytest.mark.e2e

RELOAD_TIMEOUT = 15.0  # seconds from saving main.py to the page showing the result


def app_source(text: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        from bokeh.models import Div
        from bokeh.plotting import curdoc
        {extra}
        curdoc().add_root(Div(text={text!r}, name="banner"))
        curdoc().title = "dev reload"
    """)


def save(path: Path, source: str) -> None:
    """Write the file as an editor would, with a modification time that surely differs."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(source)
    after = path.stat().st_mtime_ns
    if after <= before:
        os.utime(path, ns=(before + 10**9, before + 10**9))


def docsync_command() -> list[str]:
    """The installed `docsync` script beside this interpreter (else `python -m docsyncd.cli`)."""
    script = shutil.which("docsync", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "docsyncd.cli"]


HELPER_APP = """\
from bokeh.models import Div
from bokeh.plotting import curdoc
from helper import banner_text
curdoc().add_root(Div(text=banner_text(), name="banner"))
"""


@pytest.fixture
def dev_server(server_kind, tmp_path, request):
    """`docsync serve devapp --dev` on a free port, for a small directory app in a temporary directory
    (parametrized indirectly with "single": `single.py`, a one-file app importing `helper.py` beside it)."""
    if server_kind != "docsync":
        pytest.skip("`docsync serve --dev` is docsyncd's own command")
    if getattr(request, "param", None) == "single":
        save(tmp_path / "helper.py", "def banner_text():\n    return 'helper one'\n")
        save(tmp_path / "single.py", HELPER_APP)
        app = tmp_path / "single.py"
    else:
        app = tmp_path / "devapp"
        app.mkdir()
        save(app / "main.py", app_source("version one"))
    port = free_port()
    log_path = tmp_path / "docsync-serve.log"
    log_file = open(log_path, "w+", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([*docsync_command(), "serve", app.name, "--dev", "--port", str(port),
                             "--address", "127.0.0.1"],
                            cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)

    def log() -> str:
        log_file.flush()
        return log_path.read_text(encoding="utf-8", errors="replace")

    url = f"http://localhost:{port}/{app.stem}"

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"docsync serve exited with {proc.returncode}; log:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    wait_until(answers, timeout=START_TIMEOUT, message=lambda: f"{url} to answer; log:\n{log()}")
    yield (app if app.is_file() else app / "main.py"), url, log
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"docsync serve did not exit within {STOP_TIMEOUT}s of SIGTERM; log:\n{log()}")
    finally:
        log_file.close()
    assert code == 0, f"docsync serve exited with {code} after SIGTERM; log:\n{log_path.read_text()}"


def page_state(page) -> dict | None:
    """What the tab shows now, or None while it is between pages."""
    try:
        return page.evaluate("""() => ({
            marked: window.__before_edit === true,
            banner: (window.Bokeh && Bokeh.documents.length > 0
                     && Bokeh.documents[0].get_model_by_name("banner")?.text) || null,
            idle: !!(window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle),
            pre: document.querySelector("pre")?.innerText ?? null,
            title: document.title,
        })""")
    except Exception:  # the page is navigating: its execution context just went away
        return None


def mark(page) -> None:
    """Mark the loaded page, so that a reload is seen as the mark's disappearance."""
    page.evaluate("() => { window.__before_edit = true; }")


def wait_for_page(page, predicate, what: str, log) -> dict:
    last: list = [None]

    def check():
        last[0] = page_state(page)
        return last[0] is not None and predicate(last[0])

    wait_until(check, timeout=RELOAD_TIMEOUT, interval=0.1,
               message=lambda: f"{what} (page now: {last[0]!r})\nbrowser console:\n"
                               + "\n".join(page.console[-20:]) + f"\nserver log:\n{log()[-3000:]}")
    return last[0]


def test_dev_edit_reloads_page_syntax_error_shows_and_fix_recovers(dev_server, page):
    """Saving main.py reloads the open page with the new text; a syntax error reloads it into a page
    showing the traceback (also in the log); fixing the file brings the app back, in the same server."""
    main_py, url, log = dev_server
    page.open(url)
    assert page.get("banner", "text") == "version one"
    page.get_by_text("version one").wait_for()

    # 1. an edit: the page reloads by itself and shows the new code's document
    mark(page)
    save(main_py, app_source("version two"))
    wait_for_page(page, lambda s: not s["marked"] and s["banner"] == "version two" and s["idle"],
                  "the page to reload with version two", log)
    page.get_by_text("version two").wait_for()

    # 2. a syntax error: the page reloads into the error, with the traceback
    mark(page)
    save(main_py, app_source("version three", extra="oops = ("))
    state = wait_for_page(page, lambda s: not s["marked"] and s["pre"] and "SyntaxError" in s["pre"],
                          "the page to show the syntax error", log)
    assert "main.py" in state["pre"] and "Traceback" in state["pre"]
    assert "500" in state["title"]
    assert page.get_by_text("was never closed").first.is_visible()
    assert "SyntaxError" in log() and "did not load" in log()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "test_dev_reload-syntax-error.png"), full_page=True)

    # 3. the fix: the error page reloads into the app, no restart needed
    mark(page)
    save(main_py, app_source("version three"))
    wait_for_page(page, lambda s: not s["marked"] and s["banner"] == "version three" and s["idle"],
                  "the page to come back with version three", log)
    page.get_by_text("version three").wait_for()
    assert log().count(" running at http://") == 1, "the server was restarted"


@pytest.mark.parametrize("dev_server", ["single"], indirect=True)
def test_dev_edit_of_an_imported_module_reloads_page(dev_server, page):
    """Editing helper.py, which a single-file app imports, reloads the open page, and the page shows the new
    helper's result (bokeh serve --dev restarts on it too)."""
    single_py, url, log = dev_server
    page.open(url)
    assert page.get("banner", "text") == "helper one"
    wait_until(lambda: "helper.py; watching it too" in log(), timeout=5, message="the helper to be watched")
    mark(page)
    save(single_py.parent / "helper.py", "def banner_text():\n    return 'helper two'\n")
    wait_for_page(page, lambda s: not s["marked"] and s["banner"] == "helper two" and s["idle"],
                  "the page to reload with the new helper", log)
    page.get_by_text("helper two").wait_for()
