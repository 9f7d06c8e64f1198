"""Which worker serves a request: the session it names, and a stable hash of that session.

Shared by the parent process (which reads the raw request head of each
connection it accepts, ``parse_head``), by the workers (which check the
requests that arrive on a connection they were handed, ``session_named`` on
a parsed request), and by the nginx configuration that spreads sessions
over several machines (``nginx_session_key`` is what its ``map`` computes).

A request names a session when it carries

- a websocket token: ``Sec-WebSocket-Protocol: bokeh, <token>`` (the session
  id is inside the token);
- ``?bokeh-session-id=ID`` or a ``Bokeh-Session-Id: ID`` header (a page);
- ``?bokeh-token=TOKEN`` (a page, or autoload.js).

The session's worker is ``owner(session_id, workers)``: the first 8 bytes of
SHA-256 of the id (UTF-8), big-endian, modulo the number of workers.  It does
not depend on the process, the Python hash seed or the machine.

Nothing here imports Bokeh or a reactor: the parent process uses it on every
connection it accepts.

Tests: tests/test_routing.py; the nginx key with a real nginx in tests/e2e/test_deploy_nginx_hash.py
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs

#: Largest request head the parent reads before it refuses the connection (431).
MAX_HEAD = 64 * 1024


def owner(session_id: str, workers: int) -> int:
    """The index (0 .. workers-1) of the worker that owns ``session_id``."""
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % workers


class BadHead(ValueError):
    """Bytes that are not the start of an HTTP/1.x request."""


@dataclass(frozen=True)
class Head:
    """The request line and headers of the first request on a connection."""

    method: str
    target: str
    version: str
    #: lower-case names; repeated headers joined with ", " (as RFC 9110 allows for lists)
    headers: Mapping[str, str]
    #: bytes of the head, including the blank line that ends it
    length: int

    @property
    def is_upgrade(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()


def head_complete(data: bytes) -> int:
    """The length of the request head in ``data`` (through ``\\r\\n\\r\\n``), or 0 while incomplete."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    end = data.find(b"\n\n")  # bare LF line endings, which Twisted's parser accepts too
    return end + 2 if end >= 0 else 0


