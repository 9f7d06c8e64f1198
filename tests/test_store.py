"""Tests for docsyncd.store and the server side of published documents (docsyncd.published, the
PUSH-DOC ``publish`` metadata, restoring from the store), through an in-memory Site."""

from __future__ import annotations

import json
import sqlite3

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory
from bokeh.document import Document
from bokeh.models import Slider
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from docsyncd import wire
from docsyncd.session import SAVE_DELAY
from docsyncd.store import (BadName, IDocumentStore, MemoryStore, SQLiteStore, StoreError, check_name,
                            open_store)

from unit_support import SLIDER_APP, BokehClient, InMemoryServer, make_token, write_app


def clock():
    ticks = iter(range(100, 10_000))
    return lambda: float(next(ticks))


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore(now=clock()) if request.param == "memory" else SQLiteStore(str(tmp_path / "store.sqlite"), now=clock())
    yield s
    s.close()


def test_store_contract(store):
    """Both stores save, replace, load, list (by app, then name) and delete documents."""
    verifyObject(IDocumentStore, store)
    assert store.load("app", "a") is None
    store.save("app", "b", '{"b": 1}')
    store.save("app", "a", '{"a": 1}')
    store.save("", "a", '{"root": 1}')
    store.save("app", "a", '{"a": 2}')
    assert store.load("app", "a") == '{"a": 2}'
    assert store.load("", "a") == '{"root": 1}'
    assert [(p.app, p.name) for p in store.list()] == [("", "a"), ("app", "a"), ("app", "b")]
    assert [p.name for p in store.list("app")] == ["a", "b"]
    assert store.list("app")[0].updated > store.list("app")[1].updated  # a was saved again last
    assert store.delete("app", "a") is True
    assert store.delete("app", "a") is False
    assert store.load("app", "a") is None


def test_store_refuses_bad_names(store):
    """A name must be 1 to 64 letters, digits, '_' or '-'; anything else raises BadName with that rule."""
    for bad in ["", "a b", "../x", "x" * 65, "é", "a/b"]:
        with pytest.raises(BadName, match="1 to 64 letters, digits"):
            store.save("app", bad, "{}")
    assert check_name("Line_2-b") == "Line_2-b"


def test_sqlite_survives_reopening_and_is_durable(tmp_path):
    """An SQLite store keeps its documents across processes, in WAL mode with synchronous=FULL."""
    path = tmp_path / "store.sqlite"
    first = SQLiteStore(str(path))
    first.save("app", "line", '{"x": 1}')
    assert first._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert first._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # Another connection sees it at once, before the first is closed (as after SIGKILL).
    other = sqlite3.connect(str(path))
    assert other.execute("SELECT doc FROM published WHERE name = 'line'").fetchone() == ('{"x": 1}',)
    other.close()
    first.close()
    assert SQLiteStore(str(path)).load("app", "line") == '{"x": 1}'


def test_lazy_store_creates_its_file_on_first_save(tmp_path):
    """The default store reads nothing and writes no file until something is published."""
    path = tmp_path / "later.sqlite"
    store = SQLiteStore(str(path), create=False)
    assert store.list() == [] and store.load("", "x") is None and store.delete("", "x") is False
    assert not path.exists()
    store.save("", "x", "{}")
    assert path.exists()


def test_open_store(tmp_path, monkeypatch):
    """--store: 'memory', a path (opened now), or the default file (lazy); a bad path is a StoreError sentence."""
    assert isinstance(open_store("memory"), MemoryStore)
    explicit = open_store(str(tmp_path / "s.sqlite"))
    assert isinstance(explicit, SQLiteStore) and (tmp_path / "s.sqlite").exists()
    monkeypatch.chdir(tmp_path)
    default = open_store(None)
    assert default.path == str(tmp_path / "docsync-store.sqlite") and not (tmp_path / "docsync-store.sqlite").exists()
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "no" / "such" / "s.sqlite"))
    (tmp_path / "junk.sqlite").write_text("this is not a database, just text " * 100)
    with pytest.raises(StoreError, match="cannot use .*junk.sqlite"):
        open_store(str(tmp_path / "junk.sqlite"))


# -- the server side ------------------------------------------------------------


def push_message(doc, publish=True):
    return wire.PROTOCOL.create("PUSH-DOC", doc, **({"publish": True} if publish else {}))


def slider_doc(value=1):
    doc = Document()
    doc.add_root(Slider(start=0, end=10, value=value, name="slider"))
    return doc


class PublishingTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def start_server(self, paths=(), args=()):
        return InMemoryServer(list(paths), ["--store", str(self.tmp_path / "store.sqlite"), *args]).start_for(self)

    def setUp(self):
        self.server = self.start_server()
        self.manager = self.server.managers[""]

    def open(self, session_id, path="/ws"):
        factory = WebSocketClientFactory(f"ws://localhost:5006{path}", protocols=["bokeh", make_token(session_id)],
                                         reactor=self.server.clock)
        factory.protocol = BokehClient
        client = factory.buildProtocol(None)
        pump = self.server.connect(client)
        pump.flush()
        return client, pump

    def publish(self, name, doc, path="/ws"):
        client, pump = self.open(name, path)
        client.send_message(push_message(doc))
        pump.flush()
        return client, pump

    def stored(self, name):
        return json.loads(self.manager.store.load("", name))

    def slider_value(self, doc_json):
        return [r["attributes"]["value"] for r in doc_json["roots"] if r["attributes"].get("name") == "slider"][0]

    def test_publish_stores_and_acknowledges(self):
        """A PUSH-DOC with publish metadata is stored under the session id, then answered OK."""
        client, _ = self.publish("line", slider_doc(4))
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.assertEqual(self.slider_value(self.stored("line")), 4)
        self.assertTrue(self.manager.get("line").published)

    def test_push_without_publish_stores_nothing(self):
        """A plain PUSH-DOC (bokeh.client's) replaces the document and stores nothing."""
        client, pump = self.open("plain")
        client.send_message(push_message(slider_doc(), publish=False))
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.assertEqual(self.manager.store.list(), [])

    def test_publish_bad_name_is_an_error_reply(self):
        """Publishing under an id that is not a name gets an ERROR saying what a name is; the connection stays."""
        client, pump = self.open("has space")
        client.send_message(push_message(slider_doc()))
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "ERROR"])
        self.assertIn("cannot name a published document", client.messages[-1].content["text"])
        self.assertTrue(client.opened and not client.closed)
        self.flushLoggedErrors(BadName)

    def test_pusher_gets_no_echo_and_browsers_get_the_new_document(self):
        """A push is not echoed to the pusher; a browser already on the session receives the new roots."""
        tab, tab_pump = self.open("line")
        client, pump = self.publish("line", slider_doc(2))
        tab_pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.assertIn("PATCH-DOC", tab.msgtypes())

    def test_later_changes_are_stored(self):
        """A browser's change to a published document is stored SAVE_DELAY later."""
        client, pump = self.publish("line", slider_doc(1))
        session = self.manager.get("line")
        mirror = Document.from_json(session.document.to_json(deferred=False))
        events = []
        mirror.on_change(events.append)
        mirror.get_model_by_name("slider").value = 9
        client.send("PATCH-DOC", events)
        pump.flush()
        self.assertEqual(client.msgtypes()[-1], "OK")
        self.server.clock.advance(SAVE_DELAY)  # changes are saved coalesced, a moment later
        self.assertEqual(self.slider_value(self.stored("line")), 9)

    def test_python_callback_changes_are_stored(self):
        """Changes made on the server (a locked callback) are stored once, SAVE_DELAY after the lock is released."""
        self.publish("line", slider_doc(1))
        session = self.manager.get("line")
        saves = []
        real_save = self.manager.store.save
        self.manager.store.save = lambda *a, **kw: (saves.append(a[1]), real_save(*a, **kw))

        def change():
            slider = session.document.get_model_by_name("slider")
            slider.value = 5
            slider.end = 20

        self.successResultOf(session.with_document_locked(change))
        self.server.clock.advance(SAVE_DELAY)
        self.assertEqual(saves, ["line"])
        self.assertEqual(self.slider_value(self.stored("line")), 5)

    def test_restored_after_session_discarded(self):
        """After its session is gone (or the daemon restarted), a published name comes back from the store."""
        client, pump = self.publish("line", slider_doc(7))
        original = self.manager.get("line").document.to_json(deferred=False)
        client.sendClose()
        pump.flush()
        self.successResultOf(self.manager.discard_all())
        self.assertIsNone(self.manager.get("line"))

        server = self.start_server()  # a new server on the same store file
        page = server.get("/?bokeh-session-id=line")
        self.assertEqual(page.status, 200)
        restored = server.managers[""].get("line")
        self.assertTrue(restored.published)
        self.assertEqual(restored.document.to_json(deferred=False), original)

    def test_named_app_restores_instead_of_running_the_app(self):
        """Under an app, /<app>?bokeh-session-id=NAME shows the published document, not the app's."""
        server = self.start_server([write_app(self.tmp_path, "sliders", SLIDER_APP)])
        manager = server.managers["sliders"]
        doc = Document()
        doc.add_root(Slider(start=0, end=3, value=3, name="mine"))
        client, pump = self.publish_on(server, "sliders", "custom", doc)
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.successResultOf(manager.discard_all())
        self.assertEqual(server.get("/sliders?bokeh-session-id=custom").status, 200)
        restored = manager.get("custom").document
        self.assertIsNotNone(restored.get_model_by_name("mine"))
        self.assertIsNone(restored.get_model_by_name("div"))  # the app's code did not run
        listing = json.loads(server.get("/sliders/published").body)
        self.assertEqual([e["url"] for e in listing["published"]], ["/sliders?bokeh-session-id=custom"])

    def publish_on(self, server, app, name, doc):
        client, pump = server.session_websocket(app, make_token(name))
        client.send_message(push_message(doc))
        pump.flush()
        return client, pump

    def test_listings_and_index(self):
        """/published.json, /published and the index page list published documents with their URLs."""
        self.publish("line", slider_doc())
        self.publish("bars", slider_doc())
        listing = json.loads(self.server.get("/published.json").body)
        self.assertEqual([(e["app"], e["name"], e["url"]) for e in listing["published"]],
                         [("", "bars", "/?bokeh-session-id=bars"), ("", "line", "/?bokeh-session-id=line")])
        self.assertEqual(json.loads(self.server.get("/published").body)["published"], listing["published"])
        index = self.server.get("/")
        self.assertEqual(index.status, 200)
        self.assertIn('href="/?bokeh-session-id=line"', index.text)

    def test_get_and_delete_one(self):
        """GET /published/NAME gives the stored JSON; DELETE unpublishes it (404 after); a bad name is 400."""
        self.publish("line", slider_doc(3))
        got = self.server.get("/published/line")
        self.assertEqual(got.headers["content-type"], "application/json")
        self.assertEqual(self.slider_value(json.loads(got.body)), 3)
        deleted = self.server.request("/published/line", method="DELETE")
        self.assertEqual((deleted.status, json.loads(deleted.body)["deleted"]), (200, "line"))
        self.assertFalse(self.manager.get("line").published)
        self.assertEqual(self.server.request("/published/line", method="DELETE").status, 404)
        self.assertEqual(self.server.get("/published/line").status, 404)
        bad = self.server.request("/published/no%20way", method="DELETE")
        self.assertEqual(bad.status, 400)
        self.assertIn("cannot name a published document", json.loads(bad.body)["error"])

    def test_deleted_document_is_not_stored_again(self):
        """Changes to a session after its document was deleted are not stored."""
        self.publish("line", slider_doc())
        self.server.request("/published/line", method="DELETE")
        session = self.manager.get("line")
        self.successResultOf(session.with_document_locked(
            lambda: setattr(session.document.get_model_by_name("slider"), "value", 2)))
        self.assertIsNone(self.manager.store.load("", "line"))


