"""A module's layer table — name, type, parameter shapes and counts — as text
(``Module.summary()``) and as HTML (``Module._repr_html_``, what Jupyter shows)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ferrograd.layers.module import Module

_HEADER = ("Layer", "Type", "Parameters", "Count")


class Row(NamedTuple):
    name: str
    kind: str
    shapes: str
    n_params: int


class Table(NamedTuple):
    title: str
    rows: list[Row]
    total: int
    trainable: int
    nbytes: int
    buffers: int


def _shape(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(map(str, shape))})"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def table(module: Module) -> Table:
    """The rows: every sub-module (or the module itself when it has none) with the
    parameters it owns directly, so the counts add up to the total."""
    modules = [(n, m) for n, m in module.named_modules() if n]
    if not modules:
        modules = [(type(module).__name__, module)]
    rows = []
    for name, m in modules:
        own = list(m.named_parameters(recurse=False))
        rows.append(
            Row(
                name,
                type(m).__name__,
                ", ".join(f"{p_name} {_shape(tuple(p.shape))}" for p_name, p in own),
                sum(p.size for _, p in own),
            )
        )
    params = module.parameters()
    return Table(
        title=type(module).__name__,
        rows=rows,
        total=sum(p.size for p in params),
        trainable=sum(p.size for p in params if p.requires_grad),
        nbytes=sum(p.size * (8 if p.dtype == "float64" else 4) for p in params),
        buffers=sum(b.size for b in module.buffers()),
    )


def _totals(t: Table) -> str:
    text = (
        f"Total parameters: {t.total:,} ({t.trainable:,} trainable, "
        f"{t.total - t.trainable:,} frozen), {_bytes(t.nbytes)}"
    )
    if t.buffers:
        text += f"; buffers: {t.buffers:,} values"
    return text


def to_text(t: Table) -> str:
    """The table for a terminal, columns aligned, counts right-aligned."""
    cells = [_HEADER] + [(r.name, r.kind, r.shapes, f"{r.n_params:,}") for r in t.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        left = [row[i].ljust(widths[i]) for i in range(3)]
        return "  ".join([*left, row[3].rjust(widths[3])]).rstrip()

    rule = "-" * len(line(tuple("-" * w for w in widths)))
    body = [line(row) for row in cells[1:]]
    return "\n".join([t.title, line(_HEADER), rule, *body, rule, _totals(t)])


def to_html(t: Table) -> str:
    """The table for Jupyter; every piece of text is escaped."""
    esc = html.escape
    head = "".join(f'<th style="text-align: left">{esc(h)}</th>' for h in _HEADER)
    body = "".join(
        "<tr>"
        f"<td><code>{esc(r.name)}</code></td><td>{esc(r.kind)}</td>"
        f'<td>{esc(r.shapes)}</td><td style="text-align: right">{r.n_params:,}</td>'
        "</tr>"
        for r in t.rows
    )
    return (
        f'<div class="ferrograd-module"><strong>{esc(t.title)}</strong>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f'<tfoot><tr><td colspan="4">{esc(_totals(t))}</td></tr></tfoot></table></div>'
    )
