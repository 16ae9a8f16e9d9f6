"""Notebook friendliness: HTML reprs of tensors, arrays and modules, and model.summary()."""

import io

import pytest

import ferrograd as fg

L = fg.layers


def test_a_tensors_html_shows_shape_dtype_grad_state_and_values():
    t = fg.Tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    html = t._repr_html_()
    assert "<strong>Tensor</strong>" in html
    assert "shape (1, 3)" in html and "float32" in html and "requires_grad=True" in html
    assert "[[1., 2., 3.]]" in html


def test_a_computed_tensors_html_names_its_op_and_its_grad():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2.0).sum()
    assert "made by sum" in y._repr_html_()
    y.backward()
    assert "grad (2,)" in x._repr_html_()


def test_an_ndarrays_html_shows_its_dtype_without_autodiff_facts():
    html = fg.NdArray([1.0], dtype="float64")._repr_html_()
    assert "<strong>NdArray</strong>" in html and "float64" in html and "shape (1,)" in html
    assert "requires_grad" not in html


def test_a_large_tensors_html_preview_is_summarised():
    html = fg.zeros(1000, 1000)._repr_html_()
    assert "..." in html
    assert len(html) < 2_000


def test_html_reprs_escape_text():
    # The values text holds no markup, but it must come out escaped all the same.
    html = fg.Tensor([-1.0, 2.0])._repr_html_()
    assert "<pre" in html and "<script" not in html
    assert html.count("<") == html.count(">")


def test_a_modules_html_is_a_table_of_layers_with_parameter_counts():
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), L.Linear(8, 2))
    html = model._repr_html_()
    assert html.count("<tr>") == 1 + 3 + 1  # header, one row per layer, totals
    for text in ("Sequential", "Linear", "ReLU", "weight (8, 4), bias (8,)", ">40<", ">18<"):
        assert text in html
    assert "Total parameters: 58" in html


def test_a_modules_html_escapes_names_and_class_names():
    evil = type("<b>Evil</b>", (L.Module,), {})()
    evil.add_module("<script>alert(1)</script>", L.Linear(1, 1))
    html = evil._repr_html_()
    assert "<script>" not in html and "<b>Evil" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Evil&lt;/b&gt;" in html


def test_summary_prints_the_table_and_returns_it(capsys):
    model = L.Sequential(L.Linear(64, 32), L.ReLU(), L.Linear(32, 10))
    text = model.summary()
    assert capsys.readouterr().out == text + "\n"
    lines = text.splitlines()
    assert lines[0] == "Sequential"
    assert lines[1].split() == ["Layer", "Type", "Parameters", "Count"]
    assert any(line.split()[:2] == ["0", "Linear"] and line.endswith("2,080") for line in lines)
    assert any(line.split()[:2] == ["1", "ReLU"] and line.endswith("0") for line in lines)
    assert lines[-1].startswith("Total parameters: 2,410 (2,410 trainable, 0 frozen)")


def test_summary_counts_add_up_and_frozen_parameters_are_reported():
    model = L.Sequential(L.Linear(3, 4), L.BatchNorm1d(4), L.Linear(4, 1))
    model[0].requires_grad_(False)
    text = model.summary(file=io.StringIO())
    total = sum(p.size for p in model.parameters())
    assert f"Total parameters: {total}" in text
    assert "(13 trainable, 16 frozen)" in text
    assert "buffers: 9 values" in text


def test_summary_of_a_single_layer_lists_the_layer_itself():
    out = io.StringIO()
    text = L.Linear(3, 2).summary(file=out)
    assert out.getvalue() == text + "\n"
    assert "weight (2, 3), bias (2,)" in text and text.endswith("32 B")


def test_summary_of_nested_modules_uses_dotted_names():
    class Net(L.Module):
        def __init__(self):
            super().__init__()
            self.body = L.Sequential(L.Linear(2, 2), L.ReLU())
            self.head = L.Linear(2, 1)

    text = Net().summary(file=io.StringIO())
    names = [line.split()[0] for line in text.splitlines()[3:-2]]
    assert names == ["body", "body.0", "body.1", "head"]


@pytest.mark.parametrize("obj", [fg.Tensor([1.0]), fg.NdArray([1.0]), L.Linear(1, 1)])
def test_everything_jupyter_renders_returns_a_str(obj):
    assert isinstance(obj._repr_html_(), str)