class EmptyAppTests(SynchronousTestCase):
    def setUp(self):
        self.server = InMemoryServer([]).start_for(self)

    def test_root_serves_empty_app_for_named_sessions(self):
        """Without --app, /?bokeh-session-id=X is the empty app's page, with /ws, /metadata and /autoload.js."""
        page = self.server.get("/?bokeh-session-id=fresh")
        self.assertEqual(page.status, 200)
        session = self.server.managers[""].get("fresh")
        self.assertEqual(list(session.document.roots), [])
        self.assertEqual(json.loads(self.server.get("/metadata").body)["url"], "/")
        self.assertEqual(self.server.get("/autoload.js?bokeh-autoload-element=x&bokeh-session-id=fresh").status, 200)

    def test_root_without_session_is_the_index(self):
        """Without --app, a plain GET / lists the published documents (none yet) instead of making a session."""
        index = self.server.get("/")
        self.assertEqual(index.status, 200)
        self.assertIn("Nothing is published yet", index.text)
        self.assertEqual(self.server.managers[""].sessions, [])

    def test_disable_index_serves_empty_app(self):
        """With --disable-index, GET / is a new empty session, as under bokeh serve."""
        server = InMemoryServer([], ["--disable-index"])
        self.addCleanup(server.restore)
        page = server.get("/")
        self.assertEqual(page.status, 200)
        self.assertEqual(len(server.managers[""].sessions), 1)

    def test_single_app_index_stops_redirecting_once_something_is_published(self):
        """One app: / redirects to it until a document is published, then lists both."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as directory:
            server = InMemoryServer([write_app(Path(directory), "sliders", SLIDER_APP)])
            self.addCleanup(server.restore)
            self.assertEqual(server.get("/").status, 302)
            server.managers["sliders"].store.save("sliders", "kept", "{}")
            listing = server.get("/")
            self.assertEqual(listing.status, 200)
            self.assertIn('href="/sliders?bokeh-session-id=kept"', listing.text)
            self.assertIn('href="/sliders"', listing.text)
