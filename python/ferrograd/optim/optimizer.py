"""The ``Optimizer`` base class and ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``.

Parameter groups, ``state``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` follow
``torch.optim.Optimizer``. The update of each parameter is one fused pass in Rust; SGD and
Adam(W) update a whole parameter group in one call into Rust.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor

ParamsLike = Iterable[Any]


def _zeros_like(p: Tensor) -> Tensor:
    return _core.zeros(p.shape, dtype=p.dtype)


def _is_array(x: Any) -> bool:
    return isinstance(x, (Tensor, NdArray, np.ndarray))


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


class Optimizer:
    """Base class: holds ``param_groups`` (dicts of parameters and hyper-parameters) and
    per-parameter ``state`` (buffers as Tensors, ``"step"`` as an int)."""

    def __init__(self, params: ParamsLike, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        if isinstance(params, (Tensor, NdArray)):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single "
                f"{type(params).__name__}; wrap it in a list"
            )
        if isinstance(params, dict):
            params = [params]
        try:
            items = list(params)
        except TypeError:
            raise TypeError(
                f"params must be an iterable of Tensors or of dicts, got {type(params).__name__}"
            ) from None
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    # -- groups ---------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group: a dict with ``"params"`` and any hyper-parameters overriding the
        defaults. Hyper-parameters are checked (ValueError) before the group is added."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("a group's params must be an ordered sequence, not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizers take Tensors as parameters, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (use detach())")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same parameter twice")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = {**self.defaults, **param_group, "params": params}
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        """Raises ValueError for hyper-parameters out of range (subclasses extend this).
        A loaded state dict may hold lr 0, where a schedule such as cosine annealing to
        ``eta_min=0`` ended."""
        lr = _check_number("lr", group["lr"])
        if not (lr > 0.0 or (loading and lr == 0.0)):
            raise ValueError(f"invalid learning rate {group['lr']!r}: lr must be positive")
        for name in ("weight_decay", "momentum", "eps"):
            if name in group:
                value = _check_number(name, group[name])
                if not value >= 0.0:
                    raise ValueError(f"invalid {name} {group[name]!r}: it must be >= 0")

    # -- stepping -------------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears every parameter's gradient: to None (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad = _zeros_like(p)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Updates every parameter that has a gradient; returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _stepped(self, group: dict[str, Any]) -> list[tuple[Tensor, dict[str, Any]]]:
        """The group's parameters that have a gradient, each with its state dict (created
        empty on a parameter's first step)."""
        states = self.state
        out = []
        for p in group["params"]:
            if p.grad is not None:
                state = states.get(p)
                if state is None:
                    state = states[p] = {}
                out.append((p, state))
        return out

    def _step_group(self, group: dict[str, Any]) -> None:
        """Updates the group's parameters that have a gradient, one ``_update`` each."""
        for p, state in self._stepped(group):
            self._update(p, group, state)

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- state dicts ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: ``{"state": {index: {name: Tensor copy | int}},
        "param_groups": [{hyper-parameters..., "params": [indices]}]}``; parameters are
        numbered in group order."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                entry = self.state.get(p)
                if entry:
                    state[index[id(p)]] = {
                        k: Tensor(v) if _is_array(v) else copy.deepcopy(v) for k, v in entry.items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores hyper-parameters and buffers from ``state_dict``'s output. Everything
        is checked first — group and parameter counts, buffer shapes, each group's
        hyper-parameters — so a failed load (ValueError) leaves the optimizer unchanged.
        Buffers are copied in the parameter's dtype."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                "an optimizer state dict is a dict with 'state' and 'param_groups' entries"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"the state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for i, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"parameter group {i} of the state dict has no 'params'")
            if len(saved["params"]) != len(ours["params"]):
                raise ValueError(
                    f"parameter group {i}: the state dict has {len(saved['params'])} "
                    f"parameter(s), this optimizer has {len(ours['params'])}"
                )
            by_index.update(zip(saved["params"], ours["params"]))
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            if isinstance(key, str) and key.isdigit():
                key = int(key)  # state dicts that went through JSON have string keys
            if key not in by_index:
                raise ValueError(f"the state dict has state for unknown parameter {key!r}")
            if not isinstance(entry, dict):
                raise TypeError(f"the state of parameter {key!r} must be a dict")
            p = by_index[key]
            restored: dict[str, Any] = {}
            for name, value in entry.items():
                if _is_array(value):
                    shape = tuple(np.shape(value)) if isinstance(value, np.ndarray) else value.shape
                    if shape != p.shape:
                        raise ValueError(
                            f"state {name!r} of parameter {key!r} has shape {shape}, "
                            f"but the parameter has shape {p.shape}"
                        )
                    restored[name] = Tensor(value, dtype=p.dtype)
                else:
                    restored[name] = copy.deepcopy(value)
            new_state[p] = restored
        new_groups = []
        for ours, saved in zip(self.param_groups, saved_groups):
            # Hyper-parameters the saved group lacks (an older file) come from the defaults;
            # the saved ones are checked like a new group's, before anything changes.
            group = {
                **copy.deepcopy(self.defaults),
                **{k: copy.deepcopy(v) for k, v in saved.items() if k != "params"},
            }
            if isinstance(group.get("betas"), list):
                group["betas"] = tuple(group["betas"])
            group["params"] = ours["params"]
            self._check_group(group, loading=True)
            new_groups.append(group)
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
    weight decay (PyTorch's ``torch.optim.SGD``)."""

    def __init__(
        self,
        params: ParamsLike,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        _check_number("dampening", group["dampening"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a positive momentum and zero dampening")

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor | NdArray] = []
        buffers: list[Tensor | NdArray | None] = []
        first_steps: list[bool] = []
        momentum = group["momentum"]
        for p, state in self._stepped(group):
            buffer = None
            first_step = False
            if momentum != 0:
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = _zeros_like(p)
                    first_step = True
            params.append(p)
            buffers.append(buffer)
            first_steps.append(first_step)
        if params:
            _core.sgd_steps(
                params,
                buffers,
                first_steps,
                float(group["lr"]),
                float(momentum),
                float(group["dampening"]),
                float(group["weight_decay"]),
                bool(group["nesterov"]),
            )


class Adam(Optimizer):
    """Adam with PyTorch's L2 weight decay (the decay is added to the gradient)."""

    _decoupled = False

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            value = _check_number(f"betas[{i}]", beta)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"invalid beta at index {i}: {beta!r} is not in [0, 1)")
        group["betas"] = (betas[0], betas[1])

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor | NdArray] = []
        exp_avgs: list[Tensor | NdArray] = []
        exp_avg_sqs: list[Tensor | NdArray] = []
        steps: list[int] = []
        for p, state in self._stepped(group):
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = _zeros_like(p)
                state["exp_avg_sq"] = _zeros_like(p)
            state["step"] += 1
            params.append(p)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(int(state["step"]))
        if params:
            beta1, beta2 = group["betas"]
            _core.adam_steps(
                params,
                exp_avgs,
                exp_avg_sqs,
                steps,
                float(group["lr"]),
                float(beta1),
                float(beta2),
                float(group["eps"]),
                float(group["weight_decay"]),
                self._decoupled,
            )


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p ← p·(1 − lr·weight_decay)`` before the step."""

    _decoupled = True

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop with optional momentum, centering and weight decay (``torch.optim.RMSprop``)."""

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        alpha = _check_number("alpha", group["alpha"])
        if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
            raise ValueError(f"invalid alpha {group['alpha']!r}: it must be in [0, 1]")

    def _update(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        if "step" not in state:
            state["step"] = 0
            state["square_avg"] = _zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = _zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = _zeros_like(p)
        # A group's momentum or centering switched on after the first step starts from zeros.
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = _zeros_like(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = _zeros_like(p)
        state["step"] += 1
        _core.rmsprop_step(
            p,
            state["square_avg"],
            state.get("momentum_buffer") if group["momentum"] > 0 else None,
            state.get("grad_avg") if group["centered"] else None,
            float(group["lr"]),
            float(group["alpha"]),
            float(group["eps"]),
            float(group["weight_decay"]),
            float(group["momentum"]),
            bool(group["centered"]),
        )
