"""Leaner Bokeh model internals for a process that holds many documents at once.

A server keeps one document per session, so what Bokeh spends per model is
paid hundreds of times over. Profiles of docsyncd (tracemalloc, py-spy,
cProfile) show five costs in Bokeh's property machinery that do not depend on
anything a document does:

- Every list, dict and column-data value of a property is a
  ``PropertyValueContainer`` holding a ``set`` of its owners, almost always
  one. An empty or one-element set is 216 bytes; a session of a small figure
  holds about 750 of them, over half of its memory. A tuple holds the same
  owners in 48 bytes, or in none when empty.
- ``HasProps._overridden_defaults`` merges the class's ``Override`` values
  along its MRO on every default lookup, though classes never change them.
- ``PropertyDescriptor.is_unstable`` imports two names on every call.
- ``PropertyDescriptor.has_unstable_default`` asks the property, on every
  default lookup, whether its default may be mutable: a walk through its
  type parameters, though a property's default and types never change once
  it is built. The answer is kept on the descriptor.
- ``PropertyDescriptor.instance_default`` validates and transforms an
  unset property's default on every read. A "stable" default (Bokeh's word:
  not stored per instance) that no theme overrides is the same value for
  every instance of a class, so it is computed once per class, when that
  value is immutable (a few stable defaults are fresh lists, e.g.
  ``line_dash``, and stay fresh).

``apply`` replaces these five with equivalents (same answers, same
notifications) once per process; ``--no-bokeh-tuning`` leaves Bokeh as it is.
The owners change relies on how Bokeh's ``wrappers`` module uses ``_owners``,
so it is only made when that module uses it exactly as this code expects;
otherwise it is skipped and the log says so.

Tests: tests/test_bokeh_tuning.py
"""

from __future__ import annotations

import inspect
import re
from types import FunctionType, MappingProxyType
from typing import Any

from twisted.logger import Logger

from . import logs

log = Logger(observer=logs.observer)

#: Every line of bokeh/core/property/wrappers.py mentioning ``_owners`` must be one of these:
#: the annotation, the three methods replaced below, and loops over the owners (fine on a tuple).
_KNOWN_OWNER_USES = re.compile(
    r"_owners: set\[.*\]"
    r"|self\._owners = set\(\)"
    r"|self\._owners\.(add|discard)\(\(owner, descriptor\)\)"
    r"|for \(owner, descriptor\) in self\._owners:"
)

_applied = False


def apply() -> None:
    """Make the replacements (once per process; later calls do nothing)."""
    global _applied
    if _applied:
        return
    _applied = True
    _compact_owners()
    _cache_overridden_defaults()
    _import_once_in_is_unstable()
    _remember_mutable_defaults()
    _share_stable_defaults()


def unknown_owner_uses(source: str) -> list[str]:
    """The lines of ``source`` (Bokeh's wrappers module) using ``_owners`` in a way the tuple form may break."""
    lines = (line.strip() for line in source.splitlines())
    return [line for line in lines if re.search(r"\b_owners\b", line) and not _KNOWN_OWNER_USES.fullmatch(line)]


def _compact_owners() -> None:
    from bokeh.core.property import wrappers

    unknown = unknown_owner_uses(inspect.getsource(wrappers))
    if unknown:
        log.info("Bokeh's property containers use their owners in a way docsyncd does not know "
                 "({unknown}); keeping Bokeh's sets of owners", unknown=unknown)
        return
    container = wrappers.PropertyValueContainer

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self._owners = ()
        super(container, self).__init__(*args, **kwargs)

    def _register_owner(self: Any, owner: Any, descriptor: Any) -> None:
        if (owner, descriptor) not in self._owners:
            self._owners = (*self._owners, (owner, descriptor))

    def _unregister_owner(self: Any, owner: Any, descriptor: Any) -> None:
        self._owners = tuple(pair for pair in self._owners if pair != (owner, descriptor))

    container.__init__ = __init__
    container._register_owner = _register_owner
    container._unregister_owner = _unregister_owner


def _cache_overridden_defaults() -> None:
    from bokeh.core.has_props import HasProps

    merge = HasProps._overridden_defaults.__func__
    merged: dict[type, MappingProxyType] = {}

    def _overridden_defaults(cls: type) -> MappingProxyType:
        found = merged.get(cls)
        if found is None:  # read-only: the one mapping is shared by every instance of the class
            found = merged[cls] = MappingProxyType(merge(cls))
        return found

    HasProps._overridden_defaults = classmethod(_overridden_defaults)


def _import_once_in_is_unstable() -> None:
    from bokeh.core.property.descriptors import PropertyDescriptor
    from bokeh.core.property.instance import InstanceDefault

    unstable = (FunctionType, InstanceDefault)

    def is_unstable(cls: type, value: Any) -> bool:
        return isinstance(value, unstable)

    PropertyDescriptor.is_unstable = classmethod(is_unstable)


def _remember_mutable_defaults() -> None:
    from bokeh.core.property.descriptors import PropertyDescriptor

    def has_unstable_default(self: Any, obj: Any) -> bool:
        try:
            mutable = self._docsyncd_mutable_default
        except AttributeError:
            mutable = self._docsyncd_mutable_default = self.property._may_have_unstable_default()
        # overrides belong to obj's class, which a descriptor shares with subclasses: asked each time
        return mutable or self.is_unstable(obj.__overridden_defaults__.get(self.name, None))

    PropertyDescriptor.has_unstable_default = has_unstable_default


def _share_stable_defaults() -> None:
    from bokeh.core.property.descriptors import PropertyDescriptor

    compute = PropertyDescriptor.instance_default

    def instance_default(self: Any, obj: Any) -> Any:
        if obj.themed_values() is not None or self.has_unstable_default(obj):
            return compute(self, obj)
        try:
            per_class = self._docsyncd_stable_defaults
        except AttributeError:
            per_class = self._docsyncd_stable_defaults = {}
        cls = type(obj)
        try:
            return per_class[cls]
        except KeyError:
            value = compute(self, obj)
            if _immutable(value):
                per_class[cls] = value
            return value

    PropertyDescriptor.instance_default = instance_default


def _immutable(value: Any) -> bool:
    """Whether ``value`` can be handed to every instance: no instance could change it in place."""
    if isinstance(value, tuple):
        return all(_immutable(item) for item in value)
    return isinstance(value, (str, int, float, bool, bytes, type(None)))
