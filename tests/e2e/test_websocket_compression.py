"""Chromium's permessage-deflate against a real server: negotiated by default, declined with
--no-websocket-compression, and the app works either way.

What the server answered is read from Chromium itself, over the DevTools
protocol.  Chromium compresses every message it sends once the extension is
accepted, so the clicks below also reach Python deflated.
"""

import pytest

from e2e_support import press_me_clicks

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60),
              pytest.mark.docsync_only(reason="bokeh serve declines permessage-deflate unless configured")]


def handshake_responses(page) -> list[dict[str, str]]:
    """From now on, the headers (lower-cased names) of every websocket handshake response the page receives."""
    responses: list[dict[str, str]] = []
    cdp = page.context.new_cdp_session(page.page)
    cdp.on("Network.webSocketHandshakeResponseReceived",
           lambda event: responses.append({k.lower(): v for k, v in event["response"]["headers"].items()}))
    cdp.send("Network.enable")
    return responses


def test_chromium_negotiates_deflate(module_serve, page):
    """Chromium's offer is accepted without context takeover, and clicks reach Python and come back."""
    server = module_serve("press_me.py")
    responses = handshake_responses(page)
    page.open(server.url)
    assert press_me_clicks(page, 2) == ["0", "1"]
    (response,) = responses
    assert response["sec-websocket-extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover")


def test_no_websocket_compression(module_serve, page):
    """With --no-websocket-compression the handshake carries no extension, and the app works as before."""
    server = module_serve("press_me.py", ["--no-websocket-compression"])
    responses = handshake_responses(page)
    page.open(server.url)
    assert press_me_clicks(page, 2) == ["0", "1"]
    (response,) = responses
    assert "sec-websocket-extensions" not in response
