"""Published documents: a store that keeps them across restarts.

A document published under a name (``docsyncd.io.output_server(name)`` and
``show``, or ``docsyncd.client.push_session(doc, session_id=name)``) is kept
here as its Bokeh JSON, keyed by the app that serves it and the name.  Two
stores provide ``IDocumentStore``: ``SQLiteStore``, the default
(``--store PATH``), and ``MemoryStore`` (``--store memory``), which forgets
everything when the daemon stops.

Stores are synchronous and thread-safe: the server calls ``save`` from a
thread pool (session.py) and the rest from the reactor thread.  ``save``
returns once the document is durable, so the server writes a pushed document
before it answers the push with OK.  SQLite runs in WAL mode with
``synchronous=FULL``: a commit is on disk when it returns, so an acknowledged
push survives SIGKILL (and power loss).  One small commit costs about a
millisecond.  ``only_if`` is asked under the store's lock, so a save that
races a delete cannot bring the document back.

Tests: tests/test_store.py; SQLite loaded only once used: tests/test_idle_imports.py
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from zope.interface import Interface, implementer

if TYPE_CHECKING:
    import sqlite3

#: What may name a published document: it appears in URLs and file-like listings.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RULE = "1 to 64 letters, digits, '_' or '-'"

#: ``--store`` when not given: a file in the directory the daemon was started from.
DEFAULT_STORE = "docsync-store.sqlite"


class BadName(ValueError):
    """A name that cannot name a published document."""


class StoreError(Exception):
    """The store cannot be opened or written; the message is meant for the user as it is."""


def is_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object) -> str:
    """``name`` if it may name a published document, else ``BadName`` saying why."""
    if not is_name(name):
        raise BadName(f"{name!r} cannot name a published document: a name is {NAME_RULE}")
    return name  # type: ignore[return-value]


#: Who owns documents stored before owners were recorded (and what ``owner=None`` means on a first save).
LEGACY_OWNER = "local"


@dataclass(frozen=True)
class Published:
    """One published document: where it is, who owns it (``publishing.Owner.name``), its size in bytes."""

    app: str
    name: str
    updated: float
    owner: str = LEGACY_OWNER
    size: int = 0


class IDocumentStore(Interface):
    """Where published documents live, keyed by (app, name)."""

    def save(app: str, name: str, doc_json: str, owner: str | None = None,
             only_if: Callable[[], bool] | None = None) -> None:
        """Store ``doc_json`` (a document as a JSON string) under (app, name); return once it is durable.

        ``owner`` records who published it; None keeps the owner already recorded
        (a later change saved again), or ``LEGACY_OWNER`` for a new document.
        ``only_if``, when given, is called under the store's lock: False skips the save.
        """

    def load(app: str, name: str) -> str | None:
        """The JSON string stored under (app, name), or None."""

    def find(app: str, name: str) -> Published | None:
        """The listing entry of (app, name), or None when nothing is published there."""

    def delete(app: str, name: str) -> bool:
        """Forget (app, name); True when there was something to forget."""

    def list(app: str | None = None) -> list[Published]:
        """Every published document (of ``app`` only, when given), ordered by app and name."""

    def owned_by(owner: str) -> list[Published]:
        """Every document ``owner`` published, over all apps."""

    def close() -> None:
        """Release the store's resources; it must not be used afterwards."""


@implementer(IDocumentStore)
class MemoryStore:
    """Published documents in a dict: they last as long as the process."""

    def __init__(self, now: Callable[[], float] = time.time):
        self._now = now
        self._docs: dict[tuple[str, str], tuple[str, Published]] = {}
        self._lock = threading.Lock()

    def save(self, app: str, name: str, doc_json: str, owner: str | None = None,
             only_if: Callable[[], bool] | None = None) -> None:
        key = (app, check_name(name))
        with self._lock:
            if only_if is not None and not only_if():
                return
            if owner is None:
                owner = self._docs[key][1].owner if key in self._docs else LEGACY_OWNER
            self._docs[key] = (doc_json, Published(app, name, self._now(), owner, len(doc_json.encode("utf-8"))))

    def load(self, app: str, name: str) -> str | None:
        found = self._docs.get((app, name))
        return found[0] if found else None

    def find(self, app: str, name: str) -> Published | None:
        found = self._docs.get((app, name))
        return found[1] if found else None

    def delete(self, app: str, name: str) -> bool:
        with self._lock:
            return self._docs.pop((app, name), None) is not None

    def list(self, app: str | None = None) -> list[Published]:
        return [entry for (a, _), (_, entry) in sorted(self._docs.items()) if app is None or a == app]

    def owned_by(self, owner: str) -> list[Published]:
        return [entry for _, entry in self._docs.values() if entry.owner == owner]

    def close(self) -> None:
        pass


