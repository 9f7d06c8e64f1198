"""Tests for docsyncd.apps: finding and loading Bokeh applications."""

from __future__ import annotations

import os

import pytest
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.apps import AppLoadError, app_name, document_build_errors, load_app

from unit_support import SLIDER_APP, write_app, write_dir_app

THEME = """
attrs:
    Plot:
        background_fill_color: "#123456"
"""

TEMPLATE = """
{% extends base %}
{% block title %}Dashboard template{% endblock %}
"""

LIFECYCLE = """
def on_server_loaded(server_context):
    server_context.loaded = True
"""

PLOT_MAIN = """
import sys
from bokeh.io import curdoc
from bokeh.plotting import figure
p = figure(name="plot")
p.line([1, 2], [3, 4])
curdoc().add_root(p)
curdoc().title = "argv " + " ".join(sys.argv[1:])
"""


class LoadAppTests(SynchronousTestCase):
    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def test_single_module(self):
        """A .py file loads as an app named after the file, without static files."""
        app = load_app(write_app(self.tmp_path, "sliders", SLIDER_APP))
        self.assertEqual(app.name, "sliders")
        self.assertEqual(app.path, str(self.tmp_path / "sliders.py"))
        self.assertIsNone(app.static_path)
        doc = app.application.create_document()
        self.assertEqual(doc.get_model_by_name("slider").value, 1)

    def test_directory_app(self):
        """A directory app brings its theme, template, static directory and server_lifecycle hooks."""
        path = write_dir_app(self.tmp_path, "dashboard", {
            "main.py": PLOT_MAIN,
            "theme.yaml": THEME,
            "templates/index.html": TEMPLATE,
            "static/style.css": "body { color: red; }",
            "server_lifecycle.py": LIFECYCLE,
        })
        app = load_app(path + os.sep, argv=["--rows", "5"])
        self.assertEqual(app.name, "dashboard")
        self.assertEqual(app.static_path, os.path.join(path, "static"))
        doc = app.application.create_document()
        self.assertEqual(doc.theme._json["attrs"]["Plot"]["background_fill_color"], "#123456")
        self.assertEqual(doc.template.filename, os.path.join(path, "templates", "index.html"))
        self.assertEqual(doc.title, "argv --rows 5")

        class Context:
            pass

        context = Context()
        app.application.on_server_loaded(context)
        self.assertTrue(context.loaded)

    def test_syntax_error(self):
        """A syntax error is reported in one line naming the file and line."""
        path = write_app(self.tmp_path, "broken", "x = 1\ny = (\n")
        with self.assertRaises(AppLoadError) as caught:
            load_app(path)
        message = str(caught.exception)
        self.assertIn(f"{path}, line 2", message)
        self.assertIn("SyntaxError", message)
        self.assertNotIn("\n", message)

    def test_syntax_error_in_lifecycle(self):
        """A syntax error in a directory app's server_lifecycle.py names that file."""
        path = write_dir_app(self.tmp_path, "badhooks", {
            "main.py": SLIDER_APP,
            "server_lifecycle.py": "def on_server_loaded(ctx)\n    pass\n",
        })
        with self.assertRaises(AppLoadError) as caught:
            load_app(path)
        self.assertIn("server_lifecycle.py, line 1", str(caught.exception))

    def test_missing_path(self):
        """A path that does not exist is refused with a sentence naming it."""
        missing = str(self.tmp_path / "nope.py")
        with self.assertRaises(AppLoadError) as caught:
            load_app(missing)
        self.assertEqual(str(caught.exception), f"no such app: {missing}")

    def test_directory_without_main(self):
        """A directory without main.py is refused as not a Bokeh app."""
        (self.tmp_path / "data").mkdir()
        with self.assertRaises(AppLoadError) as caught:
            load_app(str(self.tmp_path / "data"))
        self.assertIn("without main.py", str(caught.exception))

    def test_not_python(self):
        """A file that is not a .py module is refused."""
        path = self.tmp_path / "notes.txt"
        path.write_text("hello")
        with self.assertRaises(AppLoadError) as caught:
            load_app(str(path))
        self.assertIn("is not a Python module", str(caught.exception))

    def test_runtime_error_is_build_error(self):
        """An app that raises when run loads, and each document build reports file, line and exception."""
        path = write_app(self.tmp_path, "raises", "import os\nraise KeyError('config')\n")
        app = load_app(path)
        app.application.create_document()
        (error,) = document_build_errors(app.application)
        self.assertIn(f"{path}, line 2", error)
        self.assertIn("KeyError", error)

    def test_app_name(self):
        """An app's URL name is its file name without .py, or its directory name."""
        self.assertEqual(app_name("/srv/apps/sliders.py"), "sliders")
        self.assertEqual(app_name("/srv/apps/dashboard/"), "dashboard")
        self.assertEqual(app_name("dashboard"), "dashboard")
