"""Pictures: graph labels, draw_graph through Graphviz (skipped without `dot`), the
"Graphviz is missing" message, and the README's committed images."""

import re
import shutil
from pathlib import Path

import pytest

import ferrograd as fg
from ferrograd.graph import GraphvizNotFoundError

ROOT = Path(__file__).resolve().parent.parent
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed"
)


def _mlp_loss():
    fg.manual_seed(0)
    L = fg.layers
    model = L.Sequential(L.Linear(2, 3), L.Tanh(), L.Linear(3, 1))
    loss = fg.loss.mse(model(fg.randn(4, 2)), fg.randn(4, 1))
    loss.backward(retain_graph=True)
    return model, loss


def test_tensor_nodes_show_shape_dtype_values_and_grads():
    x = fg.Tensor([[1.0, 2.0]], requires_grad=True)
    w = fg.Tensor([[0.5], [-0.5]], requires_grad=True)
    root = (x @ w).sum()
    root.backward(retain_graph=True)
    dot = fg.to_dot(root)
    assert "(1, 2) float32" in dot and "(2, 1) float32" in dot
    assert "data [1, 2]" in dot and "grad [0.5, -0.5]" in dot
    assert "data [0.5, -0.5]" in dot and "grad [1, 2]" in dot
    assert "sum" in dot and "@" in dot


def test_long_tensors_show_their_first_values_then_an_ellipsis():
    dot = fg.to_dot(fg.arange(0.0, 10.0, 1.0))
    assert "data [0, 1, 2, 3, …]" in dot


def test_value_nodes_keep_micrographs_one_row_records():
    a, b = fg.Value(2.0), fg.Value(-3.0)
    c = a * b
    c.backward()
    dot = fg.to_dot(c)
    assert "{ data -6.0000 | grad 1.0000 }" in dot
    assert "{ data 2.0000 | grad -3.0000 }" in dot


def test_names_label_their_nodes_and_are_escaped_for_records():
    model, loss = _mlp_loss()
    names = {**dict(model.named_parameters()), "odd{name}|<x>": loss}
    dot = fg.to_dot(loss, names=names)
    assert "0.weight | (3, 2) float32" in dot
    assert "2.bias | (1,) float32" in dot
    assert r"odd\{name\}\|\<x\>" in dot


@needs_dot
@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_draw_graph_renders_the_format_named_by_the_suffix(tmp_path, suffix, magic):
    model, loss = _mlp_loss()
    out = fg.draw_graph(loss, tmp_path / f"graph{suffix}", names=dict(model.named_parameters()))
    assert out == tmp_path / f"graph{suffix}"
    data = out.read_bytes()
    assert data.startswith(magic)
    if suffix == ".svg":
        text = data.decode()
        for label in ("linear", "tanh", "mean", "0.weight", "(3, 2) float32"):
            assert label in text


@needs_dot
def test_draw_graph_takes_an_explicit_format_and_a_value_graph(tmp_path):
    a = fg.Value(1.5)
    b = (a * a).tanh()
    b.backward()
    out = fg.draw_graph(b, str(tmp_path / "value.picture"), format="svg")
    assert out.read_bytes().lstrip().startswith(b"<?xml")


def test_draw_graph_says_how_to_install_graphviz_when_dot_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GraphvizNotFoundError) as err:
        fg.draw_graph(fg.Value(1.0), tmp_path / "g.svg")
    message = str(err.value)
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda", "fg.to_dot"):
        assert hint in message
    assert isinstance(err.value, RuntimeError)
    assert not (tmp_path / "g.svg").exists()


def test_draw_graph_writes_dot_text_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = fg.draw_graph(fg.Value(1.0) + 2.0, tmp_path / "g.dot")
    assert out.read_text().startswith("digraph")


def test_draw_graph_rejects_a_path_without_a_known_format(tmp_path):
    with pytest.raises(ValueError, match="format"):
        fg.draw_graph(fg.Value(1.0), tmp_path / "graph.unknown")


def test_draw_graph_into_a_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fg.draw_graph(fg.Value(1.0), tmp_path / "missing" / "g.svg")


@needs_dot
def test_draw_graph_reports_graphviz_failures(tmp_path):
    with pytest.raises(RuntimeError, match="dot failed"):
        fg.draw_graph(fg.Value(1.0), tmp_path / "g.svg", format="no-such-format")


@pytest.mark.parametrize("name", ["graph.svg", "digits_curves.png", "digits_predictions.png"])
def test_the_readme_shows_each_committed_picture_and_each_is_small(name):
    path = ROOT / "docs" / "images" / name
    assert path.is_file()
    assert path.stat().st_size < 150_000
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"!\[[^\]]*\]\(docs/images/{re.escape(name)}\)", readme)
