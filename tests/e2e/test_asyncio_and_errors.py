"""Coroutines that await asyncio, and callbacks that raise, in a real daemon and browser."""

from pathlib import Path

import pytest

from e2e_support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docsync_only(reason="bokeh serve drops async on_click handlers")]

APP = Path(__file__).parent / "apps" / "asyncio_app.py"


@pytest.mark.timeout(60)
def test_asyncio_coroutine_runs_under_asyncio_reactor(serve, page):
    """Under `twistd -r asyncio`, an async on_click handler that awaits asyncio.sleep finishes and its change reaches the browser."""
    server = serve(APP, twistd_args=["-r", "asyncio"])
    page.open(server.app_url())
    page.get_by_role("button", name="Wait").click()
    page.wait_for_prop("status", "text", "slept with asyncio")
    assert "AsyncioSelectorReactor" in server.log_text()


@pytest.mark.timeout(60)
def test_asyncio_coroutine_under_default_reactor_explains_itself(serve, page):
    """Under the default reactor, a handler awaiting asyncio logs that the asyncio reactor is needed, and the session goes on."""
    server = serve(APP)
    page.open(server.app_url())
    page.get_by_role("button", name="Wait").click()
    wait_until(lambda: "twistd -r asyncio" in server.log_text(), message="the asyncio hint in the log")
    page.get_by_role("button", name="Count").click()
    page.wait_for_prop("counter", "text", "1")
    assert page.get("status", "text") == "idle"


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
