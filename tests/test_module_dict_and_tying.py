"""``layers.ModuleDict`` (PyTorch's ``nn.ModuleDict``) and weight tying: one Tensor assigned
to two modules is one parameter, listed once, saved under both names, stepped once."""

from collections import OrderedDict

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import layers as nn
from ferrograd.optim import SGD, AdamW

# -- ModuleDict ------------------------------------------------------------------------------


def _blocks():
    return nn.ModuleDict(
        {
            "wte": nn.Embedding(7, 4),
            "h": nn.ModuleList([nn.Linear(4, 4) for _ in range(2)]),
            "ln_f": nn.LayerNorm(4),
        }
    )


def test_a_module_dict_registers_its_modules_under_their_keys_in_order():
    md = _blocks()
    assert [n for n, _ in md.named_parameters()] == [
        "wte.weight",
        "h.0.weight",
        "h.0.bias",
        "h.1.weight",
        "h.1.bias",
        "ln_f.weight",
        "ln_f.bias",
    ]
    assert list(md.state_dict()) == [n for n, _ in md.named_parameters()]
    assert len(md.parameters()) == 7


def test_a_module_dict_behaves_like_a_dict():
    md = _blocks()
    assert len(md) == 3
    assert list(md) == ["wte", "h", "ln_f"]
    assert list(md.keys()) == ["wte", "h", "ln_f"]
    assert [type(m).__name__ for m in md.values()] == ["Embedding", "ModuleList", "LayerNorm"]
    assert [k for k, _ in md.items()] == ["wte", "h", "ln_f"]
    assert "wte" in md and "nope" not in md
    assert md["wte"] is md.wte  # entries are attributes too, as nanoGPT uses them
    with pytest.raises(KeyError):
        md["nope"]


def test_setting_deleting_popping_and_clearing_entries_updates_the_parameters():
    md = _blocks()
    md["head"] = nn.Linear(4, 7, bias=False)
    assert list(md)[-1] == "head"
    assert "head.weight" in dict(md.named_parameters())
    replaced = nn.LayerNorm(4, elementwise_affine=False)
    md["ln_f"] = replaced  # replacing keeps the position, as a dict does
    assert list(md) == ["wte", "h", "ln_f", "head"]
    assert md.ln_f is replaced and "ln_f.weight" not in dict(md.named_parameters())
    del md["h"]
    assert list(md) == ["wte", "ln_f", "head"]
    popped = md.pop("head")
    assert isinstance(popped, nn.Linear) and "head" not in md
    with pytest.raises(KeyError):
        md.pop("head")
    md.clear()
    assert len(md) == 0 and md.parameters() == []


def test_update_takes_a_mapping_a_module_dict_or_key_module_pairs():
    a, b, c = nn.Linear(1, 1), nn.ReLU(), nn.Tanh()
    md = nn.ModuleDict([("a", a), ["b", b]])
    assert list(md) == ["a", "b"]
    md.update(OrderedDict(c=c))
    md.update(nn.ModuleDict({"z": nn.Identity()}))
    assert list(md) == ["a", "b", "c", "z"]
    assert md["a"] is a and md["c"] is c
    assert len(nn.ModuleDict()) == 0


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (5, TypeError, "mapping or an iterable"),
        ("ab", TypeError, "mapping or an iterable"),
        ([nn.ReLU()], TypeError, "element #0"),
        ([("a", nn.ReLU(), 3)], ValueError, "element #0 has length 3"),
        ({1: nn.ReLU()}, TypeError, "keys must be strings"),
        ({"": nn.ReLU()}, KeyError, "empty"),
        ({"a.b": nn.ReLU()}, KeyError, r"'\.'"),
        ({"update": nn.ReLU()}, KeyError, "already exists"),
        ({"training": nn.ReLU()}, KeyError, "already exists"),
        ({"a": 3}, TypeError, "must be a Module"),
    ],
    ids=[
        "int",
        "str",
        "not-a-pair",
        "triple",
        "int-key",
        "empty-key",
        "dotted-key",
        "method-key",
        "attribute-key",
        "not-a-module",
    ],
)
def test_bad_module_dict_input_raises_a_clear_error(bad, error, match):
    with pytest.raises(error, match=match):
        nn.ModuleDict(bad)


