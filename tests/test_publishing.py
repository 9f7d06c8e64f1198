"""Tests for docsyncd.publishing: who may publish, replace and delete a published document, the
per-owner limits, what viewers may change, and the page policy of published pages (in memory)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from bokeh.document import Document
from bokeh.models import Div, Slider
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import tap, wire
from docsyncd.publishing import Credential, PublishPolicy, PublishRefused, is_loopback, page_policy, read_keys
from docsyncd.session import SAVE_DELAY
from docsyncd.store import SQLiteStore

from unit_support import InMemoryServer, make_token

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
REMOTE = {"X-Forwarded-For": "203.0.113.9"}  # through a proxy on this machine: not a local client


def slider_doc(value=1):
    doc = Document()
    doc.add_root(Slider(start=0, end=10, value=value, name="slider"))
    return doc


def push_message(doc, publish=True):
    return wire.PROTOCOL.create("PUSH-DOC", doc, **({"publish": True} if publish else {}))


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


class OwnershipTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def start(self, *args):
        keys = self.tmp_path / "keys"
        keys.write_text(f"# name key\nalice {ALICE_KEY}\nbob {BOB_KEY}\n")
        self.server = InMemoryServer([], ["--publish-keys", str(keys), *args]).start_for(self)
        self.manager = self.server.managers[""]
        self.store = self.manager.store

    def setUp(self):
        self.start()

    def connect(self, name, headers=None, origin=None):
        client, pump = self.server.websocket("", ["bokeh", make_token(name)], origin=origin, headers=headers)
        self.assertEqual(client.msgtypes(), ["ACK"])
        return client, pump

    def push(self, name, doc, headers=None, publish=True, origin=None):
        client, pump = self.connect(name, headers, origin)
        client.send_message(push_message(doc, publish))
        pump.flush()
        return client, pump

    def reply(self, client):
        last = client.messages[-1]
        return last.msgtype, last.content.get("text", "") if isinstance(last.content, dict) else ""

    def value(self, name):
        doc = json.loads(self.store.load("", name))
        return [r["attributes"]["value"] for r in doc["roots"] if r["attributes"].get("name") == "slider"][0]

    def test_remote_client_without_credential_cannot_publish(self):
        """A client that is not on this machine and presents no key gets an ERROR saying what it needs; nothing is stored."""
        client, _ = self.push("line", slider_doc(), REMOTE)
        msgtype, text = self.reply(client)
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("publishing needs a credential", text)
        self.assertEqual(self.store.list(), [])
        self.assertFalse(self.manager.get("line").published)
        self.assertTrue(client.opened and not client.closed)

    def test_key_publishes_and_records_its_owner(self):
        """A key from --publish-keys publishes from anywhere; the document records the key's owner."""
        client, _ = self.push("line", slider_doc(4), {**REMOTE, **bearer(ALICE_KEY)})
        self.assertEqual(self.reply(client)[0], "OK")
        self.assertEqual(self.store.find("", "line").owner, "key:alice")
        self.assertEqual(self.manager.get("line").owner, "key:alice")

    def test_local_client_publishes_as_local(self):
        """A client on this machine (loopback, no forwarding headers) publishes without a key, as 'local'."""
        client, _ = self.push("line", slider_doc())
        self.assertEqual(self.reply(client)[0], "OK")
        self.assertEqual(self.store.find("", "line").owner, "local")

    def test_unknown_key_is_refused_even_locally(self):
        """A key the server does not know is refused, also over loopback: a wrong key is never 'local'."""
        client, _ = self.push("line", slider_doc(), bearer("not-a-key-0123456789abcdef"))
        msgtype, text = self.reply(client)
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("publish key is not one this server knows", text)
        self.assertEqual(self.store.list(), [])

    def test_web_page_cannot_publish(self):
        """A websocket from a web page (it has an Origin), even this server's own, cannot publish itself."""
        client, _ = self.push("line", slider_doc(), origin="http://localhost:5006")
        msgtype, text = self.reply(client)
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("web pages cannot publish", text)
        self.assertEqual(self.store.list(), [])

    def test_only_the_owner_replaces(self):
        """A PUSH-DOC on a published document, publish flag or not, replaces it only for its owner."""
        self.push("victim", slider_doc(1), bearer(ALICE_KEY))
        for headers, publish in [(bearer(BOB_KEY), False), (bearer(BOB_KEY), True), (None, False), (REMOTE, False)]:
            client, _ = self.push("victim", slider_doc(9), headers, publish=publish)
            msgtype, text = self.reply(client)
            self.assertEqual(msgtype, "ERROR", (headers, publish))
            self.assertIn("only", text)
        self.assertEqual(self.value("victim"), 1)
        self.assertEqual(self.manager.get("victim").document.get_model_by_name("slider").value, 1)
        client, _ = self.push("victim", slider_doc(5), bearer(ALICE_KEY))
        self.assertEqual(self.reply(client)[0], "OK")
        self.assertEqual(self.value("victim"), 5)

    def test_other_owner_cannot_publish_over_a_stored_document(self):
        """After the session is gone, another owner publishing the same name is refused by the stored owner."""
        self.push("victim", slider_doc(1), bearer(ALICE_KEY))
        self.successResultOf(self.manager.discard_all())
        client, _ = self.push("victim", slider_doc(9), bearer(BOB_KEY))
        self.assertEqual(self.reply(client)[0], "ERROR")
        self.assertEqual(self.value("victim"), 1)

    def test_delete_needs_the_owner(self):
        """DELETE answers 403 without the owner's credential (other key, none from afar, any Origin), 200 with it."""
        self.push("line", slider_doc(), bearer(ALICE_KEY))
        for headers in [bearer(BOB_KEY), REMOTE, {}, {**bearer(ALICE_KEY), "Origin": "http://localhost:5006"},
                        {"Host": "evil.example:5006", "Origin": "http://evil.example:5006"}]:
            answer = self.server.request("/published/line", method="DELETE", headers=headers)
            self.assertEqual(answer.status, 403, headers)
            self.assertIn("error", json.loads(answer.body))
        self.assertIsNotNone(self.store.find("", "line"))
        answer = self.server.request("/published/line", method="DELETE", headers={**REMOTE, **bearer(ALICE_KEY)})
        self.assertEqual(answer.status, 200)
        self.assertIsNone(self.store.find("", "line"))

    def test_viewers_change_values_but_not_the_document_shape(self):
        """A viewer's slider change is applied and stored; removing a root or changing the title gets an ERROR."""
        self.push("line", slider_doc(1), bearer(ALICE_KEY))
        session = self.manager.get("line")
        viewer, pump = self.connect("line", origin="http://localhost:5006")
        mirror = Document.from_json(session.document.to_json(deferred=False))
        events = []
        mirror.on_change(events.append)
        mirror.get_model_by_name("slider").value = 7
        viewer.send("PATCH-DOC", events)
        pump.flush()
        self.assertEqual(self.reply(viewer)[0], "OK")
        self.server.clock.advance(SAVE_DELAY)
        self.assertEqual(self.value("line"), 7)
        events.clear()
        mirror.remove_root(mirror.get_model_by_name("slider"))
        viewer.send("PATCH-DOC", events)
        pump.flush()
        msgtype, text = self.reply(viewer)
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("cannot send RootRemoved", text)
        self.assertEqual(len(session.document.roots), 1)

    def test_count_limit_per_owner(self):
        """--max-published N: an owner's N+1th document is refused with the option's name; others may still publish."""
        self.start("--max-published", "2")
        for name in ("a", "b"):
            self.assertEqual(self.reply(self.push(name, slider_doc(), bearer(ALICE_KEY))[0])[0], "OK")
        msgtype, text = self.reply(self.push("c", slider_doc(), bearer(ALICE_KEY))[0])
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("--max-published 2", text)
        self.assertEqual(self.reply(self.push("a", slider_doc(3), bearer(ALICE_KEY))[0])[0], "OK")  # replacing is fine
        self.assertEqual(self.reply(self.push("c", slider_doc(), bearer(BOB_KEY))[0])[0], "OK")
        self.assertEqual(sorted(p.name for p in self.store.owned_by("key:alice")), ["a", "b"])

    def test_size_limit(self):
        """--max-published-size: a larger document is refused, not stored, and its session is not published."""
        self.start("--max-published-size", "2000")
        doc = Document()
        doc.add_root(Div(text="x" * 5000))
        client, _ = self.push("big", doc, bearer(ALICE_KEY))
        msgtype, text = self.reply(client)
        self.assertEqual(msgtype, "ERROR")
        self.assertIn("--max-published-size 2000", text)
        self.assertIsNone(self.store.find("", "big"))
        self.assertFalse(self.manager.get("big").published)

    def test_listings_do_not_name_owners(self):
        """/published.json and /published give what a viewer needs to open a document, not who owns it."""
        self.push("line", slider_doc(), bearer(ALICE_KEY))
        for path in ("/published.json", "/published"):
            body = self.server.get(path).body.decode()
            self.assertIn('"name": "line"', body)
            self.assertNotIn("alice", body)

    def test_published_page_has_a_script_policy(self):
        """A published document's page carries a CSP allowing only its own scripts; an ordinary page has none."""
        self.push("line", slider_doc(), bearer(ALICE_KEY))
        page = self.server.get("/?bokeh-session-id=line")
        self.assertEqual(page.status, 200)
        policy = page.headers["content-security-policy"]
        self.assertIn("script-src 'self' 'sha256-", policy)
        self.assertNotIn("unsafe-inline", policy)
        self.assertEqual(policy, page_policy(page.text).decode())
        self.assertNotIn("content-security-policy", self.server.get("/?bokeh-session-id=plain").headers)
        self.assertEqual(self.server.get("/published/line").headers["x-content-type-options"], "nosniff")


