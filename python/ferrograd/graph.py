"""Graphviz text of an autodiff graph of ``Value`` or ``Tensor`` nodes (micrograd's ``draw_dot``)."""

from __future__ import annotations

from typing import Any


def _key(node: Any) -> int:
    return int(node._id)


def _label(node: Any) -> str:
    if hasattr(node, "shape"):
        grad = node.grad
        grad_text = "None" if grad is None else f"shape {tuple(grad.shape)}"
        if node.size <= 4:
            data_text = ", ".join(f"{x:.4g}" for x in node.numpy().ravel())
            if grad is not None:
                grad_text = ", ".join(f"{x:.4g}" for x in grad.numpy().ravel())
        else:
            data_text = f"shape {tuple(node.shape)}"
        return f"data [{data_text}] | grad [{grad_text}]"
    return f"data {node.data:.4f} | grad {node.grad:.4f}"


def to_dot(root: Any) -> str:
    """The graph below ``root`` (a Value or Tensor) as Graphviz ``dot`` text.

    Each node is a record with its data and grad; each op is an ellipse feeding its output.
    Walks iteratively, so deep graphs do not hit Python's recursion limit.
    """
    lines = ["digraph G {", "  rankdir=LR;"]
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        key = _key(node)
        if key in seen:
            continue
        seen.add(key)
        label = _label(node).replace('"', '\\"')
        lines.append(f'  n{key} [shape=record, label="{{ {label} }}"];')
        op = node._op
        if op is not None:
            lines.append(f'  n{key}op [label="{op}"];')
            lines.append(f"  n{key}op -> n{key};")
            for parent in node._prev:
                lines.append(f"  n{_key(parent)} -> n{key}op;")
                stack.append(parent)
    lines.append("}")
    return "\n".join(lines) + "\n"