def test_a_model_built_on_a_module_dict_trains_and_round_trips_its_state():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict({"wte": nn.Embedding(5, 3), "ln_f": nn.LayerNorm(3)})
            self.lm_head = nn.Linear(3, 5)

        def forward(self, idx):
            return self.lm_head(self.transformer.ln_f(self.transformer.wte(idx)))

    fg.manual_seed(0)
    model = Tiny()
    idx = [0, 1, 2, 3, 4]
    opt = SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = fg.loss.cross_entropy(model(idx), idx)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
    copy = Tiny()
    copy.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(copy(idx).numpy(), model(idx).numpy())
    assert "transformer.wte.weight" in model.state_dict()


# -- weight tying ----------------------------------------------------------------------------


class TiedLM(nn.Module):
    """nanoGPT's tying: the embedding and the output head share one (vocab, n_embd) weight."""

    def __init__(self, vocab=6, n_embd=4):
        super().__init__()
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(vocab, n_embd)})
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):
        return self.lm_head(self.transformer.wte(idx).tanh())


def test_a_tied_weight_is_one_parameter_listed_once_under_the_first_name():
    model = TiedLM()
    assert model.transformer.wte.weight is model.lm_head.weight
    names = [n for n, _ in model.named_parameters()]
    assert names == ["transformer.wte.weight"]  # PyTorch: the first name met wins
    assert len(model.parameters()) == 1
    every = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert every == ["transformer.wte.weight", "lm_head.weight"]


def test_named_parameters_takes_pytorchs_prefix_and_recurse_arguments():
    model = TiedLM()
    assert [n for n, _ in model.named_parameters(prefix="model")] == [
        "model.transformer.wte.weight"
    ]
    assert list(model.named_parameters(recurse=False)) == []
    lin = nn.Linear(2, 2)
    assert [n for n, _ in lin.named_parameters("fc", recurse=False)] == ["fc.weight", "fc.bias"]


def test_the_state_dict_keeps_both_names_of_a_tied_weight_and_reloads_them():
    model = TiedLM()
    sd = model.state_dict()
    assert list(sd) == ["transformer.wte.weight", "lm_head.weight"]
    np.testing.assert_array_equal(
        sd["transformer.wte.weight"].numpy(), sd["lm_head.weight"].numpy()
    )
    other = TiedLM()
    other.load_state_dict(sd)
    assert other.transformer.wte.weight is other.lm_head.weight  # still tied after loading
    np.testing.assert_array_equal(other.lm_head.weight.numpy(), sd["lm_head.weight"].numpy())


def test_a_shared_module_is_saved_under_every_path_like_pytorch():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert [n for n, _ in seq.named_modules(remove_duplicate=False)] == ["", "0", "1", "2"]
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
    seq.load_state_dict(seq.state_dict())


def test_a_tied_weight_gets_the_gradient_of_both_uses():
    model = TiedLM(vocab=3, n_embd=2)
    w = model.lm_head.weight
    idx = [0, 2]
    model(idx).sum().backward()
    # By hand: out = tanh(W[idx]) @ W.T, summed.
    W = w.numpy().astype(np.float64)
    h = np.tanh(W[idx])
    expected = np.zeros_like(W)
    expected += np.ones((2, 3)).T @ h  # through the head: d/dW of sum(h @ W.T)
    dh = np.ones((2, 3)) @ W  # back into the embedding rows
    np.add.at(expected, idx, dh * (1 - h**2))
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_an_optimizer_steps_a_tied_weight_once():
    model = TiedLM()
    w = model.lm_head.weight
    before = w.numpy().copy()
    opt = SGD(model.parameters(), lr=0.1)
    w.grad = np.ones(w.shape, dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(w.numpy(), before - 0.1, rtol=1e-6)
    # Naming the tensor twice (as a list without deduplication would) is refused.
    with pytest.raises(ValueError, match="twice"):
        AdamW([model.lm_head.weight, model.transformer.wte.weight])


def test_replacing_a_layer_of_a_sequential_keeps_its_place_in_the_forward_order():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    seq[0] = nn.Sigmoid()
    assert [type(m).__name__ for m in seq] == ["Sigmoid", "Tanh"]
    assert seq(fg.Tensor([0.0])).item() == pytest.approx(np.tanh(0.5))
