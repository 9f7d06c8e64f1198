"""A dropped websocket, as networks drop them: BokehJS reconnects and the session resumes."""

import re
from pathlib import Path

import pytest

from e2e_support import wait_until

pytestmark = [pytest.mark.e2e,
              pytest.mark.docsync_only(reason="bokeh serve refuses a reconnect once the token expired (bokeh#14416)")]

APP = Path(__file__).parent / "apps" / "reconnect_app.py"


@pytest.mark.timeout(90)
def test_reconnect_after_token_expiry_resumes_the_session(serve, page):
    """After a drop, BokehJS's reconnect with its expired token rejoins the same document: a value set before the drop is still there and changes made during it arrive."""
    server = serve(APP, extra_args=["--session-token-expiration", "1"])
    messages = []
    page.on("console", lambda m: messages.append(m.text))
    page.open(server.app_url())
    page.set("slider", "value", 42)
    # The token's expiry (1 s) passes while the page is connected; the server keeps ticking every 200 ms.
    page.wait_for(lambda: int(page.get("ticks", "text")) >= 8, message="the token to expire")

    def console_says(text):
        # Reading a value from the page lets Playwright deliver pending console events.
        page.get("ticks", "text")
        return any(text in m for m in messages)

    def sessions_created():
        return len(re.findall(r"session \S+ created", server.log_text()))

    created_before_drop = sessions_created()
    page.get_by_role("button", name="Cut").click()
    page.wait_for(lambda: console_says("Lost websocket"), message="the drop")
    ticks_at_drop = int(page.get("ticks", "text"))
    page.wait_for(lambda: console_says("Reconnected websocket"), message="BokehJS to reconnect")
    page.wait_for(lambda: int(page.get("ticks", "text")) > ticks_at_drop + 2, message="ticks made during and after the drop")

    assert page.get("slider", "value") == 42
    assert sessions_created() == created_before_drop, "the reconnect must not build a new session"
    assert "expired" not in server.log_text()
