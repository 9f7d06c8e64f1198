"""Who may publish, replace and delete a published document, and how much one owner may keep.

In the spirit of the old bokeh-server's per-document API keys and of
``--auth-module`` users, a client that publishes presents a credential, and
the owner it names is recorded with the document (``store.Published.owner``).
Only that owner may replace the document (a PUSH-DOC on its session) or
delete it; anyone may view it and interact with it (``viewer_refusal``).

The credential, first match wins:

| the request carries | owner |
| --- | --- |
| ``Authorization: Bearer KEY``, KEY listed in ``--publish-keys FILE`` | ``key:NAME`` (the key's name in the file) |
| a user ``--auth-module`` recognises (``get_user``) | ``user:NAME`` |
| nothing, over loopback (127.0.0.0/8, ::1, a Unix socket) with no ``X-Real-IP`` / ``X-Forwarded-For`` | ``local`` (unless ``--no-local-publishing``) |

A key that does not verify is refused outright, also over loopback.  A
request with an ``Origin`` header comes from a web page: pages view, they
never publish, replace or delete (so neither a document's own HTML nor a
page on another site, DNS rebinding included, can use a local credential).

Limits per owner: ``--max-published`` documents (over all apps) and
``--max-published-size`` bytes of stored JSON per document; past either the
push gets an ERROR reply saying which limit and option.

A published document's HTML (a ``Div``'s text, say) comes from its owner
or, through widgets, from its viewers, not from the operator's app code, so
its page is served with a Content-Security-Policy (``page_policy``) that
lets only the scripts docsyncd put on the page run: BokehJS from ``/static/``
and the page's own inline scripts, by hash.  Markup in the document cannot
run script on docsyncd's origin (no inline event handlers, no injected
``<script>``); the price is that a published document's ``CustomJS``
callbacks do not run either (BokehJS compiles them with ``new Function``).
App pages get no such policy: their HTML is the operator's code, as under
bokeh serve.

Tests: tests/test_publishing.py; in a browser, tests/e2e/test_hostile.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .store import IDocumentStore

MIB = 1024 * 1024

#: Document changes a viewer (anyone but the owner) may make to a published document: what widgets and
#: tools send.  Adding or removing roots and changing the title rearrange the document: its owner's job.
VIEWER_EVENTS = frozenset({"ModelChanged", "MessageSent", "ColumnDataChanged", "ColumnsStreamed", "ColumnsPatched"})

#: Headers a proxy on this machine adds: a loopback connection carrying one speaks for someone else.
FORWARDING_HEADERS = ("x-real-ip", "x-forwarded-for", "forwarded")


class PublishKeysError(Exception):
    """``--publish-keys`` names a file that cannot be used; the message is for the operator as it is."""


class PublishRefused(Exception):
    """A publish, replace or delete that the policy refuses; the message says why, for the client."""


@dataclass(frozen=True)
class Credential:
    """What one request says about who sends it, read the same way for a websocket and for HTTP.

    ``headers`` has lower-case names and each header's values joined with
    ``", "`` (as Autobahn joins them); ``address`` is the TCP peer (before any
    ``--use-xheaders``), None for a Unix socket; ``user`` is the logged-in
    user the auth module found, if any.
    """

    headers: dict[str, str]
    address: str | None
    user: Any = None


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` is this machine: a loopback IP, or None (a Unix socket)."""
    if address is None:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def read_keys(path: str) -> dict[str, str]:
    """``--publish-keys``: one ``NAME KEY`` pair a line (``#`` comments, blank lines ignored); key -> name."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise PublishKeysError(f"--publish-keys {path}: {e.strerror}") from e
    keys: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or len(words[1]) < 16:
            raise PublishKeysError(f"--publish-keys {path}, line {number}: give a name and a key of at least 16 "
                                   "characters (docsync secret makes one), separated by a space")
        if words[1] in keys:
            raise PublishKeysError(f"--publish-keys {path}, line {number}: this key is already {keys[words[1]]!r}'s")
        keys[words[1]] = words[0]
    return keys


@dataclass
class PublishPolicy:
    """Owners, ownership and the per-owner limits (see the module docstring)."""

    keys: dict[str, str] = field(default_factory=dict)
    local_publishing: bool = True
    max_documents: int = 100
    max_size: int = 20 * MIB

    @classmethod
    def from_options(cls, options: Any) -> "PublishPolicy":
        return cls(keys=dict(options.get("publish-key-owners") or {}), local_publishing=not options.get("no-local-publishing"),
                   max_documents=options.get("max-published", 100),
                   max_size=options.get("max-published-size", 20 * MIB))

    def owner(self, credential: Credential) -> str:
        """The owner ``credential`` names; ``PublishRefused`` saying why when it names none."""
        headers = credential.headers
        if headers.get("origin"):
            raise PublishRefused("web pages cannot publish, replace or delete published documents; "
                                 "use docsyncd.client or docsyncd.io.output_server")
        scheme, _, key = (headers.get("authorization") or "").partition(" ")
        if scheme:
            if scheme.lower() != "bearer" or not key.strip():
                raise PublishRefused("the Authorization header must be 'Bearer <publish key>'")
            name = self._key_owner(key.strip())
            if name is None:
                raise PublishRefused("the publish key is not one this server knows (--publish-keys)")
            return f"key:{name}"
        if credential.user:
            return f"user:{credential.user}"
        if self.local_publishing and is_loopback(credential.address) and not any(
                headers.get(h) for h in FORWARDING_HEADERS):
            return "local"
        how = "a publish key (publish_key=..., or DOCSYNC_PUBLISH_KEY)"
        if self.local_publishing:
            how += ", or connect from this machine"
        raise PublishRefused(f"publishing needs a credential: {how}")

    def _key_owner(self, key: str) -> str | None:
        found = None
        for known, name in self.keys.items():  # compare every key in constant time
            if hmac.compare_digest(known.encode("utf-8"), key.encode("utf-8")):
                found = name
        return found

    def check_publish(self, store: IDocumentStore, app: str, name: str, owner: str) -> None:
        """``PublishRefused`` unless ``owner`` may publish (app, name) now: its own or a free name, within the count."""
        existing = store.find(app, name)
        if existing is not None:
            if existing.owner != owner:
                raise PublishRefused(f"{name!r} is published by another owner; only they can replace or delete it")
            return
        owned = len(store.owned_by(owner))
        if self.max_documents and owned >= self.max_documents:
            raise PublishRefused(f"{owner} already has {owned} published documents, the most one owner may keep "
                                 f"(--max-published {self.max_documents}); delete one first")

    def check_size(self, name: str, doc_json: str) -> None:
        """``PublishRefused`` when a document's JSON is larger than ``--max-published-size``."""
        size = len(doc_json.encode("utf-8"))
        if self.max_size and size > self.max_size:
            raise PublishRefused(f"{name!r} is {size} bytes as JSON, more than a published document may be "
                                 f"(--max-published-size {self.max_size})")

    @staticmethod
    def check_owner(published_owner: str | None, owner: str | None, name: str) -> None:
        """``PublishRefused`` unless ``owner`` is the owner of the published document ``name``."""
        if owner is None or owner != published_owner:
            raise PublishRefused(f"{name!r} is a published document; only its owner can replace or delete it")


