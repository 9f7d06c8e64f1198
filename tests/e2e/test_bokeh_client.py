"""bokeh.client (Bokeh's own Tornado client) against a real server, with a browser on the same session.

Run with ``pytest tests/e2e`` (docsyncd) or ``pytest tests/e2e --e2e-server=bokeh``.
"""

import csv
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e_support import EXAMPLES, wait_until

pytestmark = pytest.mark.e2e

DASHBOARD_CSV = EXAMPLES / "dashboard" / "data" / "points.csv"


@pytest.fixture(scope="module")
def dashboard(module_serve):
    return module_serve("dashboard")


class ClientThread:
    """Runs bokeh.client on its own thread.

    Playwright's sync API keeps an asyncio loop running on the main thread, and
    bokeh.client's Tornado loop refuses to start inside it; so every call that
    touches a client session (connect, set a property, round trip, close) goes
    through ``run``. Reading the document between calls is fine: the client's
    loop only runs inside them.
    """

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bokeh-client")
        self.sessions = []

    def run(self, fn, *args, timeout=30):
        return self._pool.submit(fn, *args).result(timeout)

    def pull(self, url, session_id=None, **kwargs):
        from bokeh.client import pull_session

        session_id = session_id or f"client-{uuid.uuid4().hex[:12]}"
        session = self.run(lambda: pull_session(session_id=session_id, url=url, **kwargs))
        self.sessions.append(session)
        return session

    def set(self, session, name, prop, value):
        """Set a property of a named model through the client (a PATCH-DOC) and round-trip.

        The round trip flushes the queued PATCH-DOC and returns once the server
        has answered it, i.e. after the server applied it.
        """
        def _set():
            setattr(session.document.get_model_by_name(name), prop, value)
            session.force_roundtrip()
        self.run(_set)

    def wait_for(self, session, predicate, timeout=10.0, message="condition"):
        """Re-pull the server's document until ``predicate(document)`` holds.

        The blocking client applies the server's PATCH-DOCs only while its loop
        runs, and drops them while it waits for a reply (force_roundtrip); a
        pull (PULL-DOC-REQ) returns the whole current state instead.
        """
        def check():
            self.run(session.pull)
            return predicate(session.document)

        return wait_until(check, timeout=timeout, message=message)

    def close(self):
        for session in self.sessions:
            self.run(session.close)
        self._pool.shutdown(wait=True)


@pytest.fixture
def client():
    c = ClientThread()
    yield c
    c.close()


@pytest.mark.timeout(60)
def test_pull_session_reads_live_document(client, dashboard):
    """pull_session gets the app's document: its root layout and named models with their values."""
    session = client.pull(dashboard.url)
    assert session.connected
    doc = session.document

    roots = doc.roots
    assert len(roots) == 1 and roots[0].name == "dashboard_layout"

    with open(DASHBOARD_CSV, newline="", encoding="utf-8") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    source = doc.get_model_by_name("dashboard_source")
    assert list(source.data["label"]) == labels
    assert doc.get_model_by_name("dashboard_slider").value == 1
    assert doc.get_model_by_name("dashboard_plot").background_fill_color == "#fafaf0"
    assert doc.title == "Dashboard"


@pytest.mark.timeout(60)
def test_client_change_reaches_python_and_browser(client, dashboard, page):
    """A slider value set through a client session runs the Python callback and shows in a browser on that session."""
    session = client.pull(dashboard.url)
    client.set(session, "dashboard_slider", "value", 4)

    # Python's on_change ran on the server and its Div update is in the server's document.
    client.wait_for(session, lambda doc: doc.get_model_by_name("dashboard_div").text == "scale: 4",
                    message="the server document to show Python's Div update")

    page.open(dashboard.app_url(f"bokeh-session-id={session.id}"))
    assert page.get("dashboard_slider", "value") == 4
    assert page.get("dashboard_div", "text") == "scale: 4"


@pytest.mark.timeout(60)
def test_browser_change_reaches_client(client, dashboard, page):
    """A slider drag in the browser shows up in a client session on the same session id, with Python's response."""
    session = client.pull(dashboard.url)
    page.open(dashboard.app_url(f"bokeh-session-id={session.id}"))

    page.set("dashboard_slider", "value", 9)
    page.wait_for_prop("dashboard_div", "text", "scale: 9")

    client.wait_for(session, lambda doc: doc.get_model_by_name("dashboard_slider").value == 9,
                    message="the client to see the browser's slider value")
    assert session.document.get_model_by_name("dashboard_div").text == "scale: 9"


@pytest.mark.timeout(60)
def test_pull_session_request_arguments(client, dashboard):
    """Arguments given to pull_session reach the app as request arguments, as a page's query string would."""
    session = client.pull(dashboard.url, arguments={"title": "FromClient"})
    assert session.document.get_model_by_name("dashboard_title").text == "<h2>FromClient</h2>"
