"""The daemon's listeners (``--listen``, ``--port``), with one-line errors.

A port another process holds is the first thing many new users meet; Twisted
reports it as a ``CannotListenError`` traceback from deep inside twistd.
``ListenFailed`` says it in one line naming the endpoint and the port.  It is
a ``SystemExit`` (so Python prints only its message, under ``twistd -n``) and
an ``Exception`` (so a daemonizing twistd reports it to the shell that
started it, "An error has occurred: ...").

Tests: tests/test_first_minute.py
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError


class ListenFailed(SystemExit, Exception):
    """Listening on an endpoint failed; ``code`` is the one line for the user."""


def describe_listen_error(endpoint: str, error: CannotListenError) -> str:
    """The reason first: a daemonizing twistd shows the shell only the first hundred bytes."""
    reason = getattr(error.socketError, "errno", None)
    if reason == errno.EADDRINUSE:
        return (f"docsync: port {error.port} is in use, cannot listen on {endpoint}; "
                "stop what holds it, or choose another --port")
    if reason == errno.EACCES:
        return f"docsync: no permission to listen on port {error.port} ({endpoint}); ports below 1024 need root"
    if reason == errno.EADDRNOTAVAIL:
        return f"docsync: this machine has no address {error.interface}, cannot listen on {endpoint}"
    return f"docsync: cannot listen on {endpoint}: {error.socketError}"


class _Listener(StreamServerEndpointService):
    """One endpoint's listening service, as ``strports.service`` makes it, whose failure to listen is one line."""

    def __init__(self, endpoint: str, factory: Any, reactor: Any):
        try:
            server_endpoint = serverFromString(reactor, endpoint)
        except Exception as e:  # unknown endpoint type, missing key file, bad port number...
            raise SystemExit(f"docsync: --listen {endpoint}: {e}")
        super().__init__(server_endpoint, factory)
        self.endpoint_description = endpoint
        # As strports.service does: a failure to listen raises from privilegedStartService.
        self._raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise ListenFailed(describe_listen_error(self.endpoint_description, e)) from None


def add_listeners(top: service.MultiService, endpoints: list[str], factory: Any, reactor: Any) -> None:
    """A listening service under ``top`` for each endpoint string; a bad string is ``SystemExit`` in one line."""
    for endpoint in endpoints:
        _Listener(endpoint, factory, reactor).setServiceParent(top)
