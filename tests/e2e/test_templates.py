"""Page templates decided from what the app does (issue 13, item 3): a template and template variables set
by a module the app imports give the page its banner on docsyncd, under --workers 2 (lazy pages) too, as on
bokeh serve.  Panel's templates: tests/e2e/test_panel.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "apps" / "helper_template.py"


def test_template_from_an_imported_module(compared_serve, page):
    """The banner the helper's template adds is on the page, and the app's callbacks work under it."""
    server = compared_serve(APP)
    page.open(server.url)
    assert page.locator("#banner").inner_text() == "A banner from the helper"
    page.set("slider", "value", 4)
    page.wait_for_prop("div", "text", "value=4")
