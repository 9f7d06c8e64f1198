"""Panel (HoloViz) apps in Chromium on docsyncd, docsyncd --workers 2 and bokeh serve (the reference).

The apps are tests/e2e/apps/panel_*.py, unchanged Panel code.  Where the
behaviour is Panel's, the same test runs on every server of ``compared_serve``
and they must agree; where ``bokeh serve app.py`` lacks what ``panel serve``
adds (Panel's Application and page: onload callbacks, notifications), the test
says so and docsyncd is held to panel serve's behaviour (docsyncd/panel_apps.py).

docsyncd runs without ``-r``: the apps' async callbacks await asyncio, which is
docsyncd's default reactor, as a Panel user's command line would be.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_support import wait_until
from workers_support import created

pytestmark = pytest.mark.e2e

APPS = Path(__file__).parent / "apps"
#: Sessions without connections end after three seconds (time enough for a page to load Panel's scripts and
#: connect), so on_session_destroyed runs within the test.
QUICK_EXPIRY = ["--unused-session-lifetime", "3000", "--check-unused-sessions", "500"]

_FIND_JS = """(arg) => [...Bokeh.documents[0].all_models].filter((m) => m.type === arg.type
                 && Object.entries(arg.props ?? {}).every(([k, v]) => m[k] === v))"""


def set_model(page, type_: str, prop: str, value, index: int = 0) -> None:
    """Set ``prop`` of the ``index``-th model of this BokehJS type from the page, as a user's edit."""
    page.page.evaluate(f"(arg) => ({_FIND_JS})(arg)[arg.index][arg.prop] = arg.value",
                       {"type": type_, "index": index, "prop": prop, "value": value})


def shows(page, text: str, timeout: float = 10) -> None:
    """Wait until the page shows ``text`` (Panel renders inside shadow roots; Playwright looks inside)."""
    page.get_by_text(text, exact=True).first.wait_for(timeout=timeout * 1000)


def page_title(page) -> str:
    return page.page.title()


def one_document_per_session(compared_serve, server) -> None:
    """docsyncd (one process or --workers) built each session's document once (its log says so)."""
    if compared_serve.variant == "bokeh":
        return
    wait_until(lambda: created(server.log_text()), message="a session created in the log")
    assert set(created(server.log_text()).values()) == {1}, created(server.log_text())


@pytest.fixture(scope="module")
def destroyed_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("panel") / "destroyed.log"
    path.write_text("")
    return path


def test_servable_widgets_callbacks_and_location(compared_serve, page, destroyed_log):
    """A .servable() Column: the URL's query sets a widget and the widget sets the URL (pn.state.location);
    pn.bind and param.watch callbacks answer a slider; an async callback awaiting asyncio answers a text
    input; a periodic callback ticks; the Bokeh figure renders; onload runs (Panel's Application: not under
    bokeh serve app.py); and on_session_destroyed runs once the page is gone."""
    server = compared_serve(APPS / "panel_widgets.py", QUICK_EXPIRY, env={"PANEL_DESTROYED_LOG": str(destroyed_log)})
    page.open(server.app_url("count=6"))
    for text in ("bound 6", "watched 6"):
        shows(page, text)
    set_model(page, "Slider", "value", 8)
    for text in ("bound 8", "watched 8"):
        shows(page, text)
    wait_until(lambda: re.search(r"[?&]count=8\b", page.page.url), message="count=8 in the page's URL")
    set_model(page, "panel.models.widgets.TextInput", "value", "hello")
    shows(page, "async hello")
    def ticks() -> int:
        return int(page.get_by_text(re.compile(r"^ticks \d+$")).first.inner_text().split()[1])

    first = ticks()
    wait_until(lambda: ticks() > first + 2, message="the periodic callback ticking")
    assert page.get("fig", "type") == "Figure"
    assert page_title(page) == "Panel features"
    if compared_serve.variant == "bokeh":
        shows(page, "not loaded")  # bokeh serve app.py does not run Panel's Application: no document_ready hook
    else:
        shows(page, "loaded")
    one_document_per_session(compared_serve, server)
    lines_before = len(destroyed_log.read_text().splitlines())
    page.page.close()
    wait_until(lambda: len(destroyed_log.read_text().splitlines()) > lines_before, timeout=15,
               message="on_session_destroyed writing the session id")


