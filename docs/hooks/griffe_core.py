"""A Griffe extension for the API reference: completes the compiled module's stub.

``ferrograd._core`` is documented from its stub ``_core.pyi`` (signatures and types). This
extension adds what only the compiled module has: the docstrings written in Rust, for every
class, method, property and function whose stub entry has none. It also gives the PyO3
classes, which are built by ``__new__``, an ``__init__`` with the same parameters so the
reference shows ``Tensor(data, requires_grad=False, dtype=None)``. Nothing here changes the
package; it only shapes the docs.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe

# The stub declares shared array members once, on a private base class; at run time each
# class has its own copy (with the same docstring), so look them up on Tensor.
_STUB_ONLY_CLASSES = {"_ArrayMethods": "Tensor"}


def _runtime_doc(runtime: Any, path: list[str]) -> str | None:
    obj = runtime
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    doc = getattr(obj, "__doc__", None)
    if not doc or (isinstance(obj, type) and doc == type.__doc__):
        return None
    return inspect.cleandoc(doc)


def _fill(obj: griffe.Object, runtime: Any, path: list[str]) -> None:
    obj.labels.discard("builtin")  # in case Griffe was allowed to inspect the module too
    if obj.docstring is None:
        doc = _runtime_doc(runtime, path)
        if doc:
            obj.docstring = griffe.Docstring(doc, parent=obj)
    if isinstance(obj, griffe.Class):
        _add_init_from_new(obj)
        for name, member in obj.members.items():
            if isinstance(member, griffe.Object) and not name.startswith("__"):
                _fill(member, runtime, [*path, name])


def _add_init_from_new(cls: griffe.Class) -> None:
    new = cls.members.get("__new__")
    if not isinstance(new, griffe.Function) or len(new.parameters) < 2:
        return
    first, *params = new.parameters  # `cls`, then the constructor's parameters
    init = griffe.Function(
        "__init__",
        lineno=new.lineno,
        endlineno=new.endlineno,
        parameters=griffe.Parameters(griffe.Parameter("self", kind=first.kind), *params),
        returns="None",
    )
    cls.set_member("__init__", init)


class CoreDocstrings(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "ferrograd" or "_core" not in pkg.members:
            return
        try:
            runtime = importlib.import_module("ferrograd._core")
        except ImportError:  # not built: the reference shows the stub alone
            return
        core = pkg.members["_core"]
        for name, member in core.members.items():
            if not isinstance(member, griffe.Object):
                continue
            path = [_STUB_ONLY_CLASSES.get(name, name)]
            _fill(member, runtime, path)
