"""The options for running behind a proxy, access control and limits (a mixin of ``tap.Options``).

Kept out of ``tap.py`` so that module stays about the service tree; the
behaviour is in ``proxy.py``, ``auth.py``, ``limits.py`` and ``guard.py``.
Names follow ``bokeh serve`` where it has the option.

Tests: tests/test_guard.py (OptionsTests)
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python import usage

MIB = 1024 * 1024


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class GuardOptions:
    """``usage.Options`` mixin: ``--use-xheaders``, ``--allow-host``, auth, request and session limits."""

    optParameters = [
        ["auth-module", None, None, "A Python file with Bokeh's auth hooks (get_user or get_user_async, login_url "
                                    "or get_login_url, optional logout_url; LoginHandler and LogoutHandler as "
                                    "twisted.web Resource classes); default: BOKEH_AUTH_MODULE."],
        ["cookie-secret", None, None, "Key for signed cookies (get_secure_cookie, set_secure_cookie); default: "
                                      "DOCSYNC_COOKIE_SECRET or BOKEH_COOKIE_SECRET."],
        ["max-sessions", None, 0, "Most live sessions, over all apps; a request for a new one beyond it gets 503 "
                                  "with Retry-After (0: no limit).", int],
        ["max-session-rate", None, 0, "Most new sessions per client address per second; faster gets 503 with "
                                      "Retry-After (0: no limit).", float],
        ["max-connections", None, None, "Most open connections (websockets included); more get 503 "
                                        "(default: the open-file limit less 64; 0: no limit).", int],
        ["max-connections-per-address", None, 0, "Most open connections from one client address; more get 503 "
                                                 "(0: no limit; behind a proxy every client is the proxy).", int],
        ["max-request-line", None, 16384, "Longest HTTP request line in bytes (longer: 414).", int],
        ["max-header-size", None, 16384, "Most bytes of HTTP request headers (more: 431).", int],
        ["max-headers", None, 500, "Most HTTP request headers (more: 431).", int],
        ["max-body-size", None, 10 * MIB, "Largest HTTP request body in bytes (larger: 413).", int],
        ["handshake-timeout", None, 10000, "ms a client may take to send a whole request (line, headers, body), "
                                           "from connecting or from the request's first byte (websocket opening "
                                           "handshakes included); slower gets 408 and is disconnected (0: no "
                                           "limit).", int],
        ["publish-keys", None, None, "A file of publish keys, one 'NAME KEY' a line: a client presenting KEY "
                                     "(Authorization: Bearer KEY) publishes as key:NAME (docsyncd/publishing.py)."],
        ["max-published", None, 100, "Most published documents one owner may keep, over all apps (0: no limit).", int],
        ["max-published-size", None, 20 * MIB, "Largest published document, in bytes of JSON (0: no limit).", int],
        ["websocket-max-send-buffer", None, 64 * MIB, "Bytes that may wait for a websocket client that has read "
                                                      "nothing for the send timeout; beyond, the next message is "
                                                      "not sent and the connection closes 1008 'client too slow' "
                                                      "(0: no limit).", int],
        ["websocket-send-timeout", None, 30000, "ms a websocket client may read nothing while more than the send "
                                                "buffer limit waits for it.", int],
    ]
    optFlags = [
        ["autoload-credentials", None, "Let pages from allowed websocket origins fetch autoload.js with their "
                                       "cookies (Access-Control-Allow-Credentials); off by default."],
        ["no-local-publishing", None, "Clients on this machine need a publish key or a login to publish too "
                                      "(by default they publish as the owner 'local')."],
        ["use-xheaders", None, "Take the client's address, scheme and host from X-Real-IP / X-Forwarded-For, "
                               "X-Forwarded-Proto and X-Forwarded-Host (only behind a proxy that sets them)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allow-host"] = []
        for name in ("include-headers", "exclude-headers", "include-cookies", "exclude-cookies"):
            self[name] = None

    def opt_allow_host(self, host: str) -> None:
        """A host[:port] the Host header may name; other requests get 403 (repeatable, * wildcards;
        bokeh serve once called this option 'host'). Default: any host."""
        self["allow-host"].append(host)

    def _add_names(self, option: str, value: str) -> None:
        self[option] = (self[option] or []) + _names(value)

    def opt_include_headers(self, names: str) -> None:
        """Only these request headers go into the session token (comma-separated, repeatable)."""
        self._add_names("include-headers", names)

    def opt_exclude_headers(self, names: str) -> None:
        """These request headers stay out of the session token (comma-separated, repeatable)."""
        self._add_names("exclude-headers", names)

    def opt_include_cookies(self, names: str) -> None:
        """Only these cookies go into the session token (comma-separated, repeatable)."""
        self._add_names("include-cookies", names)

    def opt_exclude_cookies(self, names: str) -> None:
        """These cookies stay out of the session token (comma-separated, repeatable)."""
        self._add_names("exclude-cookies", names)

    def check_guard_options(self: Any) -> None:
        """Called from ``postOptions`` (after bokeh_settings filled defaults from the environment): refuse what
        cannot work, in one sentence."""
        for kind in ("headers", "cookies"):
            if self[f"include-{kind}"] is not None and self[f"exclude-{kind}"] is not None:
                raise usage.UsageError(f"give --include-{kind} or --exclude-{kind}, not both")
        for name in ("max-sessions", "max-session-rate", "handshake-timeout", "websocket-max-send-buffer",
                     "max-published", "max-published-size", "max-connections", "max-connections-per-address"):
            if self[name] is not None and self[name] < 0:
                raise usage.UsageError(f"--{name} must be 0 (no limit) or a positive number")
        for name in ("max-request-line", "max-header-size", "max-headers", "max-body-size", "websocket-send-timeout"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be a positive number")
        for host in self["allow-host"]:
            if not host.strip() or "/" in host:
                raise usage.UsageError(f"--allow-host {host!r}: give a host name, optionally with :port")
        self["publish-key-owners"] = {}
        if self["publish-keys"]:
            from .publishing import PublishKeysError, read_keys

            try:
                self["publish-key-owners"] = read_keys(os.path.expanduser(self["publish-keys"]))
            except PublishKeysError as e:
                raise usage.UsageError(str(e))
        if self["auth-module"]:
            path = os.path.abspath(os.path.expanduser(self["auth-module"]))  # before twistd changes directory
            if not os.path.isfile(path):
                raise usage.UsageError(f"--auth-module {self['auth-module']}: no such file")
            self["auth-module"] = path
