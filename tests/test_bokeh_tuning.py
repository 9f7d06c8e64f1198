"""docsyncd/bokeh_tuning.py: the leaner Bokeh internals give Bokeh's answers and notifications."""

from __future__ import annotations

import inspect
import warnings

from bokeh.core.has_props import HasProps
from bokeh.core.property import wrappers
from bokeh.core.property.descriptors import PropertyDescriptor
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent, ModelChangedEvent
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import figure
from twisted.trial.unittest import SynchronousTestCase

from docsyncd import bokeh_tuning

from unit_support import InMemoryServer

bokeh_tuning.apply()


def containers(doc: Document) -> list[wrappers.PropertyValueContainer]:
    """Every list, dict and column-data value the document's models hold."""
    return [value for model in doc.models for value in model.properties_with_values().values()
            if isinstance(value, wrappers.PropertyValueContainer)]


class OwnersTests(SynchronousTestCase):
    def setUp(self):
        self.doc = Document()
        self.events = []

    def listen(self):
        """Record the document's change events from now on."""
        self.doc.on_change(self.events.append)

    def test_no_sets_of_owners(self):
        """A figure's containers keep their owners in tuples (a set is 216 bytes; most hold one owner)."""
        plot = figure()
        plot.line([1, 2], [3, 4])
        self.doc.add_root(plot)
        held = containers(self.doc)
        self.assertGreater(len(held), 20)
        self.assertEqual({type(c._owners) for c in held}, {tuple})

    def test_mutation_notifies_owner(self):
        """Appending to a list property is a change of that property, as in Bokeh."""
        div = Div(text="x")
        self.doc.add_root(div)
        self.listen()
        div.tags.append("new")
        [event] = self.events
        self.assertIsInstance(event, ModelChangedEvent)
        self.assertEqual((event.model, event.attr, event.new), (div, "tags", ["new"]))

    def test_shared_value_notifies_every_owner_once(self):
        """One list held by two models: a mutation changes both, each once; setting it again adds no owner."""
        first, second = Div(tags=["a"]), Div()
        self.doc.add_root(first)
        self.doc.add_root(second)
        second.tags = first.tags
        first.tags = first.tags
        self.assertEqual(len(first.tags._owners), 2)
        self.listen()
        first.tags.append("b")
        self.assertEqual(sorted(e.model.id for e in self.events), sorted([first.id, second.id]))
        second.tags = ["z"]
        self.events.clear()
        first.tags.append("c")
        self.assertEqual([e.model for e in self.events], [first])

    def test_replaced_value_forgets_owner(self):
        """A container replaced by another value no longer reports to the model."""
        div = Div(tags=["a"])
        self.doc.add_root(div)
        old = div.tags
        div.tags = ["b"]
        self.listen()
        old.append("c")
        self.assertEqual(self.events, [])
        self.assertEqual(old._owners, ())

    def test_stream_still_hinted(self):
        """ColumnDataSource.stream reaches document listeners as a ColumnsStreamedEvent."""
        source = ColumnDataSource(data={"x": [1]})
        self.doc.add_root(source)
        self.listen()
        source.stream({"x": [2]})
        [event] = self.events
        self.assertIsInstance(event, ColumnsStreamedEvent)
        self.assertEqual(source.data["x"], [1, 2])

    def test_unknown_use_of_owners_detected(self):
        """A Bokeh whose wrappers use _owners differently keeps its sets: the check names the line."""
        source = inspect.getsource(wrappers)
        self.assertEqual(bokeh_tuning.unknown_owner_uses(source), [])
        changed = source + "\n        return len(self._owners)\n"
        self.assertEqual(bokeh_tuning.unknown_owner_uses(changed), ["return len(self._owners)"])


class DefaultsTests(SynchronousTestCase):
    def test_overridden_defaults_as_bokeh_merges_them(self):
        """For every model class: the same overrides as merging ``__overridden_defaults__`` along the MRO."""
        for cls in HasProps.model_class_reverse_map.values():
            merged = {}
            for c in reversed(cls.__mro__):
                merged.update(getattr(c, "__overridden_defaults__", {}))
            self.assertEqual(dict(cls._overridden_defaults()), merged, cls)

    def test_overridden_defaults_read_only(self):
        """The merged overrides are shared by every instance, so nobody may change them."""
        with self.assertRaises(TypeError):
            Slider._overridden_defaults()["value"] = 3

    def test_theme_still_overrides(self):
        """Theme values still win over class overrides and defaults."""
        from bokeh.themes import Theme

        doc = Document()
        doc.theme = Theme(json={"attrs": {"Div": {"text": "themed"}}})
        div = Div()
        doc.add_root(div)
        self.assertEqual(div.text, "themed")

    def test_is_unstable(self):
        """Functions and InstanceDefaults are unstable defaults; values are not."""
        from bokeh.core.property.instance import InstanceDefault

        self.assertTrue(PropertyDescriptor.is_unstable(lambda: []))
        self.assertTrue(PropertyDescriptor.is_unstable(InstanceDefault(Div)))
        self.assertFalse(PropertyDescriptor.is_unstable([]))
        self.assertFalse(PropertyDescriptor.is_unstable(None))