def viewer_refusal(content: Any) -> str | None:
    """Why a viewer may not apply this PATCH-DOC content to a published document, or None."""
    events = content.get("events") if isinstance(content, dict) else None
    for event in events or []:
        kind = event.get("kind") if isinstance(event, dict) else None
        if kind not in VIEWER_EVENTS:
            return (f"a viewer of a published document cannot send {kind} changes "
                    f"(only {', '.join(sorted(VIEWER_EVENTS))}); its owner can")
    return None


_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


def page_policy(html: str) -> bytes:
    """The Content-Security-Policy of a published document's page ``html`` (see the module docstring)."""
    hashes = sorted({base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
                     for body in _INLINE_SCRIPT.findall(html)})
    scripts = " ".join(["'self'"] + [f"'sha256-{h}'" for h in hashes])
    return f"script-src {scripts}; object-src 'none'; base-uri 'none'; form-action 'self'".encode("ascii")


def credential_of_request(request: Any) -> Credential:
    """The ``Credential`` of a twisted.web request (a DELETE, or the request a websocket upgrades)."""
    headers = {name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
               for name, values in request.requestHeaders.getAllRawHeaders()}
    peer = request.transport.getPeer() if request.transport is not None else getattr(request, "client", None)
    return Credential(headers, getattr(peer, "host", None), getattr(request, "current_user", None))


def env_publish_key() -> str | None:
    """``DOCSYNC_PUBLISH_KEY``: the key docsyncd.client presents when none is given."""
    return os.environ.get("DOCSYNC_PUBLISH_KEY") or None

