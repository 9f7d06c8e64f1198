"""Sync callbacks in callback threads (--num-threads): one user's slow callback does not stall the others.

The app (apps/slow_click_app.py) has a button whose sync callback blocks until
the test creates a file, and a slider whose on_change echoes its value.
"""

from pathlib import Path

import pytest

from e2e_support import wait_for_workers

pytestmark = [pytest.mark.e2e]

APP = Path(__file__).parent / "apps" / "slow_click_app.py"
PANEL_APP = Path(__file__).parent / "apps" / "panel_slow_click_app.py"


@pytest.fixture
def serve_slow_click(serve, tmp_path):
    """Factory: the app served with ``extra_args``, and the file whose creation ends the click's callback
    (created at teardown in any case, so that a failed test leaves no callback blocking its server's stop)."""
    release = tmp_path / "release"

    def _serve(extra_args=(), kind=None, app=APP):
        server = serve(app, extra_args=list(extra_args), env={"SLOW_CLICK_RELEASE": str(release)}, kind=kind)
        if "--workers" in extra_args:
            wait_for_workers(server)
        return server, release

    yield _serve
    release.touch()


@pytest.mark.timeout(90)
@pytest.mark.docsync_only(reason="bokeh serve 3.9 runs sync callbacks on its event loop")
@pytest.mark.parametrize("extra_args", [["--num-threads", "4"], ["--workers", "2", "--num-threads", "2"]],
                         ids=["one-process", "workers"])
def test_slow_callback_does_not_stall_other_sessions(serve_slow_click, new_page, extra_args):
    """While one session's click callback runs in a callback thread, another session's round trip is served,
    the clicking session's own changes wait for the callback (the document lock), and what the callback
    changes mid-way reaches its browser at once."""
    server, release = serve_slow_click(extra_args)
    clicker, other = new_page(), new_page()
    clicker.open(server.app_url())
    other.open(server.app_url())

    clicker.get_by_role("button", name="Slow").click()
    clicker.wait_for_prop("status", "text", lambda text: "docsync-callbacks" in text)  # sent from mid-callback
    clicker.set("slider", "value", 7)  # same session: queued behind the running callback
    other.set("slider", "value", 5)
    other.wait_for_prop("echo", "text", "value 5")  # another session: served meanwhile
    assert clicker.get("echo", "text") == "none"
    assert clicker.get("status", "text").startswith("working")

    release.touch()
    clicker.wait_for_prop("status", "text", "done")
    clicker.wait_for_prop("echo", "text", "value 7")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind, extra_args", [("docsync", ["--num-threads", "0"]), ("bokeh", [])],
                         ids=["docsync-num-threads-0", "bokeh-serve"])
def test_without_threads_a_slow_callback_stalls_everyone(serve_slow_click, new_page, kind, extra_args):
    """``--num-threads 0`` keeps callbacks on the reactor thread, as bokeh serve 3.9 runs them on its loop:
    nothing else is served until the click's callback returns."""
    server, release = serve_slow_click(extra_args, kind=kind)
    clicker, other = new_page(), new_page()
    clicker.open(server.app_url())
    other.open(server.app_url())

    clicker.get_by_role("button", name="Slow").click()
    other.set("slider", "value", 5)
    other.wait_for_timeout(1500)  # a negative: the round trip stays unanswered while the callback blocks
    assert other.get("echo", "text") == "none"
    assert clicker.get("status", "text") == "idle"  # the callback's first change waits for it to return too

    release.touch()
    other.wait_for_prop("echo", "text", "value 5")
    clicker.wait_for_prop("status", "text", "done")


def set_panel_slider(page, value):
    page.page.evaluate("""(value) => {
        const slider = [...Bokeh.documents[0].all_models].find((m) => m.type && m.type.endsWith("Slider"));
        slider.value = value;
    }""", value)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind, extra_args, stalls", [("docsync", ["--num-threads", "4"], False),
                                                      ("docsync", ["--num-threads", "0"], True),
                                                      ("bokeh", [], True)],
                         ids=["threads", "num-threads-0", "bokeh-serve"])
def test_panel_callbacks_follow_num_threads(serve_slow_click, new_page, kind, extra_args, stalls):
    """A Panel app's widget callbacks run in Panel's pool, sized by --num-threads as under
    `panel serve --num-threads`: a slow on_click does not stall another session; with 0 it does, as under
    bokeh serve."""
    server, release = serve_slow_click(extra_args, kind=kind, app=PANEL_APP)
    clicker, other = new_page(), new_page()
    clicker.open(server.app_url())
    other.open(server.app_url())
    other.get_by_text("none").wait_for()

    clicker.get_by_role("button", name="Slow").click()
    set_panel_slider(other, 5)
    if stalls:
        other.wait_for_timeout(1500)
        assert other.get_by_text("value 5").count() == 0
    else:
        clicker.get_by_text("working in").wait_for()
        other.get_by_text("value 5").wait_for()
    release.touch()
    clicker.get_by_text("done").wait_for()
    other.get_by_text("value 5").wait_for()