def parse_head(data: bytes) -> Head | None:
    """The head at the start of ``data``; None while it is incomplete; ``BadHead`` when it is not HTTP."""
    length = head_complete(data)
    if not length:
        if len(data) > MAX_HEAD:
            raise BadHead(f"request head longer than {MAX_HEAD} bytes")
        return None
    lines = data[:length].decode("latin-1").replace("\r\n", "\n").split("\n")
    while lines and not lines[0]:
        lines.pop(0)  # RFC 9112 2.2: ignore empty lines before the request line
    if not lines:
        raise BadHead("empty request")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadHead(f"not an HTTP request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadHead(f"malformed header line: {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Head(parts[0], parts[1], parts[2], headers, length)


class BadArgument(ValueError):
    """A query argument that bokeh serve refuses (400): its value is not UTF-8."""


#: What Tornado's ``RequestHandler.get_argument`` turns into spaces.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f]")


def query_arguments(query: bytes) -> dict[str, list[bytes]]:
    """The arguments of a request's query string, as Tornado (so bokeh serve) parses them.

    Arguments are separated by ``&`` only (twisted.web's ``request.args``
    also splits at ``;``), ``+`` is a space, percent-escapes become bytes
    whatever they encode (``caf%C3%A9`` is ``b"caf\\xc3\\xa9"``), names are
    those bytes read as latin-1, blank values are kept.  It never raises.
    """
    parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return {name: [value.encode("latin-1") for value in values] for name, values in parsed.items()}


def target_arguments(target: str | bytes) -> dict[str, list[bytes]]:
    """``query_arguments`` of a request target (``/app?x=1``; a ``str`` is the target's bytes as latin-1)."""
    raw = target.encode("latin-1") if isinstance(target, str) else target
    return query_arguments(raw.partition(b"?")[2])


def argument(arguments: Mapping[str, list[bytes]], name: str) -> str | None:
    """Argument ``name`` as Tornado's ``get_argument`` gives it to bokeh serve: the last value, decoded
    as UTF-8, control characters made spaces, stripped; None when absent; ``BadArgument`` when not UTF-8."""
    values = arguments.get(name)
    if not values:
        return None
    try:
        text = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadArgument(f"query argument {name!r} is not UTF-8") from None
    return _CONTROL_CHARACTERS.sub(" ", text).strip()


def _token_session_id(token: str) -> str | None:
    """The session id inside a Bokeh session token (as ``bokeh.util.token.get_session_id``), or None."""
    payload = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        session_id = json.loads(decoded)["session_id"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[[..."
        return None
    return session_id if isinstance(session_id, str) and session_id else None


def websocket_token(protocols: str) -> str | None:
    """The token in a ``Sec-WebSocket-Protocol`` value ``bokeh, <token>`` (or ``bokeh,<token>``)."""
    entries = [p.strip() for p in protocols.split(",")]
    if len(entries) == 2 and entries[0] == "bokeh" and entries[1]:
        return entries[1]
    return None


def session_named(target: str, headers: Mapping[str, str]) -> str | None:
    """The session id a request names (see the module docstring), or None.

    ``headers`` maps lower-case names to values; ``target`` is the request
    target as latin-1.  ``BadArgument`` when a session argument is not UTF-8.  Where docsyncd.web refuses a
    request for naming a session two ways, any of the names is returned: the
    worker refuses it anyway.
    """
    token = websocket_token(headers.get("sec-websocket-protocol", ""))
    if token is not None:
        return _token_session_id(token)
    arguments = target_arguments(target)
    session_id = argument(arguments, "bokeh-session-id") or headers.get("bokeh-session-id") or None
    if session_id:
        return session_id
    token = argument(arguments, "bokeh-token")
    return _token_session_id(token) if token else None


def request_session(request) -> str | None:
    """``session_named`` for a twisted.web request (what a worker checks on every request it serves)."""
    headers = {
        name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
    # Bokeh-Session-Id: docsyncd.web reads the last value (getHeader); so does this.
    last = request.requestHeaders.getRawHeaders(b"bokeh-session-id")
    if last:
        headers["bokeh-session-id"] = last[-1].decode("latin-1")
    return session_named(request.uri.decode("latin-1"), headers)


# -- nginx ----------------------------------------------------------------------
#
# A Bokeh token is base64url(JSON) where the JSON starts
# ``{"session_id": "<id>", "session_expiry": ...`` (bokeh.util.token).  The
# base64 text of everything before the id's last one or two bytes depends on
# the id alone, so nginx can cut it out with a regular expression and hash
# it: every token of a session (other tabs, reconnects, bokeh.client) gives
# the same key, whatever its expiry and request payload.  The three
# alternatives are the three ways the text after the id, ``", "session_``,
# can fall on base64's 3-byte groups.  etc/nginx/docsyncd-hash.conf holds
# the same expression; tests/test_routing.py checks that they agree.

_B64 = "[A-Za-z0-9_-]"
NGINX_KEY_RE = (
    r"^bokeh,\s*(?<key>(?:" + _B64 + r"{4})*?)"
    r"(?:IiwgInNlc3Npb25f|" + _B64 + r"{4}(?:LCAic2Vzc2lvbl9l|ICJzZXNzaW9uX2V4))"
)
_NGINX_KEY = re.compile(NGINX_KEY_RE.replace("(?<key>", "(?P<key>"))


def nginx_session_key(protocols: str) -> str:
    """What etc/nginx/docsyncd-hash.conf's ``map`` makes of a ``Sec-WebSocket-Protocol`` value ("" when nothing)."""
    match = _NGINX_KEY.search(protocols)
    return match.group("key") if match else ""