def _locked(method: Callable) -> Callable:
    """Run an ``SQLiteStore`` method holding its lock: its one connection serves several threads."""

    @functools.wraps(method)
    def locked(self: "SQLiteStore", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


_SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT 'local',
    PRIMARY KEY (app, name)
) WITHOUT ROWID
"""

#: Stores written before documents had owners lack the column; their documents belong to LEGACY_OWNER.
_ADD_OWNER = f"ALTER TABLE published ADD COLUMN owner TEXT NOT NULL DEFAULT '{LEGACY_OWNER}'"

_ENTRY = "SELECT app, name, updated, owner, length(CAST(doc AS BLOB)) FROM published"


@implementer(IDocumentStore)
class SQLiteStore:
    """Published documents in one SQLite file (WAL, synchronous=FULL).

    With ``create=False`` the file is only created by the first ``save``:
    until then reads find nothing and leave no file behind (the default
    ``--store`` in the working directory does this, so a daemon that never
    publishes never writes there).  ``create=True`` opens or creates it now,
    so a bad path is reported at start-up.
    """

    def __init__(self, path: str, create: bool = True, now: Callable[[], float] = time.time):
        self.path = os.path.abspath(os.path.expanduser(path))
        self._now = now
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()  # one connection, used from the reactor thread and the save threads
        if create:
            self._connect()

    def _connect(self) -> sqlite3.Connection:
        import sqlite3  # here, not at the top: a daemon that never publishes never loads SQLite (test_idle_imports.py)

        if self._db is None:
            try:
                # autocommit: one statement, one commit; used from several threads, one at a time (self._lock)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(_SCHEMA)
                if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(published)")}:
                    db.execute(_ADD_OWNER)
            except sqlite3.Error as e:
                raise StoreError(f"cannot use {self.path} as the store of published documents: {e}") from e
            self._db = db
        return self._db

    def _reader(self) -> sqlite3.Connection | None:
        if self._db is None and not os.path.exists(self.path):
            return None
        return self._connect()

    def save(self, app: str, name: str, doc_json: str, owner: str | None = None,
             only_if: Callable[[], bool] | None = None) -> None:
        check_name(name)
        with self._lock:
            if only_if is not None and not only_if():
                return
            self._write(app, name, doc_json, owner)

    def _write(self, app: str, name: str, doc_json: str, owner: str | None) -> None:
        import sqlite3  # loaded by _connect, which runs first: only for the name sqlite3.Error

        try:
            self._connect().execute(
                "INSERT INTO published (app, name, doc, updated, owner) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (app, name) DO UPDATE SET doc = excluded.doc, updated = excluded.updated, "
                "owner = coalesce(?, owner)",
                (app, name, doc_json, self._now(), owner or LEGACY_OWNER, owner),
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot save {name!r} in {self.path}: {e}") from e

    @_locked
    def load(self, app: str, name: str) -> str | None:
        db = self._reader()
        if db is None:
            return None
        row = db.execute("SELECT doc FROM published WHERE app = ? AND name = ?", (app, name)).fetchone()
        return row[0] if row else None

    @_locked
    def find(self, app: str, name: str) -> Published | None:
        db = self._reader()
        row = db.execute(f"{_ENTRY} WHERE app = ? AND name = ?", (app, name)).fetchone() if db else None
        return Published(*row) if row else None

    @_locked
    def delete(self, app: str, name: str) -> bool:
        db = self._reader()
        if db is None:
            return False
        return db.execute("DELETE FROM published WHERE app = ? AND name = ?", (app, name)).rowcount > 0

    @_locked
    def list(self, app: str | None = None) -> list[Published]:
        db = self._reader()
        if db is None:
            return []
        if app is None:
            rows = db.execute(f"{_ENTRY} ORDER BY app, name")
        else:
            rows = db.execute(f"{_ENTRY} WHERE app = ? ORDER BY name", (app,))
        return [Published(*row) for row in rows]

    @_locked
    def owned_by(self, owner: str) -> list[Published]:
        db = self._reader()
        return [Published(*row) for row in db.execute(f"{_ENTRY} WHERE owner = ?", (owner,))] if db else []

    @_locked
    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def open_store(spec: str | None) -> IDocumentStore:
    """The store ``--store`` names: ``memory``, a file path, or None for the default file.

    The default file (``docsync-store.sqlite`` in the working directory) is
    created on the first publish; a path given explicitly is opened now, so
    that a bad one stops the daemon at start-up with ``StoreError``.
    """
    if spec == "memory":
        return MemoryStore()
    if spec is None:
        return SQLiteStore(DEFAULT_STORE, create=False)
    directory = os.path.dirname(os.path.abspath(spec))
    if not os.path.isdir(directory):
        raise StoreError(f"--store {spec}: the directory {directory} does not exist")
    return SQLiteStore(spec, create=True)
