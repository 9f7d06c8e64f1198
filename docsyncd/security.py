"""Who may connect: websocket origin allowlists and session token checks.

Bokeh's own token functions make and verify tokens, so tokens minted by
docsyncd, by ``bokeh.util.token`` and by ``bokeh.client`` are interchangeable.

Tests: tests/test_security.py
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from bokeh.util.token import check_token_signature, get_session_id, get_token_payload

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_host(netloc: str, scheme: str = "http") -> str:
    """``host:port`` in lower case, with the scheme's default port made explicit; ``*`` alone is any host on any
    port (as in bokeh serve's allowlists)."""
    netloc = netloc.strip().lower()
    if not netloc:
        return ""
    if netloc == "*":
        return "*:*"
    host, sep, port = netloc.rpartition(":")
    if not sep or "]" in port:  # no port (an IPv6 literal's colons are inside [])
        return f"{netloc}:{_DEFAULT_PORTS.get(scheme, 80)}"
    return f"{host}:{port}"


def host_allowed(host: str, allowlist: list[str], scheme: str = "http") -> bool:
    """Whether ``host`` (``name[:port]``) matches an entry; entries may use ``*``."""
    candidate = normalise_host(host, scheme)
    return any(fnmatch.fnmatchcase(candidate, normalise_host(pattern, scheme)) for pattern in allowlist)


@dataclass
class OriginPolicy:
    """Which browser origins may open a websocket.

    With no explicit allowlist a page may connect when it came from this very
    server: its Origin names the host and port the request was sent to.  An
    explicit ``--allow-websocket-origin`` list replaces that default, as in
    bokeh serve.  A request without an Origin header is not from a browser
    and is accepted.
    """

    allowlist: list[str] = field(default_factory=list)

    def refusal(self, origin: str | None, host: str, scheme: str = "http") -> str | None:
        """None when allowed, else the reason for refusing."""
        if not origin:
            return None
        parts = urlsplit(origin)
        if not parts.netloc:
            return f"malformed Origin {origin!r}"
        allowed = self.allowlist or [host]
        if host_allowed(parts.netloc, allowed, parts.scheme or scheme):
            return None
        return (
            f"Origin {origin!r} is not allowed; use --allow-websocket-origin={parts.netloc} to permit it "
            f"(allowed: {', '.join(allowed)})"
        )


@dataclass
class TokenPolicy:
    """How session tokens are checked: signature and expiry."""

    secret_key: bytes | None = None
    signed: bool = False

    def refusal(self, token: str | None, now: float, is_live: Callable[[str], bool] = lambda session_id: False) -> str | None:
        """None when the token may open a session, else the reason it may not.

        The expiry bounds how long a page may wait before its first connection.
        A token whose signature verifies may rejoin a session that is still
        alive (``is_live``) at any time: that is BokehJS reconnecting after a
        network drop, and refusing it would leave the page dead.
        """
        if not token:
            return "no session token in the Sec-WebSocket-Protocol header"
        try:
            session_id = get_session_id(token)
            payload = get_token_payload(token)
        except Exception:
            return "malformed session token"
        if not isinstance(session_id, str):
            # Sessions are named by strings, and Bokeh's signature check raises on anything else.
            return "malformed session token"
        if not session_id:
            return "session token names an empty session id"
        if not check_token_signature(token, secret_key=self.secret_key, signed=self.signed):
            return f"session token for {session_id!r} has an invalid signature"
        expiry = payload.get("session_expiry")
        if not isinstance(expiry, (int, float)):
            return "session token has no expiry"
        if now >= expiry and not is_live(session_id):
            return f"session token for {session_id!r} expired; raise --session-token-expiration if pages stay open long before connecting"
        return None
