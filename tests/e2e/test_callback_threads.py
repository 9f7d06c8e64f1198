"""Sync callbacks in callback threads (--num-threads): one user's slow callback does not stall the others.

The app (apps/slow_click_app.py) has a button whose sync callback blocks until
the test creates a file, and a slider whose on_change echoes its value.
"""

from pathlib import Path

import pytest

from e2e_support import wait_for_workers

pytestmark = [pytest.mark.e2e]

APP = Path(__file__).parent / "apps" / "slow_click_app.py"


def serve_slow_click(serve, tmp_path, extra_args=(), kind=None):
    """The app, and the file whose creation ends the click's callback."""
    release = tmp_path / "release"
    server = serve(APP, extra_args=list(extra_args), env={"SLOW_CLICK_RELEASE": str(release)}, kind=kind)
    if "--workers" in extra_args:
        wait_for_workers(server)
    return server, release


@pytest.mark.timeout(90)
@pytest.mark.docsync_only(reason="bokeh serve 3.9 runs sync callbacks on its event loop")
@pytest.mark.parametrize("extra_args", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_slow_callback_does_not_stall_other_sessions(serve, new_page, tmp_path, extra_args):
    """While one session's click callback runs in a callback thread, another session's round trip is served,
    the clicking session's own changes wait for the callback (the document lock), and what the callback
    changes mid-way reaches its browser at once."""
    server, release = serve_slow_click(serve, tmp_path, extra_args)
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
def test_without_threads_a_slow_callback_stalls_everyone(serve, new_page, tmp_path, kind, extra_args):
    """``--num-threads 0`` keeps callbacks on the reactor thread, as bokeh serve 3.9 runs them on its loop:
    nothing else is served until the click's callback returns."""
    server, release = serve_slow_click(serve, tmp_path, extra_args, kind=kind)
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
