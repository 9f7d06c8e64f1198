"""Coroutines that await asyncio, and callbacks that raise, in a real daemon and browser."""

from pathlib import Path

import pytest

from e2e_support import wait_for_workers, wait_until

pytestmark = [pytest.mark.e2e]

APPS = Path(__file__).parent / "apps"
APP = APPS / "asyncio_app.py"
SCHEDULED_APP = APPS / "asyncio_scheduled_app.py"
ASYNC_ON_CLICK = "bokeh serve drops async on_click handlers"


@pytest.mark.timeout(60)
def test_scheduled_coroutine_awaits_asyncio_without_flags(serve, page, server_kind):
    """A click that schedules a coroutine awaiting asyncio.sleep(0.3) updates the page, under plain
    `twistd -n docsync` (no -r) as under bokeh serve."""
    server = serve(SCHEDULED_APP)
    page.open(server.app_url())
    page.get_by_role("button", name="Sleep").click()
    page.wait_for_prop("status", "text", lambda text: text.startswith("slept on "))
    if server_kind == "docsync":
        assert "AsyncioSelectorReactor" in server.log_text()
        assert "asyncio reactor" not in server.log_text()  # no advice was needed


@pytest.mark.timeout(60)
@pytest.mark.docsync_only(reason="--workers")
def test_scheduled_coroutine_awaits_asyncio_in_worker_processes(serve, page):
    """Worker processes run on the parent's reactor, asyncio by default: the scheduled coroutine works there too."""
    server = serve(SCHEDULED_APP, extra_args=["--workers", "2"])
    wait_for_workers(server)
    page.open(server.app_url())
    page.get_by_role("button", name="Sleep").click()
    page.wait_for_prop("status", "text", lambda text: text.startswith("slept on "))


@pytest.mark.timeout(60)
@pytest.mark.docsync_only(reason=ASYNC_ON_CLICK)
def test_async_on_click_awaits_asyncio_without_flags(serve, page):
    """With no -r option, an async on_click handler that awaits asyncio.sleep finishes and its change reaches the browser."""
    server = serve(APP)
    page.open(server.app_url())
    page.get_by_role("button", name="Wait").click()
    page.wait_for_prop("status", "text", "slept with asyncio")
    assert "AsyncioSelectorReactor" in server.log_text()


@pytest.mark.timeout(60)
@pytest.mark.docsync_only(reason="twistd's -r")
def test_other_reactor_chosen_with_r_explains_itself(serve, page):
    """Under `twistd -r epoll`, a coroutine awaiting asyncio logs that the asyncio reactor is needed, and the session goes on."""
    server = serve(SCHEDULED_APP, twistd_args=["-r", "epoll"])
    page.open(server.app_url())
    page.get_by_role("button", name="Sleep").click()
    wait_until(lambda: "needs the asyncio reactor" in server.log_text(), message="the asyncio hint in the log")
    assert "EPollReactor" in server.log_text()
    page.get_by_role("button", name="Sleep").click()  # the session still answers
    wait_until(lambda: server.log_text().count("needs the asyncio reactor") >= 2, message="the second click's hint")


@pytest.mark.timeout(60)
def test_callback_exception_is_logged_and_session_carries_on(serve, page):
    """A callback that raises is logged with the app's traceback, and the same session keeps answering."""
    server = serve(APP)
    page.open(server.app_url())
    page.get_by_role("button", name="Fail").click()
    wait_until(lambda: "raised on purpose by asyncio_app" in server.log_text(), message="the exception in the log")
    log = server.log_text()
    assert "asyncio_app.py" in log and "raise_on_purpose" in log, log[-2000:]
    page.get_by_role("button", name="Count").click()
    page.wait_for_prop("counter", "text", "1")
