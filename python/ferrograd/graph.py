"""Pictures of autodiff graphs of ``Value`` or ``Tensor`` nodes (micrograd's ``draw_dot``):
:func:`to_dot` writes Graphviz text, :func:`draw_graph` renders it to SVG or PNG."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]

# How many values a tensor node shows before it elides the rest.
_SHOWN_VALUES = 4


def _key(node: Any) -> int:
    return int(node._id)


def _values(array: Any) -> str:
    flat = array.numpy().ravel()
    shown = ", ".join(f"{x:.4g}" for x in flat[:_SHOWN_VALUES])
    return f"[{shown}, …]" if flat.size > _SHOWN_VALUES else f"[{shown}]"


def _escape_record(text: str) -> str:
    """Escapes the characters a Graphviz record label gives meaning to."""
    for c in '\\{}|<>"':
        text = text.replace(c, "\\" + c)
    return text


def _label(node: Any, name: str | None = None) -> str:
    fields = [] if name is None else [name]
    if hasattr(node, "shape"):
        grad = node.grad
        fields += [
            f"{tuple(node.shape)} {node.dtype}",
            f"data {_values(node)}",
            f"grad {'None' if grad is None else _values(grad)}",
        ]
        # Stacked fields (a record's default in a left-to-right graph) keep wide tensors narrow.
        return " | ".join(_escape_record(f) for f in fields)
    fields += [f"data {node.data:.4f}", f"grad {node.grad:.4f}"]
    # One row, as in micrograd's figure.
    return "{ " + " | ".join(_escape_record(f) for f in fields) + " }"


def to_dot(root: Any, names: Mapping[str, Any] | None = None) -> str:
    """The graph below ``root`` (a Value or Tensor) as Graphviz ``dot`` text.

    Each node is a record with its data and grad (a tensor's also with its shape and dtype);
    each op is an ellipse feeding its output. ``names`` maps names to nodes to label them
    (``dict(model.named_parameters())``). Walks iteratively, so deep graphs do not hit
    Python's recursion limit.
    """
    labels = {_key(node): name for name, node in (names or {}).items()}
    lines = [
        "digraph G {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
    ]
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        key = _key(node)
        if key in seen:
            continue
        seen.add(key)
        label = _label(node, labels.get(key))
        lines.append(f'  n{key} [shape=record, label="{label}"];')
        op = node._op
        if op is not None:
            lines.append(f'  n{key}op [label="{op}"];')
            lines.append(f"  n{key}op -> n{key};")
            for parent in node._prev:
                lines.append(f"  n{_key(parent)} -> n{key}op;")
                stack.append(parent)
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program, which :func:`draw_graph` runs, is not installed."""


_INSTALL_HINT = (
    "draw_graph renders through Graphviz's `dot` program, which was not found on PATH. "
    "Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
    "(macOS), `conda install -c conda-forge graphviz` (conda), or see "
    "https://graphviz.org/download/ — or call fg.to_dot(root) for the text and render it "
    "elsewhere."
)

# Output formats by file suffix; any format `dot -T` knows may also be named explicitly.
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}


def draw_graph(
    root: Any,
    path: PathLike,
    format: str | None = None,
    *,
    names: Mapping[str, Any] | None = None,
) -> Path:
    """Renders the autodiff graph below ``root`` (a Value or Tensor) to an image at ``path``
    and returns the path.

    The picture is :func:`to_dot`'s: ops, shapes, values and grads, like micrograd's
    notebook figure (call it after ``backward()`` to see the grads). ``format`` (``"svg"``,
    ``"png"``, ``"pdf"``, ...) defaults to the path's suffix. Rendering runs Graphviz's
    ``dot`` program; without it, :class:`GraphvizNotFoundError` says how to install it
    (``.dot``/``.gv`` files are written without Graphviz).
    """
    dest = Path(os.fspath(path))
    fmt = format if format is not None else _FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"draw_graph: cannot tell the image format from {str(dest)!r}; use a .svg, .png "
            f"or .pdf path, or pass format='svg'"
        )
    if not dest.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(dest.parent))
    text = to_dot(root, names=names)
    if fmt in ("dot", "gv"):
        dest.write_text(text, encoding="utf-8")
        return dest
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError(_INSTALL_HINT)
    result = subprocess.run(
        [exe, f"-T{fmt}", "-o", str(dest)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"draw_graph: Graphviz's dot failed ({result.returncode}): {message}")
    return dest
