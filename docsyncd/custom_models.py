"""Custom models (``__implementation__``): compiled by node off the reactor, once per implementation.

A Bokeh model class may carry its own BokehJS implementation, TypeScript or
JavaScript source that Bokeh compiles with node (``bokeh.util.compiler``)
into a plugin the page loads after BokehJS.  Bokeh does that inside
``bundle_for_objs_and_resources``, synchronously, and caches the result by the
classes' module names; an app's module is new for every session
(``bokeh_app_<uuid>``), so bokeh serve runs node again for every page (seconds
each, its loop blocked meanwhile), and a TypeScript error ends the process
(``sys.exit(1)`` in ``bundle_models``).

Here, each implementation is compiled once, in a thread, keyed by what the
compiler's output depends on (the class name, the language, the source and
the file it names, the npm dependencies), and handed to Bokeh's bundling through
its public cache hook (``bokeh.util.compiler.set_cache_hook``), so the page
bundle is assembled on the reactor thread without running node.  Pages wait
for ``CustomModels.ready()``; other sessions carry on meanwhile.

Bokeh finds an inline implementation's file through the class's module
(``CustomModel.file``), and deletes a session's app modules when its document
is destroyed, while the session's classes stay registered until another
session defines them again; a lazy page (--workers) may then bundle a class
whose module is gone.  ``custom_model_files_kept()``, around destroying a
document, leaves a stand-in module (its name and ``__file__``, none of the
session's objects) for such a class, while it is the registered one.

A model whose source does not compile is logged once with the model's name and
the compiler's first message (``CustomModelError``).  Its module is left empty
in the bundle (BokehJS's ``register_models`` skips what a module does not
export), so pages of documents that do not use it work; a page whose document
uses it answers 500 with that message (``check(doc)``).

Tests: tests/test_custom_model_compiler.py; in Chromium tests/e2e/test_custom_models.py
"""

from __future__ import annotations

import contextlib
import re
import sys
from types import ModuleType
from typing import Any, Callable, Hashable, Iterable, Iterator

from bokeh.core.has_props import HasProps
from bokeh.document import Document
from bokeh.util.compiler import AttrDict, CompilationError, CustomModel, Implementation, nodejs_compile, set_cache_hook
from twisted.internet import defer, threads
from twisted.logger import Logger

from . import logs

log = Logger(observer=logs.observer)

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

#: What a model that did not compile contributes to the bundle: a module that exports nothing.
_LEFT_OUT = AttrDict(code="", deps=[])


class CustomModelError(Exception):
    """A custom model's implementation did not compile: names the model and the compiler's first message."""

    def __init__(self, model: str, first_message: str):
        super().__init__(f"custom model {model} did not compile: {first_message}")
        self.model = model
        self.first_message = first_message


def first_message(text: str) -> str:
    """The first non-blank line of the compiler's output, without its terminal colours."""
    for line in _ANSI_ESCAPE.sub("", text).splitlines():
        if line.strip():
            return line.strip()
    return "the compiler gave no message"


def custom_model_classes() -> list[type]:
    """Every model class Bokeh knows now that carries an ``__implementation__`` (what a server page bundles).

    Asked for every page: the answer is kept with the copy of Bokeh's class map
    it came from (``model_class_reverse_map`` is a fresh copy each time), and
    made again when the map changed (a class added or redefined under its
    name), which comparing the two dicts tells at a twentieth of the cost of a
    walk over the ~500 classes.
    """
    known = HasProps.model_class_reverse_map
    if _custom_classes is not None and _custom_classes[0] == known:
        return _custom_classes[1]
    found = [cls for cls in known.values() if getattr(cls, "__implementation__", None) is not None]
    _remember_custom_classes(known, found)
    return found


_custom_classes: tuple[dict[str, type], list[type]] | None = None


def _remember_custom_classes(known: dict[str, type], found: list[type]) -> None:
    global _custom_classes
    _custom_classes = (known, found)


def _key(model: CustomModel, implementation: Implementation) -> Hashable:
    """What the compiled output of ``model`` depends on; the same for every session's copy of the class."""
    return (model.name, implementation.lang, implementation.code, implementation.file,
            tuple(sorted(model.dependencies.items())))


def describe(model: CustomModel) -> str:
    """The model's class name and the file that defines it, for messages."""
    return f"{model.name} ({model.file})" if model.file else model.name


def _compile(model: CustomModel, implementation: Implementation) -> AttrDict:
    """Run Bokeh's compiler (node) on one implementation; CustomModelError if it does not compile."""
    try:
        compiled = nodejs_compile(implementation.code, lang=implementation.lang, file=implementation.file)
    except RuntimeError as e:  # no node, or node failed (its stderr)
        raise CustomModelError(describe(model), first_message(str(e))) from None
    if "error" in compiled:
        raise CustomModelError(describe(model), first_message(CompilationError(compiled.error).text))
    return compiled


