"""``Module`` — the base class of every layer — and the containers ``Sequential``,
``ModuleList`` and ``ModuleDict``.

A ``Module`` registers what is assigned to it: a ``Tensor`` becomes a
parameter, a ``Module`` a sub-module, and ``Module.register_buffer`` adds state that is
saved but not trained (BatchNorm's running statistics). Names follow PyTorch (``0.weight``,
``fc1.bias``, ``bn.running_mean``).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, cast

import numpy as np

from ferrograd._core import NdArray, Tensor

if TYPE_CHECKING:
    from typing_extensions import Self


class IncompatibleKeys(NamedTuple):
    """What ``Module.load_state_dict`` ignored (only non-empty when ``strict=False``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (Tensor, NdArray)):
        return value.numpy()
    if isinstance(value, (np.ndarray, np.generic, int, float, list, tuple)):
        arr = np.asarray(value)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise TypeError(f"load_state_dict: {name!r} is not numeric (dtype {arr.dtype})")
        return arr
    raise TypeError(
        f"load_state_dict: {name!r} must be a Tensor, NdArray or numpy array, "
        f"got {type(value).__name__}"
    )


def _add_indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class of layers and models: subclass it, assign layers and Tensors in
    ``__init__``, and write ``forward``. Calling the module calls ``forward``.

    Calling ``super().__init__()`` is recommended but not required: the registries are
    created before ``__init__`` runs.
    """

    training: bool
    _parameters: OrderedDict[str, Tensor | None]
    _buffers: OrderedDict[str, Tensor | None]
    _modules: OrderedDict[str, Module | None]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        obj = super().__new__(cls)
        d = obj.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["training"] = True
        return obj

    def __init__(self) -> None:
        pass

    # ----- registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Module):
            self._forget(name, keep="_modules")
            modules[name] = value
        elif isinstance(value, Tensor):
            if name in buffers:
                buffers[name] = value
            else:
                self._forget(name, keep="_parameters")
                params[name] = value
        elif value is None and (name in params or name in buffers or name in modules):
            for registry in (params, buffers, modules):
                if name in registry:
                    registry[name] = None
        else:
            self._forget(name)
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str | None = None) -> None:
        # ``keep`` is the registry about to receive ``name``: replacing an entry there keeps
        # its position (``seq[0] = m`` must not move the first layer to the end).
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key != keep:
                d[key].pop(name, None)
        d.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = d.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d[key]:
                del d[key][name]
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        d = self.__dict__
        extra = [*d["_parameters"], *d["_buffers"], *d["_modules"]]
        return sorted(set(super().__dir__()) | set(extra))

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        """Registers ``param`` (a Tensor, or None for an absent optional parameter)."""
        if param is not None and not isinstance(param, Tensor):
            raise TypeError(f"register_parameter: {name!r} must be a Tensor or None")
        self._forget(name, keep="_parameters")
        self.__dict__["_parameters"][name] = param

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """Registers state that is saved in ``state_dict`` but is not a parameter."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None")
        self._forget(name, keep="_buffers")
        self.__dict__["_buffers"][name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        """Registers ``module`` as the sub-module ``name`` (what attribute assignment does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None")
        self._forget(name, keep="_modules")
        self.__dict__["_modules"][name] = module

    # ----- traversal ----------------------------------------------------------------------
    def named_modules(
        self, prefix: str = "", _memo: set[int] | None = None, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, with dotted names; ``""`` is self. A module
        reachable by several paths comes once (the first path) unless
        ``remove_duplicate=False``, which yields it under every name."""
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(
                    f"{prefix}.{name}" if prefix else name, memo, remove_duplicate
                )
        if not remove_duplicate:
            # Without deduplication the memo holds only the current path, which still stops
            # a module that contains itself from recursing forever.
            memo.discard(id(self))

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, each once."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for the direct sub-modules."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        """The direct sub-modules."""
        for _, child in self.named_children():
            yield child

    def _named_tensors(
        self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool
    ) -> Iterator[tuple[str, Tensor]]:
        # A tied Tensor (one object assigned to two modules) is one node: its id says so.
        seen: set[int] = set()
        modules = (
            self.named_modules(prefix, remove_duplicate=remove_duplicate)
            if recurse
            else iter([(prefix, self)])
        )
        for module_prefix, module in modules:
            for name, t in module.__dict__[registry].items():
                if t is None or (remove_duplicate and t._id in seen):
                    continue
                seen.add(t._id)
                yield (f"{module_prefix}.{name}" if module_prefix else name), t

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        """``(name, parameter)`` pairs. A parameter shared by several modules (weight tying)
        comes once, under the first name met, unless ``remove_duplicate=False``; ``prefix``
        is put in front of every name (PyTorch's signature)."""
        return self._named_tensors("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> list[Tensor]:
        """The parameters as a list (no duplicates), ready for an optimizer."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        """``(name, buffer)`` pairs (state such as BatchNorm's running statistics)."""
        return self._named_tensors("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> list[Tensor]:
        """The buffers as a list."""
        return [b for _, b in self.named_buffers(recurse=recurse)]

    # ----- state --------------------------------------------------------------------------
    def _state_targets(self) -> OrderedDict[str, Tensor]:
        """Every saved tensor by its state-dict name (a shared tensor appears under each name,
        as in PyTorch)."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for registry in ("_parameters", "_buffers"):
                for name, t in module.__dict__[registry].items():
                    if t is not None:
                        out[f"{prefix}.{name}" if prefix else name] = t
        return out

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Name → detached copy of every parameter and buffer."""
        return OrderedDict((name, Tensor(t)) for name, t in self._state_targets().items())

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copies values into the parameters and buffers, in place (optimizers keep working).

        Everything is checked before anything changes: with ``strict`` missing or unexpected
        keys raise KeyError; a shape mismatch raises ValueError; a non-numeric value
        TypeError. A failed load leaves the module unchanged.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: expected a mapping of name -> tensor, "
                f"got {type(state_dict).__name__}"
            )
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(map(str, unexpected))}")
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        staged: list[tuple[Tensor, np.ndarray]] = []
        for name, target in targets.items():
            if name not in state_dict:
                continue
            value = _to_numpy(name, state_dict[name])
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"load_state_dict: shape mismatch for {name!r}: the model has "
                    f"{tuple(target.shape)}, the state dict has {tuple(value.shape)}"
                )
            staged.append((target, value))
        for target, value in staged:
            target.data = np.asarray(value, dtype=target.dtype)  # keeps 0-d
        return IncompatibleKeys(missing, unexpected)

    # ----- modes and grads ----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Sets training mode on this module and every sub-module; returns self."""
        for module in self.modules():
            module.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (Dropout off, BatchNorm uses its running statistics)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Sets every parameter's grad to None."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Sets ``requires_grad`` on every parameter (False freezes them); returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def apply(self, fn: Callable[[Module], object]) -> Module:
        """Calls ``fn(module)`` on every sub-module and then on self; returns self."""
        for module in list(self.modules())[::-1]:
            fn(module)
        return self

    # ----- calling and printing -----------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (override in layers)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, child in self._modules.items():
            lines.append(f"({name}): " + _add_indent(repr(child), 2))
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(lines)
        return f"{type(self).__name__}(\n  {body}\n)"

    def summary(self, file: TextIO | None = None) -> str:
        """Prints the layer table — each sub-module's name, type, parameter shapes and
        count, then the totals — to ``file`` (default stdout) and returns it as a string."""
        from ferrograd.layers import _summary

        text = _summary.to_text(_summary.table(self))
        print(text, file=sys.stdout if file is None else file)
        return text

    def _repr_html_(self) -> str:
        """The layer table as HTML (how Jupyter shows a module)."""
        from ferrograd.layers import _summary

        return _summary.to_html(_summary.table(self))


class Sequential(Module):
    """Runs its modules in order. ``Sequential(a, b)`` names them ``"0"``, ``"1"``;
    ``Sequential(OrderedDict(name=module))`` keeps the given names. Indexable (an int gives
    a module, a slice a new ``Sequential``), iterable, with ``len``."""

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, module in modules[0].items():
                self.add_module(str(name), module)
        else:
            for i, module in enumerate(modules):
                if not isinstance(module, Module):
                    raise TypeError(
                        f"Sequential: argument {i} is a {type(module).__name__}, not a Module"
                    )
                self.add_module(str(i), module)

    def _index(self, idx: int) -> str:
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for {type(self).__name__} of length {n}")
        return list(self._modules)[idx % n]

    def __getitem__(self, idx: int | slice) -> Any:
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return self._modules[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, self._index(idx), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        # An entry set to None (``add_module(name, None)``) is yielded as it is, as in PyTorch.
        return cast("Iterator[Module]", iter(self._modules.values()))

    def append(self, module: Module) -> Sequential:
        """Adds ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x: Any) -> Any:
        # No `typing.cast` here: it is a Python call on every forward of every model.
        module: Any
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered (names ``"0"``, ``"1"``, …)."""

    def __init__(self, modules: Any = ()) -> None:
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        """Adds ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        return items[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        # An entry set to None (``add_module(name, None)``) is yielded as it is, as in PyTorch.
        return cast("Iterator[Module]", iter(self._modules.values()))


class ModuleDict(Module):
    """A dict of modules whose parameters are registered under their keys (``"key.weight"``),
    in insertion order, as PyTorch's ``nn.ModuleDict``. Entries are also attributes
    (``md.wte`` is ``md["wte"]``). Built from a mapping, another ``ModuleDict`` or an
    iterable of ``(key, module)`` pairs."""

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _check_key(self, key: Any) -> str:
        # PyTorch's add_module rules: a key becomes an attribute and a part of dotted names.
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, got {type(key).__name__}")
        if key == "":
            raise KeyError('ModuleDict: a key cannot be the empty string ""')
        if "." in key:
            raise KeyError(f"ModuleDict: a key cannot contain '.', got {key!r}")
        if key not in self._modules and hasattr(self, key):
            raise KeyError(f"ModuleDict: attribute {key!r} already exists; use another key")
        return key

    def __getitem__(self, key: str) -> Any:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(self._check_key(key), module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def clear(self) -> None:
        """Removes every entry."""
        self._modules.clear()

    def pop(self, key: str) -> Any:
        """Removes the entry ``key`` and returns its module (KeyError when absent)."""
        return self._modules.pop(key)

    def keys(self) -> KeysView[str]:
        """The keys, in insertion order."""
        return self._modules.keys()

    def items(self) -> ItemsView[str, Module | None]:
        """``(key, module)`` pairs, in insertion order."""
        return self._modules.items()

    def values(self) -> ValuesView[Module | None]:
        """The modules, in insertion order."""
        return self._modules.values()

    def update(self, modules: Any) -> None:
        """Adds or replaces entries from a mapping, a ``ModuleDict`` or an iterable of
        ``(key, module)`` pairs (TypeError/ValueError for anything else)."""
        if isinstance(modules, (Mapping, ModuleDict)):
            entries: Iterable[tuple[Any, Any]] = modules.items()
            for key, module in entries:
                self[key] = module
            return
        if isinstance(modules, (str, bytes)) or not isinstance(modules, Iterable):
            raise TypeError(
                "ModuleDict.update takes a mapping or an iterable of (key, module) pairs, "
                f"got {type(modules).__name__}"
            )
        for j, pair in enumerate(modules):
            if not isinstance(pair, (tuple, list)):
                raise TypeError(
                    f"ModuleDict.update: element #{j} must be a (key, module) pair, "
                    f"got {type(pair).__name__}"
                )
            if len(pair) != 2:
                raise ValueError(
                    f"ModuleDict.update: element #{j} has length {len(pair)}; 2 is required"
                )
            self[pair[0]] = pair[1]