def test_page_policy_hashes_inline_scripts_only():
    """page_policy lists the hash of each inline script and nothing for scripts loaded by URL."""
    html = '<script src="/static/js/bokeh.min.js"></script><script type="text/javascript">run()</script>'
    policy = page_policy(html).decode()
    assert policy.count("'sha256-") == 1
    import base64, hashlib
    assert base64.b64encode(hashlib.sha256(b"run()").digest()).decode() in policy


def test_owner_from_credentials():
    """Bearer keys name their owner, a logged-in user is user:NAME, loopback without forwarding is local."""
    policy = PublishPolicy(keys={ALICE_KEY: "alice"})
    assert policy.owner(Credential({"authorization": f"Bearer {ALICE_KEY}"}, "198.51.100.1")) == "key:alice"
    assert policy.owner(Credential({}, "198.51.100.1", user="carol")) == "user:carol"
    assert policy.owner(Credential({}, "127.0.0.1")) == "local"
    assert policy.owner(Credential({}, "::1")) == "local"
    assert policy.owner(Credential({}, None)) == "local"  # a Unix socket
    for credential in [Credential({}, "198.51.100.1"), Credential({"x-real-ip": "1.2.3.4"}, "127.0.0.1"),
                       Credential({"authorization": "Basic abc"}, "127.0.0.1"),
                       Credential({"origin": "http://localhost:5006"}, "127.0.0.1")]:
        with pytest.raises(PublishRefused):
            policy.owner(credential)
    with pytest.raises(PublishRefused):
        PublishPolicy(local_publishing=False).owner(Credential({}, "127.0.0.1"))
    assert is_loopback("127.0.0.2") and not is_loopback("10.0.0.1") and not is_loopback("nonsense")


