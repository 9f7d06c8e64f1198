"""Chromium against a real server running the example apps.

Run with ``pytest tests/e2e`` (docsyncd) or ``pytest tests/e2e --e2e-server=bokeh``.
"""

import csv
import io
import time
import uuid

import pytest

from e2e_support import EXAMPLES, wait_until

pytestmark = pytest.mark.e2e

DASHBOARD_CSV = EXAMPLES / "dashboard" / "data" / "points.csv"
HOOK_ARGS = ["--unused-session-lifetime", "1000", "--check-unused-sessions", "500"]


def assert_stays(read, expected, duration=0.6, interval=0.05):
    """Check that ``read()`` keeps returning ``expected`` for ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        value = read()
        assert value == expected, f"changed to {value!r}, expected it to stay {expected!r}"
        time.sleep(interval)


def hook_lines(path):
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# --------------------------------------------------------------------------
# press_me.py
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def press_me(module_serve):
    return module_serve("press_me.py")


@pytest.mark.timeout(60)
def test_press_me_click_appends_text(press_me, page):
    """Each click on "Press Me" makes Python append one entry to the named text source."""
    page.open(press_me.url)
    assert page.length("press_me_source") == 0

    button = page.get_by_role("button", name="Press Me")
    for n in (1, 2):
        button.click()
        page.wait_for(lambda: page.length("press_me_source") == n, message=f"{n} text entries")

    assert page.column("press_me_source", "text") == ["0", "1"]
    colors = page.column("press_me_source", "text_color")
    assert len(colors) == 2 and all(c.startswith("#") for c in colors)
    xs = page.column("press_me_source", "x")
    assert len(xs) == 2 and all(0 <= x <= 100 for x in xs)


@pytest.mark.timeout(60)
def test_press_me_screenshot_not_blank(press_me, page):
    """After clicks the rendered press_me plot shows coloured text on black, not a blank page."""
    page.open(press_me.url)
    before = page.screenshot(full_page=True)
    assert coloured_pixels(before) < 50, "nothing should be coloured before the first click"

    button = page.get_by_role("button", name="Press Me")
    for n in range(1, 6):
        button.click()
        page.wait_for(lambda: page.length("press_me_source") == n, message=f"{n} text entries")

    shot = {}

    def rendered():
        shot["png"] = page.screenshot(full_page=True)
        return coloured_pixels(shot["png"]) > 200

    page.wait_for(rendered, message="coloured text pixels in the screenshot")
    print(f"press_me screenshot: {len(before)} bytes before clicks, {len(shot['png'])} after")
    assert len(shot["png"]) > len(before) + 1_000, "the numbers should add detail to the PNG"
    assert len(shot["png"]) > 5_000, f"screenshot is only {len(shot['png'])} bytes"


def coloured_pixels(png: bytes) -> int:
    """Pixels that are clearly coloured (not grey/black/white): the RdYlBu3 numbers."""
    try:
        from PIL import Image
    except ImportError:  # no Pillow: fall back to the PNG size check alone
        return 10**6
    img = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(n for n, (r, g, b) in img.getcolors(1 << 24) if max(r, g, b) - min(r, g, b) > 40)


# --------------------------------------------------------------------------
# dashboard/ (directory app)
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard(module_serve):
    return module_serve("dashboard")


@pytest.mark.timeout(60)
def test_dashboard_theme_applied(dashboard, page):
    """theme.yaml's Plot and Title values reach the browser's models."""
    page.open(dashboard.url)
    assert page.get("dashboard_plot", "background_fill_color") == "#fafaf0"
    assert page.js("return e2e.model('dashboard_plot').title.text_color;") == "#123456"
    assert page.js("return e2e.model('dashboard_plot').title.text_font_size;") == "16px"


@pytest.mark.timeout(60)
def test_dashboard_template_and_static_files(dashboard, page):
    """templates/index.html is used and links static/style.css, which is served and applied."""
    page.open(dashboard.url)
    assert page.locator('link[rel="stylesheet"][href="/dashboard/static/style.css"]').count() == 1
    assert page.locator("header.dashboard-header").count() == 1
    # The stylesheet really applied: body background from style.css.
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(244, 244, 238)"

    css = page.request.get(f"{dashboard.base_url}/dashboard/static/style.css")
    assert css.status == 200
    assert "text/css" in css.headers.get("content-type", "")
    assert ".dashboard-header" in css.text()

    logo = page.request.get(f"{dashboard.base_url}/dashboard/static/logo.svg")
    assert logo.status == 200
    assert "<svg" in logo.text()

    missing = page.request.get(f"{dashboard.base_url}/dashboard/static/nope.css")
    assert missing.status == 404


@pytest.mark.timeout(60)
def test_dashboard_data_loaded(dashboard, page):
    """main.py finds data/points.csv next to itself, and its rows appear in the document."""
    with open(DASHBOARD_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    page.open(dashboard.url)
    assert page.column("dashboard_source", "label") == [r["label"] for r in rows]
    assert page.column("dashboard_source", "x") == [float(r["x"]) for r in rows]
    assert "peak summit at y=21.75" in page.get("dashboard_info", "text")
    assert page.get_by_text("peak summit at y=21.75").count() == 1


@pytest.mark.timeout(60)
def test_dashboard_server_context(dashboard, page):
    """main.py sees the attributes on_server_loaded and on_session_created set on the server context."""
    page.open(dashboard.url)
    text = page.get("dashboard_server_info", "text")
    assert text.startswith("server started: True, sessions created: "), text
    assert int(text.rsplit(" ", 1)[1]) >= 1


@pytest.mark.timeout(60)
def test_request_arguments(dashboard, page):
    """/dashboard?title=Hello puts Hello in the heading, the plot title and the page title."""
    page.open(dashboard.app_url("title=Hello"))
    assert page.get("dashboard_title", "text") == "<h2>Hello</h2>"
    assert page.js("return e2e.model('dashboard_plot').title.text;") == "Hello"
    assert page.title() == "Hello"
    assert page.get_by_role("heading", name="Hello").count() == 1

    # Without the argument, the default.
    page.open(dashboard.url)
    assert page.get("dashboard_title", "text") == "<h2>Dashboard</h2>"


@pytest.mark.timeout(60)
def test_two_tabs_share_one_session(dashboard, new_page):
    """Two tabs on one bokeh-session-id stay in sync, including changes Python makes in response."""
    url = dashboard.app_url("bokeh-session-id=shared1")
    tab_a, tab_b = new_page(), new_page()
    tab_a.open(url)
    tab_b.open(url)
    assert tab_a.get("dashboard_slider", "value") == tab_b.get("dashboard_slider", "value") == 1

    tab_a.set("dashboard_slider", "value", 7)
    tab_b.wait_for_prop("dashboard_slider", "value", 7)
    tab_b.wait_for_prop("dashboard_div", "text", "scale: 7")
    tab_a.wait_for_prop("dashboard_div", "text", "scale: 7")
    with open(DASHBOARD_CSV, newline="", encoding="utf-8") as f:
        base_y = [float(r["y"]) for r in csv.DictReader(f)]
    tab_b.wait_for(lambda: tab_b.column("dashboard_source", "y") == [y * 7 for y in base_y],
                   message="tab B's source rescaled by Python")

    # And back the other way.
    tab_b.set("dashboard_slider", "value", 3)
    tab_a.wait_for_prop("dashboard_slider", "value", 3)
    tab_a.wait_for_prop("dashboard_div", "text", "scale: 3")


@pytest.mark.timeout(90)
def test_dashboard_lifecycle_hooks(serve, page, tmp_path):
    """Server and session hooks run: loaded at start, session created/destroyed, unloaded on SIGTERM."""
    hook_log = tmp_path / "hooks.log"
    server = serve("dashboard", extra_args=HOOK_ARGS, env={"DASHBOARD_HOOK_LOG": str(hook_log)})
    assert hook_lines(hook_log)[0] == "server_loaded"

    session_id = f"hooks-{uuid.uuid4().hex[:12]}"
    page.open(server.app_url(f"bokeh-session-id={session_id}"))
    assert f"session_created {session_id}" in hook_lines(hook_log)

    page.close()
    wait_until(lambda: f"session_destroyed {session_id}" in hook_lines(hook_log), timeout=15,
               message=lambda: f"on_session_destroyed for {session_id}; hooks: {hook_lines(hook_log)}\n"
                               f"server log:\n{server.log_tail()}")

    code = server.stop()
    lines = hook_lines(hook_log)
    assert lines[-1] == "server_unloaded", f"hooks: {lines}\nserver log:\n{server.log_tail()}"
    assert lines.count("server_loaded") == 1 and lines.count("server_unloaded") == 1, lines
    assert code == 0, f"exit code {code} after SIGTERM; server log:\n{server.log_tail()}"


@pytest.mark.timeout(60)
@pytest.mark.docsync_only(reason="bokeh serve does not run on_session_destroyed at shutdown")
def test_sigterm_destroys_open_sessions(serve, page, tmp_path):
    """On SIGTERM a session that is still open gets on_session_destroyed before on_server_unloaded."""
    hook_log = tmp_path / "hooks.log"
    server = serve("dashboard", env={"DASHBOARD_HOOK_LOG": str(hook_log)})
    session_id = f"open-{uuid.uuid4().hex[:12]}"
    page.open(server.app_url(f"bokeh-session-id={session_id}"))

    code = server.stop()
    lines = hook_lines(hook_log)
    assert f"session_destroyed {session_id}" in lines, f"hooks: {lines}\nserver log:\n{server.log_tail()}"
    assert "server_unloaded" in lines, f"hooks: {lines}\nserver log:\n{server.log_tail()}"
    assert lines.index(f"session_destroyed {session_id}") < lines.index("server_unloaded"), lines
    assert code == 0, f"exit code {code} after SIGTERM; server log:\n{server.log_tail()}"


# --------------------------------------------------------------------------
# callbacks.py
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def callbacks(module_serve):
    return module_serve("callbacks.py")


@pytest.mark.timeout(60)
def test_periodic_callback_runs_and_removes_itself(callbacks, page):
    """A 100 ms periodic callback ticks five times, removes itself, and then stops ticking."""
    page.open(callbacks.url)
    page.wait_for_prop("periodic_div", "text", "periodic: 5 (stopped)")
    assert_stays(lambda: page.get("periodic_div", "text"), "periodic: 5 (stopped)", duration=0.5)


@pytest.mark.timeout(60)
def test_timeout_and_next_tick_callbacks(callbacks, page):
    """A timeout callback and a next-tick callback each run once and update their Div."""
    page.open(callbacks.url)
    page.wait_for_prop("next_tick_div", "text", "next tick: ran")
    page.wait_for_prop("timeout_div", "text", "timeout: fired")


@pytest.mark.timeout(60)
def test_without_document_lock_callback(callbacks, page):
    """A without_document_lock callback runs and hands its result to a locked next-tick callback."""
    page.open(callbacks.url)
    page.wait_for_prop("nolock_div", "text", "without_document_lock: ran (45)")


@pytest.mark.timeout(60)
def test_next_tick_from_thread(callbacks, page):
    """add_next_tick_callback called from a plain thread runs the update on the session."""
    page.open(callbacks.url)
    page.wait_for_prop("thread_div", "text", "thread: ran (callbacks-worker)")


@pytest.mark.timeout(60)
@pytest.mark.docsync_only(reason="bokeh serve 3.9 never awaits an async def on_click handler")
def test_async_on_click(callbacks, page):
    """An async def handed straight to Button.on_click is awaited and its update reaches the browser."""
    page.open(callbacks.url)
    assert page.get("async_div", "text") == "async on_click: not clicked"
    page.get_by_role("button", name="Async click").click()
    page.wait_for_prop("async_div", "text", "async on_click: 42", timeout=5)


# --------------------------------------------------------------------------
# streaming.py
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def streaming(module_serve):
    return module_serve("streaming.py")


def _stream_state(page):
    return page.js("""
        const s = e2e.model('streaming_source');
        return {t: e2e.plain(s.get_column('t')), color: e2e.plain(s.get_column('color'))};""")


@pytest.mark.timeout(60)
def test_streaming_rollover(streaming, page):
    """Streamed points keep arriving, but the source never holds more than the rollover of 50."""
    page.open(streaming.url)
    page.record_events()
    samples = []

    def rolled_on():
        state = _stream_state(page)
        t = state["t"]
        samples.append(len(t))
        assert len(t) <= 50, f"source grew to {len(t)} points, rollover is 50"
        assert t == list(range(int(t[0]), int(t[0]) + len(t))) if t else True, f"gap in streamed t: {t}"
        # Full window, and it has moved on by at least 20 points since it filled.
        return len(t) == 50 and t[0] >= 20

    page.wait_for(rolled_on, timeout=15, message="the streamed window to roll over")
    assert "ColumnsStreamed" in page.recorded_events()
    first = _stream_state(page)["t"][-1]
    page.wait_for(lambda: _stream_state(page)["t"][-1] >= first + 3, message="stream to keep moving")
    assert max(samples) == 50


@pytest.mark.timeout(60)
def test_streaming_patch(streaming, page):
    """Every fifth streamed point is patched to a new colour, and the browser receives the patches."""
    page.open(streaming.url)
    page.record_events()
    page.wait_for(lambda: "ColumnsPatched" in page.recorded_events(), message="a ColumnsPatched event")

    def patched_correctly():
        state = _stream_state(page)
        pairs = list(zip(state["t"], state["color"]))[:-1]  # the newest point's patch may be in flight
        if len(pairs) < 10:
            return False
        for t, color in pairs:
            if (int(t) % 5 == 0) != (color != "navy"):
                raise AssertionError(f"t={t} has colour {color}: {pairs}")
        return True

    page.wait_for(patched_correctly, message="at least 10 streamed points")
    page.wait_for_prop("streaming_status", "text", lambda text: "patches: 0" not in text)