class MutableDefaultsTests(SynchronousTestCase):
    def test_has_unstable_default_as_bokeh_answers(self):
        """For every property of every model class: mutable default or not, as Bokeh's own formula says."""
        for cls in HasProps.model_class_reverse_map.values():
            for name in cls.properties():
                descriptor = cls.lookup(name)
                expected = descriptor.property._may_have_unstable_default() or \
                    PropertyDescriptor.is_unstable(cls.__overridden_defaults__.get(name))
                self.assertEqual(descriptor.has_unstable_default(cls), expected, f"{cls.__name__}.{name}")

    def test_mutable_defaults_not_shared(self):
        """Each model still gets its own list default: changing one leaves the other alone."""
        first, second = Div(), Div()
        first.tags.append("x")
        self.assertEqual(second.tags, [])


class StableDefaultsTests(SynchronousTestCase):
    def test_defaults_as_bokeh_computes_them(self):
        """Every immutable default read from a fresh model is the value Bokeh's themed_default gives."""
        checked = 0
        for cls in HasProps.model_class_reverse_map.values():
            try:
                with warnings.catch_warnings():  # deprecated models warn when made
                    warnings.simplefilter("ignore")
                    obj = cls()
            except Exception:  # abstract or needs arguments
                continue
            for name in cls.properties():
                descriptor = cls.lookup(name)
                if descriptor.has_unstable_default(obj) or not hasattr(descriptor, "instance_default"):
                    continue
                expected = descriptor.property.themed_default(cls, name, None)
                got = descriptor.instance_default(obj)
                self.assertTrue(got == expected or got != got and expected != expected,  # nan: not equal to itself
                                f"{cls.__name__}.{name}: {got!r} != {expected!r}")
                checked += 1
        self.assertGreater(checked, 1000)

    def test_no_mutable_default_shared(self):
        """Two instances never get the same list, dict or set as a default (``line_dash`` is a fresh list each read)."""
        for cls in HasProps.model_class_reverse_map.values():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    first, second = cls(), cls()
            except Exception:
                continue
            for name in cls.properties():
                descriptor = cls.lookup(name)
                if not hasattr(descriptor, "instance_default"):
                    continue
                value = descriptor.instance_default(first)
                if isinstance(value, (list, dict, set)):
                    self.assertIsNot(descriptor.instance_default(second), value, f"{cls.__name__}.{name}")

    def test_stable_list_default_not_shared(self):
        """Appending to an unset list-valued default changes nothing for another model, as in Bokeh."""
        from bokeh.models import GlyphRenderer, Line

        first, second = Line(), Line()
        first.line_dash.append(3)
        self.assertEqual(second.line_dash, [])
        self.assertIsNone(GlyphRenderer().name)

    def test_computed_once_per_class(self):
        """Reading an unset property on many models validates its default once, not once per read."""
        from bokeh.core.properties import String
        from bokeh.model import Model

        class TuningCounted(Model):
            label = String("x")

        prop = TuningCounted.lookup("label").property
        calls = []
        compute = prop.themed_default
        prop.themed_default = lambda *args, **kwargs: calls.append(args) or compute(*args, **kwargs)
        self.assertEqual([TuningCounted().label for _ in range(3)], ["x"] * 3)
        self.assertEqual(len(calls), 1)

    def test_subclass_override_is_its_own(self):
        """A default overridden in a subclass is not the parent's, whichever class is read first."""
        from bokeh.core.properties import Int, Override
        from bokeh.model import Model

        class TuningParent(Model):
            count = Int(1)

        class TuningChild(TuningParent):
            count = Override(default=2)

        self.assertEqual((TuningParent().count, TuningChild().count, TuningParent().count), (1, 2, 1))

    def test_themed_instance_not_shared(self):
        """A theme's value reaches its document's models; a model outside keeps the class default."""
        from bokeh.themes import Theme

        doc = Document()
        doc.theme = Theme(json={"attrs": {"Slider": {"bar_color": "red"}}})
        themed, plain = Slider(start=0, end=1, value=0), Slider(start=0, end=1, value=0)
        default = plain.bar_color
        doc.add_root(themed)
        self.assertEqual((themed.bar_color, plain.bar_color), ("red", default))


class OptionTests(SynchronousTestCase):
    def test_no_bokeh_tuning_leaves_bokeh_alone(self):
        """--no-bokeh-tuning: building the server does not apply the tuning; without it, it does."""
        calls = []
        self.patch(bokeh_tuning, "apply", lambda: calls.append(True))
        for args, expected in ((["--no-bokeh-tuning"], []), ([], [True])):
            calls.clear()
            server = InMemoryServer([], args)
            self.addCleanup(server.restore)
            self.assertEqual(calls, expected)
