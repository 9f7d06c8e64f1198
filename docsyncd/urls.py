"""Where a running server can be reached: the URLs ``docsync serve`` prints and ``--show`` opens.

The URLs come from the ports actually listening (so ``--port 0`` and systemd
sockets give real numbers): ``http://<host>:<port><prefix>/<app>``, with
``https`` for ``ssl:`` endpoints and ``localhost`` for the wildcard address.
Unix sockets have no URL a browser can open.

Tests: tests/test_cli.py
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import logs

log = Logger(observer=logs.observer)

_WILDCARDS = ("", "0.0.0.0", "::")


def _endpoint_services(top: service.IService) -> list[StreamServerEndpointService]:
    found = []
    if isinstance(top, StreamServerEndpointService):
        found.append(top)
    for child in getattr(top, "services", []):
        found.extend(_endpoint_services(child))
    return found


def base_url(address: Any, secure: bool = False) -> str | None:
    """``http://host:port`` for a listening address, None when a browser cannot reach it."""
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None
    host = address.host
    if host in _WILDCARDS:
        host = "localhost"
    elif isinstance(address, IPv6Address):
        host = f"[{host}]"
    return f"{'https' if secure else 'http'}://{host}:{address.port}"


def listening_base_urls(top: service.IService) -> defer.Deferred:
    """Deferred list of ``scheme://host:port`` for every listener of a started service tree."""

    def port_of(svc: StreamServerEndpointService) -> defer.Deferred:
        waiting = getattr(svc, "_waitingForPort", None)
        if waiting is None:
            return defer.succeed(None)
        d = defer.Deferred()

        def got(port: Any) -> Any:
            d.callback(None if isinstance(port, Failure) else port)
            return port  # the service keeps its own result

        waiting.addBoth(got)
        return d

    services = _endpoint_services(top)

    def urls(ports: list[Any]) -> list[str]:
        found = []
        for svc, port in zip(services, ports):
            url = None if port is None or not hasattr(port, "getHost") else base_url(
                port.getHost(), isinstance(svc.endpoint, SSL4ServerEndpoint))
            if url and url not in found:
                found.append(url)
        return found

    return defer.gatherResults([port_of(s) for s in services]).addCallback(urls)


def app_urls(base: str, prefix: str, names: list[str]) -> list[str]:
    return [f"{base}{prefix}/{name}" for name in names]


def _bokeh_browser() -> Any:
    from bokeh.util.browser import get_browser_controller

    return get_browser_controller()


class BrowserOpener(service.Service):
    """``--show``: once the server listens, open each app in a web browser.

    The browser is Bokeh's choice, as for bokeh serve --show: ``BOKEH_BROWSER``
    (``none``: none), else the standard library's (which honours ``$BROWSER``).
    """

    def __init__(self, top: service.IService, prefix: str, names: list[str], reactor: Any,
                 open_url: Callable[[str], Any] | None = None):
        self.top = top
        self.prefix = prefix
        self.names = names
        self.reactor = reactor
        self.open_url = open_url or _bokeh_browser().open

    def startService(self) -> None:
        super().startService()
        listening_base_urls(self.top).addCallback(self._open).addErrback(
            lambda f: log.failure("--show: could not open a browser", f))

    def _open(self, bases: list[str]) -> None:
        if not bases:
            log.warn("--show: no http(s) listener, so no page to open")
            return
        for url in app_urls(bases[0], self.prefix, self.names):
            log.info("--show: opening {url}", url=url)
            # Opening may wait for the browser; keep the reactor free.
            self.reactor.callInThread(self.open_url, url)
