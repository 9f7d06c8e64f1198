"""The service tree: app lifecycle and the unused-session reaper.

``AppsService`` is the first child of the daemon's MultiService and the
listeners come after it, so on SIGTERM the listeners stop first, then every
connection is told the server is going away, every session is discarded
(running its destroyed hooks) and each app's ``on_server_unloaded`` runs.
A session whose callbacks still hold its lock after ``--shutdown-grace`` has
them cancelled and is destroyed anyway, so shutdown cannot hang on them.
The callback threads (``--num-threads``, threads.py) start with the apps and
stop after the last session is discarded.

Tests: tests/test_service.py
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from . import logs
from .protocol import SyncFactory

log = Logger(observer=logs.observer)


class AppsService(MultiService):
    """Runs the apps' server hooks, reaps unused sessions, and shuts sessions down in order.

    Its children are services that work on its apps (``--dev`` file watchers,
    the stats log): they start after the apps loaded and stop before the
    sessions are discarded.
    """

    name = "apps"

    def __init__(self, factories: list[SyncFactory], clock: IReactorTime, check_interval: float,
                 unused_lifetime: float, shutdown_grace: float | None = None, threads: Any = None):
        super().__init__()
        #: The process's callback threads (threads.CallbackThreads), or None.
        self.threads = threads
        #: Seconds a session's callbacks may keep its lock once shutdown began (--shutdown-grace).
        self.shutdown_grace = shutdown_grace
        self.factories = factories
        self.clock = clock
        self.check_interval = check_interval
        self.unused_lifetime = unused_lifetime
        self._reaper = LoopingCall(self.reap)
        self._reaper.clock = clock

    @property
    def managers(self) -> list[Any]:
        return [f.manager for f in self.factories]

    def startService(self) -> None:
        if self.threads is not None:
            self.threads.start()
        for factory in self.factories:
            factory.startFactory()
            factory.manager.server_loaded()
        self._reaper.start(self.check_interval, now=False)
        super().startService()

    def reap(self) -> defer.Deferred:
        """Discard sessions unused for longer than the lifetime; a failure is logged, never fatal."""
        d = defer.gatherResults([m.discard_unused(self.unused_lifetime) for m in self.managers], consumeErrors=True)
        return d.addErrback(lambda f: log.failure("error while discarding unused sessions", f))

    async def _shut_down(self) -> None:
        for manager in self.managers:
            for session in manager.sessions:
                for connection in session.connections:
                    connection.go_away()
            try:
                await manager.discard_all(self.shutdown_grace)
            except Exception:
                log.failure("error while discarding the sessions of {label}", app=manager.app.name,
                            label=manager.app.label)
            manager.server_unloaded()
        for factory in self.factories:
            factory.stopFactory()
        log.info("all sessions discarded and apps unloaded")

    async def _stop(self) -> None:
        await super().stopService()  # the companions first
        if self._reaper.running:
            self._reaper.stop()
        await self._shut_down()
        if self.threads is not None:
            self.threads.stop()

    def stopService(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())

