"""docsyncd.client in separate processes against the real daemon, watched by Chromium.

The clients are examples/client_push.py (Bokeh's client-docs script with only
its import line changed), examples/client_listen.py and, for the Deferred API
inside a running reactor, examples/client_service.tac under twistd.
"""

from __future__ import annotations

import pytest

import signal

from client_support import ClientProcess, client_env, docsync_only, opened_url, start_docsync, stop_quietly
from e2e_support import EXAMPLES, TWISTD_CMD, http_ok, start_process

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures(docsync_only.__name__)]

#: The line the script animates: its data source is the one with 80 points.
LINE_STATE_JS = """
for (const m of doc.all_models) {
  if (m.type === "ColumnDataSource" && m.get_length() === 80) {
    const y = Array.from(m.get_column("y"));
    return {y: y.slice(0, 12), max: Math.max(...y.map(Math.abs))};
  }
}
return null;
"""

#: The animated line's glyph (line_width 4; its properties read back as {value: ...}).
ALPHA_JS = """
for (const m of doc.all_models) {
  if (m.type === "Line" && m.line_width.value === 4) return m.line_alpha.value;
}
return null;
"""


@pytest.fixture
def docsync(tmp_path):
    server = start_docsync(tmp_path, "--store", "memory")
    yield server
    stop_quietly(server)


def test_client_docs_script_animates_line(docsync, tmp_path, new_page):
    """Bokeh's client-docs script, only its import changed, pushes its plot and animates it in every browser tab."""
    source = (EXAMPLES / "client_push.py").read_text()
    assert "from docsyncd.client import push_session\n" in source
    assert "session.loop_until_closed()" in source and "curdoc().add_periodic_callback(update, 50)" in source
    browser_log = tmp_path / "browser.txt"
    script = ClientProcess(EXAMPLES / "client_push.py", tmp_path / "client.log", client_env(docsync.port, browser_log))
    try:
        url = opened_url(browser_log)
        assert url.startswith(f"http://localhost:{docsync.port}/?bokeh-session-id=")
        tabs = [new_page(), new_page()]
        for tab in tabs:
            tab.open(url)
        for tab in tabs:
            ys, alphas = [], set()

            def animated(tab=tab, ys=ys, alphas=alphas):
                state = tab.js(LINE_STATE_JS)
                if state is not None and state["y"] not in ys:
                    ys.append(state["y"])
                alphas.add(tab.js(ALPHA_JS))
                return len(ys) >= 4 and len(alphas) >= 3

            tab.wait_for(animated, message="the line's y values and line_alpha to change (the periodic callback)")
        script.wait_for_output(f"session page: {url}\n")  # where the session is, also without a browser
        assert script.interrupt() == 0, script.output()  # Ctrl-C: loop_until_closed closes and returns
    finally:
        script.kill()


def test_browser_slider_reaches_client_callback(docsync, tmp_path, page):
    """A slider moved in Chromium runs the client script's on_change callback, whose change the browser then shows."""
    browser_log = tmp_path / "browser.txt"
    script = ClientProcess(EXAMPLES / "client_listen.py", tmp_path / "client.log", client_env(docsync.port, browser_log))
    try:
        page.open(opened_url(browser_log))
        assert page.get("div", "text") == "Nothing yet: drag the slider."
        page.set("slider", "value", 7)
        script.wait_for_output("slider value 7")
        page.wait_for_prop("div", "text", "the script saw 7")
        page.set("slider", "value", 3)
        script.wait_for_output("slider value 3")
        page.wait_for_prop("div", "text", "the script saw 3")
        assert script.interrupt() == 0, script.output()
    finally:
        script.kill()


def test_service_holds_a_session(docsync, tmp_path, page):
    """An IService in a twistd application publishes through the Deferred API and ticks a clock; SIGTERM closes it."""
    service = start_process([*TWISTD_CMD, "-n", "--pidfile=", "-y", str(EXAMPLES / "client_service.tac")],
                            tmp_path / "service.log", lambda: http_ok(f"{docsync.base_url}/published/clock"),
                            env={"BOKEH_DEFAULT_SERVER_PORT": str(docsync.port)})
    try:
        page.open(f"{docsync.base_url}/?bokeh-session-id=clock")
        first = page.wait_for_prop("clock", "text", lambda text: text.count(":") == 2)
        page.wait_for_prop("clock", "text", lambda text: text.count(":") == 2 and text != first)
        assert service.stop() in (0, -signal.SIGTERM)  # twistd re-raises SIGTERM after a clean stop
        log = service.log_text()
        assert "published at http://localhost" in log and "Traceback" not in log, log
    finally:
        stop_quietly(service)
