"""Tests for docsyncd.custom_models: compiling each implementation once, off the reactor, and what a model
that does not compile does to pages.

The model classes here are plain classes carrying ``__implementation__`` (all that Bokeh's ``CustomModel``
reads), so that Bokeh's global model registry, which every page bundles, stays as it was.
"""

from __future__ import annotations

from bokeh.util.compiler import AttrDict, CustomModel, TypeScript
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from docsyncd.custom_models import CustomModelError, CustomModels, first_message


def model_class(name: str, code: str) -> type:
    """A stand-in for a session's copy of an app's custom model class (a new class object each time)."""
    return type(name, (), {"__implementation__": TypeScript(code), "__module__": __name__})


class CustomModelsTests(SynchronousTestCase):
    def setUp(self):
        self.classes: list[type] = []
        self.compiled: list[str] = []
        self.pending: list[defer.Deferred] = []

    def make(self, threaded: bool = False) -> CustomModels:
        """CustomModels whose compiler records calls; ``threaded``: its compiles wait until fired by hand."""

        def compile(model, implementation):
            self.compiled.append(model.name)
            if "error" in implementation.code:
                raise CustomModelError(model.name, "error TS2322: Type 'string' is not assignable to type 'number'.")
            return AttrDict(code=f"/* {model.name} */", deps=[])

        def run_in_thread(f, *args):
            if not threaded:
                return defer.maybeDeferred(f, *args)
            d = defer.Deferred()
            self.pending.append(d)
            return d.addCallback(lambda _: f(*args))

        return CustomModels(run_in_thread=run_in_thread, classes=lambda: self.classes, compile=compile)

    def test_each_implementation_compiles_once_for_every_session(self):
        """A new class object with the same name and source (the next session's copy) is not compiled again,
        and Bokeh's cache hook answers for both."""
        models = self.make()
        first = model_class("Tally", "export class Tally {}")
        self.classes = [first]
        self.successResultOf(models.ready())
        second = model_class("Tally", "export class Tally {}")
        self.classes = [second]
        self.successResultOf(models.ready())
        self.assertEqual(self.compiled, ["Tally"])
        for cls in (first, second):
            model = CustomModel(cls)
            self.assertEqual(models.cache_hook(model, model.implementation).code, "/* Tally */")

    def test_changed_source_compiles_again(self):
        """Another source under the same name (an app reloaded with --dev) is compiled, and the generation
        moves so that cached page bundles are made again."""
        models = self.make()
        self.classes = [model_class("Tally", "v1")]
        self.successResultOf(models.ready())
        generation = models.generation
        self.classes = [model_class("Tally", "v2")]
        self.successResultOf(models.ready())
        self.assertEqual(self.compiled, ["Tally", "Tally"])
        self.assertGreater(models.generation, generation)

    def test_pages_wait_for_one_shared_compile(self):
        """Two pages asking while a compile runs both wait for that one compile, off the reactor thread."""
        models = self.make(threaded=True)
        self.classes = [model_class("Tally", "export class Tally {}")]
        first, second = models.ready(), models.ready()
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(len(self.pending), 1)
        model = CustomModel(self.classes[0])
        self.assertIsNone(models.cache_hook(model, model.implementation))  # not compiled yet
        self.pending[0].callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.compiled, ["Tally"])

    def test_model_that_does_not_compile_is_left_out_and_named(self):
        """A model whose source does not compile: ready() still fires, the error is logged once, Bokeh's
        bundle gets an empty module for it, and only pages using it get its CustomModelError."""
        models = self.make()
        good, broken = model_class("Tally", "fine"), model_class("Broken", "error here")
        self.classes = [good, broken]
        self.successResultOf(models.ready())
        self.successResultOf(models.ready())
        self.assertEqual(sorted(self.compiled), ["Broken", "Tally"])
        model = CustomModel(broken)
        self.assertEqual(models.cache_hook(model, model.implementation), {"code": "", "deps": []})
        models.check_classes([good, int])
        with self.assertRaises(CustomModelError) as caught:
            models.check_classes([good, broken])
        self.assertEqual(str(caught.exception),
                         "custom model Broken did not compile: error TS2322: Type 'string' is not assignable "
                         "to type 'number'.")

    def test_unexpected_error_leaves_the_model_out(self):
        """A compile that fails for another reason than the user's source is logged as a failure and the model
        is left out the same way."""
        odd = model_class("Odd", "x")
        models = CustomModels(run_in_thread=lambda f, *a: defer.maybeDeferred(f, *a), classes=lambda: [odd],
                              compile=lambda model, implementation: 1 / 0)
        self.successResultOf(models.ready())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        with self.assertRaises(CustomModelError) as caught:
            models.check_classes([odd])
        self.assertIn("ZeroDivisionError", str(caught.exception))


class FirstMessageTests(SynchronousTestCase):
    def test_first_line_without_colours(self):
        """The compiler's first message is its first non-blank line, without terminal colour codes."""
        text = ("\n\x1b[96mapp.py:X.ts\x1b[0m:\x1b[93m2\x1b[0m - \x1b[91merror\x1b[0m\x1b[90m TS2322: \x1b[0m"
                "Type 'string' is not assignable to type 'number'.\n\nmore\n")
        self.assertEqual(first_message(text), "app.py:X.ts:2 - error TS2322: Type 'string' is not assignable to type 'number'.")
        self.assertEqual(first_message("  \n"), "the compiler gave no message")


class ModuleFilesKeptTests(SynchronousTestCase):
    def test_deleted_app_module_of_a_registered_class_gets_a_stand_in(self):
        """When destroying a document deletes the module of a class that is still the registered one, a
        stand-in module with its file takes its place (Bokeh's compiler reads the file through it), and it
        goes once another class is registered instead."""
        import sys
        from types import ModuleType

        from docsyncd import custom_models

        name = "bokeh_app_test_stand_in"
        module = sys.modules[name] = ModuleType(name)
        module.__file__ = "/apps/tally.py"
        self.addCleanup(sys.modules.pop, name, None)
        tally = type("Tally", (), {"__implementation__": TypeScript("x"), "__module__": name})
        registered = [tally]
        self.patch(custom_models, "custom_model_classes", lambda: registered)

        with custom_models.custom_model_files_kept():
            del sys.modules[name]  # what Bokeh's Document.destroy does to an app's module
        self.assertIsNot(sys.modules[name], module)
        self.assertEqual(CustomModel(tally).file, "/apps/tally.py")
        self.assertFalse(hasattr(sys.modules[name], "tally"))  # none of the session's objects

        registered[:] = []  # another session's class replaced it
        with custom_models.custom_model_files_kept():
            pass
        self.assertNotIn(name, sys.modules)


class CustomModelClassesTests(SynchronousTestCase):
    def test_listing_follows_bokehs_class_map(self):
        """The custom model classes are listed once while Bokeh's classes stay the same (the same list comes
        back), and a class defined later, or redefined under the same name, is listed."""
        import warnings

        from bokeh.core.has_props import _default_resolver
        from bokeh.model import Model

        from docsyncd.custom_models import custom_model_classes

        first = custom_model_classes()
        self.assertIs(custom_model_classes(), first)

        def define():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Bokeh warns when a class name is taken again
                return type("DocsyncdListedWidget", (Model,), {"__implementation__": TypeScript("x")})

        widget = define()
        self.assertIn(widget, custom_model_classes())
        again = define()
        self.addCleanup(_default_resolver.remove, again)
        listed = custom_model_classes()
        self.assertIn(again, listed)
        self.assertNotIn(widget, listed)
