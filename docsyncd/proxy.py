"""Behind a reverse proxy: the client's address, scheme and host from X-Forwarded-* headers.

With ``--use-xheaders`` (bokeh serve's name) docsyncd believes what the
proxy in front of it says about the client:

| header | what it sets |
| --- | --- |
| ``X-Real-IP``, else the last ``X-Forwarded-For`` entry | the client address (``request.remote_ip``, logs, ``--max-session-rate``) |
| ``X-Forwarded-Proto`` (or ``X-Scheme``), last entry | http or https (``request.protocol``, the origin check's default scheme) |
| ``X-Forwarded-Host``, last entry | the Host the client used (``--allow-host``, the websocket origin check) |

Only the last entry of a list counts: that is the one the proxy next to
docsyncd added (nginx's ``$proxy_add_x_forwarded_for`` appends the address
it saw), the others come from the client and may be anything.  Without
``--use-xheaders`` these headers are ignored, since any client can send them.

Tests: tests/test_proxy.py; through nginx in tests/e2e/test_deploy_nginx.py
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

from twisted.internet.address import IPv4Address, IPv6Address

_HOST = re.compile(r"^(?:[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def last_entry(value: str | bytes | None) -> str | None:
    """The last comma-separated entry of a header value, stripped (None if there is none)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    entries = [e.strip() for e in value.split(",") if e.strip()]
    return entries[-1] if entries else None


def valid_ip(value: str | None) -> str | None:
    """``value`` when it is an IPv4 or IPv6 address, else None."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        return None


def valid_host(value: str | None) -> str | None:
    """``value`` when it looks like ``name[:port]`` (or ``[v6]:port``), else None."""
    return value if value and _HOST.match(value) else None


@dataclass(frozen=True)
class Forwarded:
    """What the proxy says about the client: each field None when it says nothing usable."""

    remote_ip: str | None = None
    scheme: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class Forwarding:
    """Whether to believe X-Forwarded-* headers (``--use-xheaders``), and reading them."""

    use_xheaders: bool = False

    def read(self, header: Any) -> Forwarded:
        """The forwarded facts, from ``header(name)`` returning a header's (joined) value or None."""
        if not self.use_xheaders:
            return Forwarded()
        remote_ip = valid_ip(last_entry(header("x-real-ip"))) or valid_ip(last_entry(header("x-forwarded-for")))
        scheme = (last_entry(header("x-forwarded-proto")) or last_entry(header("x-scheme")) or "").lower()
        return Forwarded(
            remote_ip=remote_ip,
            scheme=scheme if scheme in ("http", "https") else None,
            host=valid_host(last_entry(header("x-forwarded-host"))),
        )

    def apply(self, request: Any) -> Forwarded:
        """Make a twisted.web request describe the client instead of the proxy.

        Sets ``request.client`` (so ``getClientAddress()`` and the access log
        give the client's address), replaces the Host header, and records the
        scheme for ``isSecure()`` (see ``guard.GuardedRequest``).
        """
        headers = request.requestHeaders

        def header(name: str) -> str | None:
            values = headers.getRawHeaders(name.encode("latin-1"))
            return b",".join(values).decode("latin-1") if values else None

        facts = self.read(header)
        if facts.remote_ip:
            address = IPv6Address if ":" in facts.remote_ip else IPv4Address
            request.client = address("TCP", facts.remote_ip, 0)
        if facts.host:
            headers.setRawHeaders(b"host", [facts.host.encode("latin-1")])
        return facts

    def websocket(self, headers: Mapping[str, str], secure: bool, peer_ip: str) -> tuple[str, str]:
        """(scheme, client address) of a websocket handshake, from Autobahn's lower-cased headers.

        The Host header needs nothing here: ``apply`` already replaced it
        before Autobahn read the request.
        """
        facts = self.read(headers.get)
        return facts.scheme or ("https" if secure else "http"), facts.remote_ip or peer_ip


NO_FORWARDING = Forwarding(False)