def test_template_tabulator_holoviews_and_hvplot(compared_serve, page):
    """A FastListTemplate keeps its sidebar and main (also with --workers: one document per session, built
    at the page GET); a Tabulator cell edited in the browser reaches Python's on_edit; zooming the
    DynamicMap's plot makes its RangeXY stream recompute in Python (not under bokeh serve app.py, which
    runs no Panel Application); the hvPlot plot renders."""
    server = compared_serve(APPS / "panel_template.py")
    response = page.open(server.url)
    assert page_title(page) == "Panel template app"
    html = response.text()
    assert "sidebar" in html and "main" in html
    shows(page, "rows 3")
    set_model(page, "Slider", "value", 2)
    shows(page, "rows 2")
    # A user's edit: click the cell, type, Enter.
    cell = page.locator('.tabulator-row .tabulator-cell[tabulator-field="name"]').nth(1)
    cell.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("zed")
    page.keyboard.press("Enter")
    shows(page, "edited name row 1: zed")
    shows(page, "x_range 0.0 10.0")
    # Zoom as a user does: drag the plot with its pan tool; BokehJS reports the new ranges when the drag ends.
    box = page.page.evaluate(f"""() => {{
        const fig = ({_FIND_JS})({{type: "Figure"}}).find((f) => f.title && f.title.text === "dynamic");
        const rect = Bokeh.index.find_one(fig).el.getBoundingClientRect();
        return [rect.x + rect.width / 2, rect.y + rect.height / 2];
    }}""")
    page.mouse.move(*box)
    page.mouse.down()
    page.mouse.move(box[0] - 80, box[1], steps=8)
    page.mouse.up()
    new_range = page.page.evaluate(f"""() => {{
        const fig = ({_FIND_JS})({{type: "Figure"}}).find((f) => f.title && f.title.text === "dynamic");
        return [fig.x_range.start, fig.x_range.end];
    }}""")
    assert new_range[0] > 0.5, new_range
    if compared_serve.variant == "bokeh":
        # bokeh serve app.py runs no Panel Application, and HoloViews' stream callbacks never fire there.
        page.page.wait_for_timeout(2000)
        shows(page, "x_range 0.0 10.0")
    else:
        shows(page, f"x_range {new_range[0]:.1f} {new_range[1]:.1f}")
    figures = page.page.evaluate(f"() => ({_FIND_JS})({{type: 'Figure'}}).length")
    assert figures == 2  # the DynamicMap's and hvPlot's
    one_document_per_session(compared_serve, server)


def test_notifications(compared_serve, page):
    """pn.state.notifications shows a toast in the page when Python asks; bokeh serve app.py renders no
    page at all for an app with notifications (Panel's Notyf script is not in Bokeh's page)."""
    server = compared_serve(APPS / "panel_notify.py")
    if compared_serve.variant == "bokeh":
        with page.page.expect_console_message(lambda message: "Notyf is not defined" in message.text):
            page.page.goto(server.url)
        return
    page.open(server.url)
    page.get_by_role("button", name="Notify").click()
    shows(page, "Saved!")


@pytest.mark.docsync_only(reason="the example uses notifications, which bokeh serve app.py cannot show")
def test_the_panel_example(serve, page):
    """examples/panel_app.py: the URL sets the slider, the bound Markdown follows, and the async button's
    callback ends in a notification."""
    server = serve("panel_app.py")
    page.open(server.app_url("frequency=5"))
    shows(page, "y = sin(5 x + 0.0)")
    page.get_by_role("button", name="Smooth it (slowly)").click()
    shows(page, "Smoothed")