def test_publish_keys_file_errors(tmp_path):
    """A keys file that cannot be read or has a bad line stops the options with one sentence."""
    bad = tmp_path / "keys"
    bad.write_text("alice short\n")
    for path in (str(bad), str(tmp_path / "missing")):
        with pytest.raises(usage.UsageError, match="--publish-keys"):
            tap.Options().parseOptions(["--publish-keys", path])
    bad.write_text(f"alice {ALICE_KEY}\nbob {ALICE_KEY}\n")
    with pytest.raises(usage.UsageError, match="already 'alice'"):
        tap.Options().parseOptions(["--publish-keys", str(bad)])
    bad.write_text(f"alice {ALICE_KEY}  # comment\n\n")
    assert read_keys(str(bad)) == {ALICE_KEY: "alice"}


def test_store_without_owner_column_is_upgraded(tmp_path):
    """A store written before owners were recorded opens; its documents belong to 'local'."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE published (app TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, "
               "updated REAL NOT NULL, PRIMARY KEY (app, name)) WITHOUT ROWID")
    db.execute("INSERT INTO published VALUES ('', 'old', '{}', 1.0)")
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    try:
        assert store.find("", "old").owner == "local"
        store.save("", "new", "{}", owner="key:alice")
        store.save("", "new", '{"a":1}')  # a later save keeps the owner
        assert store.find("", "new").owner == "key:alice" and store.find("", "new").size == 7
    finally:
        store.close()


class PendingThreads:
    """Stands in for the thread pool: keeps each function until the test runs it, like a busy pool."""

    def __init__(self):
        self.pending = []

    def __call__(self, f):
        from twisted.internet import defer

        d = defer.Deferred()
        self.pending.append((f, d))
        return d

    def run_all(self):
        while self.pending:
            f, d = self.pending.pop(0)
            d.callback(f())


class OffReactorSaveTests(SynchronousTestCase):
    """Published documents are serialised and written off the reactor thread, saves coalesce, and a push's OK
    still comes after its write."""

    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def setUp(self):
        self.server = InMemoryServer([], ["--store", str(self.tmp_path / "store.sqlite")]).start_for(self)
        self.manager = self.server.managers[""]
        client, pump = self.server.websocket("", ["bokeh", make_token("line")])
        client.send_message(push_message(slider_doc(1)))
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.session = self.manager.get("line")
        self.threads = self.session.run_in_thread = PendingThreads()
        self.serialised = []
        to_json = self.session.document.to_json
        self.session.document.to_json = lambda **kw: (self.serialised.append(1), to_json(**kw))[1]

    def stored_value(self):
        doc = json.loads(self.manager.store.load("", "line"))
        return [r["attributes"]["value"] for r in doc["roots"]][0]

    def test_many_changes_one_write_off_the_reactor(self):
        """Ten changes queued while the lock is held are saved by one write, serialised only in the thread pool."""
        from twisted.internet import defer

        gate = defer.Deferred()
        self.session.with_document_locked(lambda: gate)
        slider = self.session.document.get_model_by_name("slider")
        for value in range(2, 12):
            self.session.with_document_locked(setattr, slider, "value", value)
        gate.callback(None)
        self.assertEqual(self.threads.pending, [])
        self.server.clock.advance(SAVE_DELAY)
        self.assertEqual(len(self.threads.pending), 1)
        self.assertEqual(self.serialised, [])  # nothing serialised on the reactor thread
        self.assertEqual(self.stored_value(), 1)
        self.threads.run_all()
        self.assertEqual(self.serialised, [1])
        self.assertEqual(self.stored_value(), 11)

    def test_push_is_acknowledged_after_its_write(self):
        """A PUSH-DOC's OK waits for the thread pool's write; other sessions are served meanwhile."""
        client, pump = self.server.websocket("", ["bokeh", make_token("line")])
        client.send_message(push_message(slider_doc(7)))
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK"])
        self.assertEqual(self.server.get("/?bokeh-session-id=other").status, 200)  # the reactor is not blocked
        self.threads.run_all()
        pump.flush()
        self.assertEqual(client.msgtypes(), ["ACK", "OK"])
        self.assertEqual(self.stored_value(), 7)

    def test_delete_during_a_write_is_not_undone(self):
        """A document deleted while its save waits in the pool is not written back."""
        slider = self.session.document.get_model_by_name("slider")
        self.session.with_document_locked(setattr, slider, "value", 3)
        self.server.clock.advance(SAVE_DELAY)
        self.assertEqual(len(self.threads.pending), 1)
        self.assertEqual(self.server.request("/published/line", method="DELETE").status, 200)
        self.threads.run_all()
        self.assertIsNone(self.manager.store.load("", "line"))
