"""A 96 MB document and a 96 MB callback patch reach Chromium whole (issue 13, item 1).

docsyncd once counted every byte it wrote while the socket was full against
--websocket-max-send-buffer (64 MiB), so a document of 4 x 3 million float64
values was cut off as "client too slow" and a callback's patch of the same
size lost a frame in the middle.  Run with ``--e2e-server=bokeh`` for the
reference, which delivers both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "apps" / "big_doc_app.py"
ROWS = 3_000_000


@pytest.mark.timeout(240)
def test_large_document_and_large_patch_arrive(serve, page):
    """The page shows all 3,000,000 rows of each column, and a callback that copies them into a small source
    arrives whole; the log has no 'client too slow'."""
    server = serve(APP)
    page.open(server.url, timeout_ms=120_000)
    assert page.js("return e2e.model(arg).get_length();", "big") == ROWS
    assert page.js("return e2e.model('big').get_column('d')[arg];", ROWS - 1) == ROWS - 1 + 3
    page.get_by_role("button", name="Replace").click()
    page.wait_for(lambda: page.length("small") == ROWS, timeout=120, message="the small source to get every row")
    assert page.js("return ['a', 'b', 'c', 'd'].map((c) => e2e.model('small').get_column(c)[arg]);", ROWS - 1) == \
        [ROWS - 1 + i for i in range(4)]
    assert "client too slow" not in server.log_text()
    assert not [line for line in page.console if "error" in line.lower()], page.console