class CustomModels:
    """The compiled implementations of this process's custom models, and Bokeh's cache hook that serves them.

    ``run_in_thread(f, *args)`` returns a Deferred of ``f(*args)`` run off the
    reactor thread (``threads.deferToThread``, when not testing); ``classes()``
    lists the custom model classes to compile (all that Bokeh knows);
    ``compile(model, implementation)`` returns Bokeh's compiled AttrDict or
    raises CustomModelError.
    """

    def __init__(self, run_in_thread: Callable[..., defer.Deferred] = threads.deferToThread,
                 classes: Callable[[], Iterable[type]] = custom_model_classes,
                 compile: Callable[[CustomModel, Implementation], AttrDict] = _compile):
        self._run_in_thread = run_in_thread
        self._classes = classes
        self._compile = compile
        self._compiled: dict[Hashable, AttrDict] = {}
        self._failed: dict[Hashable, CustomModelError] = {}
        self._compiling: dict[Hashable, defer.Deferred] = {}
        #: Changes whenever a compile finishes, so that cached page bundles are made again.
        self.generation = 0

    def cache_hook(self, model: CustomModel, implementation: Implementation) -> AttrDict | None:
        """For ``bokeh.util.compiler.set_cache_hook``: the compiled model, an empty module for one that
        failed, or None (Bokeh then compiles it itself) for one never seen."""
        key = _key(model, implementation)
        if key in self._failed:
            return _LEFT_OUT
        return self._compiled.get(key)

    def ready(self) -> defer.Deferred:
        """A Deferred that fires (with None) once every custom model class Bokeh knows now is compiled or
        known not to compile; at once when none is new."""
        waiting = [self._compile_once(CustomModel(cls)) for cls in self._classes()]
        waiting = [d for d in waiting if d is not None]
        if not waiting:
            return defer.succeed(None)
        return defer.gatherResults(waiting, consumeErrors=True).addCallback(lambda _: None)

    def _compile_once(self, model: CustomModel) -> defer.Deferred | None:
        implementation = model.implementation
        key = _key(model, implementation)
        if key in self._compiled or key in self._failed:
            return None
        compiling = self._compiling.get(key)
        if compiling is None:
            compiling = self._compiling[key] = self._run_in_thread(self._compile, model, implementation)
            compiling.addBoth(self._finished, key)  # may run at once: the Deferred is kept above first
        waiting = defer.Deferred()
        compiling.addBoth(waiting.callback)  # _finished consumed the result: every waiter gets None
        return waiting

    def _finished(self, result: Any, key: Hashable) -> None:
        self._compiling.pop(key, None)
        self.generation += 1
        if isinstance(result, AttrDict):
            self._compiled[key] = result
            log.info("custom model {name} compiled", name=key[0])
        elif result.check(CustomModelError):
            self._failed[key] = result.value
            log.error("{error}", error=result.value)
        else:  # a bug, not the user's TypeScript: say so, and leave the model out
            log.failure("compiling custom model {name}", result, name=key[0])
            self._failed[key] = CustomModelError(str(key[0]), f"{result.type.__name__}: {result.value}")

    def check(self, doc: Document) -> None:
        """Raise the CustomModelError of a model ``doc`` uses whose implementation did not compile."""
        if self._failed:
            self.check_classes({type(model) for model in doc.models})

    def check_classes(self, classes: Iterable[type]) -> None:
        """Raise the CustomModelError of one of ``classes`` whose implementation did not compile."""
        for cls in classes:
            if getattr(cls, "__implementation__", None) is None:
                continue
            model = CustomModel(cls)
            error = self._failed.get(_key(model, model.implementation))
            if error is not None:
                raise error


_stand_ins: set[str] = set()


@contextlib.contextmanager
def custom_model_files_kept() -> Iterator[None]:
    """Around destroying a document: a registered custom model class whose module Bokeh deleted gets a
    stand-in module with the original ``__file__``; stand-ins of classes no longer registered are dropped."""
    files = {cls.__module__: getattr(sys.modules.get(cls.__module__), "__file__", None)
             for cls in custom_model_classes()}
    yield
    registered = {cls.__module__ for cls in custom_model_classes()}
    for name in registered - sys.modules.keys():
        if files.get(name):
            stand_in = sys.modules[name] = ModuleType(name, "stands in for a deleted app module (custom_models.py)")
            stand_in.__file__ = files[name]
            _stand_ins.add(name)
    for name in _stand_ins - registered:
        _stand_ins.discard(name)
        sys.modules.pop(name, None)


def compile_in_this_thread(doc: Document) -> None:
    """Compile the custom models ``doc`` uses now, for ``docsync html``: Bokeh's bundling then reuses them
    (instead of exiting the process on a TypeScript error). Raises CustomModelError."""
    classes = {type(model) for model in doc.models if getattr(type(model), "__implementation__", None) is not None}
    models = CustomModels(run_in_thread=defer.maybeDeferred, classes=lambda: classes)
    set_cache_hook(models.cache_hook)
    models.ready()
    models.check(doc)


_process_models: CustomModels | None = None


def process_custom_models() -> CustomModels:
    """This process's CustomModels, its hook set in Bokeh (there is one hook per process, as one model registry)."""
    global _process_models
    if _process_models is None:
        _process_models = CustomModels()
        set_cache_hook(_process_models.cache_hook)
    return _process_models
