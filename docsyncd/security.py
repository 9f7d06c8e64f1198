"""Who may connect: websocket origin allowlists and session token checks.

Bokeh's own token functions make and verify tokens, so tokens minted by
docsyncd, by ``bokeh.util.token`` and by ``bokeh.client`` are interchangeable.

Tests: tests/test_security.py
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import json
import socket
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from bokeh.util.token import check_token_signature, get_session_id, get_token_payload

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: Bytes a token's compressed request payload may inflate to.  A page's headers, cookies and
#: arguments are bounded by the request limits (tens of KiB); this leaves room for process_request.
MAX_TOKEN_PAYLOAD = 1024 * 1024

#: Where bokeh.util.token puts the zlib-compressed request payload.
_TOKEN_ZLIB_KEY = "__bk__zlib_"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_size_refusal(token: str, limit: int = MAX_TOKEN_PAYLOAD) -> str | None:
    """Why ``token``'s payload is too large to read, or None; inflates at most ``limit`` + 1 bytes.

    ``bokeh.util.token.get_token_payload`` inflates the compressed part whole:
    a 14 KB token could make it allocate 8 MiB.  Call this first.
    """
    try:
        payload = json.loads(_b64decode(token.split(".")[0]))
        compressed = payload.get(_TOKEN_ZLIB_KEY) if isinstance(payload, dict) else None
        if not isinstance(compressed, str):
            return None  # nothing compressed; the other checks judge the rest
        inflated = zlib.decompressobj().decompress(_b64decode(compressed), limit + 1)
    except (ValueError, binascii.Error, zlib.error, RecursionError):
        return "malformed session token"
    if len(inflated) > limit:
        return f"session token payload inflates to more than {limit} bytes"
    return None


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
    # "[" starts a character class in fnmatch; in a host it is an IPv6 literal's bracket.
    return any(fnmatch.fnmatchcase(candidate, normalise_host(pattern, scheme).replace("[", "[[]"))
               for pattern in allowlist)


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) names an IP address rather than a DNS name."""
    name = urlsplit(f"//{host}").hostname or ""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def machine_names() -> list[str]:
    """The names a page from this machine may use without ``--allow-websocket-origin``."""
    return sorted({"localhost", socket.gethostname().lower(), socket.getfqdn().lower()} - {""})


@dataclass
class OriginPolicy:
    """Which browser origins may open a websocket.

    With no explicit allowlist a page may connect when it came from this very
    server: its Origin names the host and port the request was sent to, and
    that host is this machine: ``localhost``, an IP address, the machine's
    own name, or a host ``--allow-host`` lists (``default_names``).  Any
    other name could be a DNS-rebinding page (``evil.example`` resolving to
    127.0.0.1, whose Origin equals its Host): behind a proxy, name the public
    host with ``--allow-websocket-origin`` or ``--allow-host``.  bokeh serve's
    default list is ``localhost:<port>`` alone.  An explicit
    ``--allow-websocket-origin`` list replaces the default, as in bokeh serve.
    A request without an Origin header is not from a browser and is accepted.
    """

    allowlist: list[str] = field(default_factory=list)
    #: Whether allowed origins' pages may fetch autoload.js with their cookies (``--autoload-credentials``).
    credentials: bool = False
    #: Host names (``*`` wildcards, optional port) the default trusts besides localhost and IP addresses.
    default_names: list[str] = field(default_factory=lambda: ["localhost"])

    def refusal(self, origin: str | None, host: str, scheme: str = "http") -> str | None:
        """None when allowed, else the reason for refusing."""
        if not origin:
            return None
        parts = urlsplit(origin)
        if not parts.netloc:
            return f"malformed Origin {origin!r}"
        allowed = self.allowlist or [host]
        if host_allowed(parts.netloc, allowed, parts.scheme or scheme):
            if self.allowlist or self._names_this_machine(host, parts.scheme or scheme):
                return None
            return (f"Origin {origin!r} names a host that is not known to be this server (DNS rebinding?); "
                    f"name it with --allow-websocket-origin={parts.netloc} or --allow-host")
        return (
            f"Origin {origin!r} is not allowed; use --allow-websocket-origin={parts.netloc} to permit it "
            f"(allowed: {', '.join(allowed)})"
        )

    def _names_this_machine(self, host: str, scheme: str) -> bool:
        if is_ip_literal(host):
            return True
        name = urlsplit(f"//{host}").hostname or ""
        return any(host_allowed(host if ":" in pattern else name, [pattern], scheme) for pattern in self.default_names)


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
        too_large = token_size_refusal(token)
        if too_large:
            return too_large
        try:
            session_id = get_session_id(token)
            payload = get_token_payload(token)
        except Exception:
            return "malformed session token"
        if not isinstance(payload, dict):
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
