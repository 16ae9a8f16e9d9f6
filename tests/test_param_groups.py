"""Optimizer parameter groups as PyTorch has them: per-group hyper-parameters (nanoGPT's
decay / no-decay split), ``param_groups[i]["lr"]`` set each iteration, ``add_param_group``,
and state dicts that carry the groups — for SGD, Adam, AdamW and RMSprop, against NumPy
references of PyTorch's documented algorithms that take a learning rate per step."""

import math

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import layers as nn
from ferrograd.optim import SGD, Adam, AdamW, CosineAnnealingLR, RMSprop

# -- step-by-step NumPy references (state in a dict, lr given per step) ----------------------


def sgd_ref(p, g, s, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = s.get("buf")
        s["buf"] = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * s["buf"] if nesterov else s["buf"]
    return p - lr * g


def adam_ref(p, g, s, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    t = s["t"] = s.get("t", 0) + 1
    if decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    s["m"] = betas[0] * s.get("m", 0.0) + (1 - betas[0]) * g
    s["v"] = betas[1] * s.get("v", 0.0) + (1 - betas[1]) * g * g
    m_hat = s["m"] / (1 - betas[0] ** t)
    v_hat = s["v"] / (1 - betas[1] ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def rmsprop_ref(p, g, s, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    if weight_decay:
        g = g + weight_decay * p
    s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
    v = s["v"]
    if centered:
        s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
        v = v - s["ga"] ** 2
    denom = np.sqrt(v) + eps
    if momentum > 0:
        s["buf"] = momentum * s.get("buf", 0.0) + g / denom
        return p - lr * s["buf"]
    return p - lr * g / denom


# (optimizer, its defaults, the reference, group 0's options, group 1's options)
CASES = {
    "SGD": (
        SGD,
        {"lr": 0.1},
        sgd_ref,
        {"momentum": 0.9, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    ),
    "Adam": (
        Adam,
        {"lr": 1e-3},
        adam_ref,
        {"weight_decay": 0.1},
        {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6},
    ),
    "AdamW": (
        AdamW,
        {"lr": 1e-3, "betas": (0.9, 0.99)},
        lambda *a, **k: adam_ref(*a, decoupled=True, **k),
        {"weight_decay": 0.1},
        {"weight_decay": 0.0, "lr": 0.02},
    ),
    "RMSprop": (
        RMSprop,
        {"lr": 0.01},
        rmsprop_ref,
        {"alpha": 0.9, "centered": True},
        {"momentum": 0.5, "weight_decay": 0.05, "lr": 0.002},
    ),
}
FULL_DEFAULTS = {
    "SGD": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
    "Adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "AdamW": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    "RMSprop": {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
    },
}
SHAPES = [(3, 4), (4,), (2, 3), (5,)]


def _problem(steps, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    return init, grads


def _grouped(name, params):
    cls, defaults, _, opts0, opts1 = CASES[name]
    return cls([{"params": params[:2], **opts0}, {"params": params[2:], **opts1}], **defaults)


def _hyper(name, group_index):
    """The full hyper-parameters of a group: class defaults < constructor < the group."""
    _, defaults, _, opts0, opts1 = CASES[name]
    return {**FULL_DEFAULTS[name], **defaults, **(opts0, opts1)[group_index]}


def _reference(name, init, grads, lrs_per_step=None):
    ref = CASES[name][2]
    out = []
    for k, x in enumerate(init):
        hyper = _hyper(name, 0 if k < 2 else 1)
        p, state = x.copy(), {}
        for t, gs in enumerate(grads):
            if lrs_per_step is not None:
                hyper["lr"] = lrs_per_step[t][0 if k < 2 else 1]
            p = ref(p, gs[k], state, **hyper)
        out.append(p)
    return out


def _tol(name):
    # √(v − ḡ²) of centered RMSprop loses digits; the rest agree to rounding.
    return 1e-9 if name == "RMSprop" else 1e-12


@pytest.mark.parametrize("name", list(CASES))
def test_each_group_steps_with_its_own_hyper_parameters(name):
    init, grads = _problem(steps=4)
    params = [fg.Tensor(x, requires_grad=True, dtype="float64") for x in init]
    opt = _grouped(name, params)
    for i in (0, 1):
        for key, value in _hyper(name, i).items():
            assert opt.param_groups[i][key] == value, key
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    for p, want in zip(params, _reference(name, init, grads)):
        np.testing.assert_allclose(p.numpy(), want, rtol=_tol(name), atol=_tol(name))


@pytest.mark.parametrize("name", list(CASES))
def test_a_learning_rate_set_in_param_groups_each_iteration_takes_effect(name):
    init, grads = _problem(steps=5, seed=1)
    params = [fg.Tensor(x, requires_grad=True, dtype="float64") for x in init]
    opt = _grouped(name, params)
    lrs = [(0.01 * (t + 1), 0.003 * (5 - t)) for t in range(5)]
    for t, gs in enumerate(grads):
        for group, lr in zip(opt.param_groups, lrs[t]):
            group["lr"] = lr  # nanoGPT's way of scheduling
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    for p, want in zip(params, _reference(name, init, grads, lrs)):
        np.testing.assert_allclose(p.numpy(), want, rtol=_tol(name), atol=_tol(name))


def _nanogpt_schedule(it, learning_rate=1e-3, warmup=3, decay_iters=8, min_lr=1e-4):
    if it < warmup:
        return learning_rate * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def test_nanogpts_adamw_recipe_decays_only_matrices_and_follows_its_schedule():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 6), nn.LayerNorm(6), nn.Linear(6, 11))
    named = dict(model.named_parameters())
    decay = [p for p in named.values() if p.ndim >= 2]
    no_decay = [p for p in named.values() if p.ndim < 2]
    assert len(decay) == 2 and len(no_decay) == 3
    opt = AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )
    start = {n: p.numpy().astype(np.float64) for n, p in named.items()}
    refs = {n: (start[n].copy(), {}) for n in named}
    rng = np.random.default_rng(2)
    for it in range(10):
        lr = _nanogpt_schedule(it)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, 11, size=8)
        opt.zero_grad()
        fg.loss.cross_entropy(model(idx.tolist()), np.roll(idx, 1).tolist()).backward()
        for n, p in named.items():
            state = refs[n][1]
            wd = 0.1 if p.ndim >= 2 else 0.0
            refs[n] = (
                adam_ref(
                    p.numpy().astype(np.float64),
                    p.grad.numpy().astype(np.float64),
                    state,
                    lr,
                    betas=(0.9, 0.99),
                    weight_decay=wd,
                    decoupled=True,
                ),
                state,
            )
        opt.step()
        for n, p in named.items():
            np.testing.assert_allclose(p.numpy(), refs[n][0], rtol=2e-5, atol=2e-6)
    # The no-decay tensors (LayerNorm, bias) were never shrunk towards zero by the decay.
    assert opt.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", list(CASES))
def test_a_grouped_state_dict_reloads_and_continues_exactly(name):
    init, grads = _problem(steps=6, seed=3)
    original = [fg.Tensor(x, requires_grad=True) for x in init]
    opt = _grouped(name, original)
    for t, gs in enumerate(grads[:3]):
        opt.param_groups[1]["lr"] *= 0.5
        for p, g in zip(original, gs):
            p.grad = g.astype(np.float32)
        opt.step()
    saved = opt.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2, 3]]
    assert saved["param_groups"][1]["lr"] == CASES[name][4].get("lr", CASES[name][1]["lr"]) / 8
    copies = [fg.Tensor(p.numpy(), requires_grad=True) for p in original]
    # Built with other hyper-parameters: the loaded groups replace them.
    cls = CASES[name][0]
    reloaded = cls([{"params": copies[:2]}, {"params": copies[2:]}], lr=0.5)
    reloaded.load_state_dict(saved)
    for i in (0, 1):
        got = {k: v for k, v in reloaded.param_groups[i].items() if k != "params"}
        want = {k: v for k, v in opt.param_groups[i].items() if k != "params"}
        assert got == want
    for gs in grads[3:]:
        for ps in (original, copies):
            for p, g in zip(ps, gs):
                p.grad = g.astype(np.float32)
        opt.step()
        reloaded.step()
    for a, b in zip(original, copies):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_add_param_group_fills_in_the_defaults_and_numbers_parameters_in_group_order():
    a, b, c = (fg.Tensor([1.0, 2.0], requires_grad=True) for _ in range(3))
    opt = AdamW([a], lr=1e-3, betas=(0.9, 0.99))
    a.grad = [1.0, 1.0]
    opt.step()
    opt.add_param_group({"params": [b, c], "weight_decay": 0.0, "name": "no_decay"})
    group = opt.param_groups[1]
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.99) and group["eps"] == 1e-8
    assert group["weight_decay"] == 0.0 and group["name"] == "no_decay"
    b.grad = [1.0, -1.0]
    opt.step()
    # b moved by lr against its gradient on its first step, without decay; c has no grad.
    np.testing.assert_allclose(b.numpy(), [1.0 - 1e-3, 2.0 + 1e-3], rtol=1e-6)
    np.testing.assert_array_equal(c.numpy(), [1.0, 2.0])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2]]
    assert sorted(sd["state"]) == [0, 1] and sd["state"][0]["step"] == 2
    assert sd["param_groups"][1]["name"] == "no_decay"  # extra keys travel, as in PyTorch


def test_schedulers_set_each_groups_lr_from_its_own_base():
    a, b = (fg.Tensor([1.0], requires_grad=True) for _ in range(2))
    opt = AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 4e-3}])
    sched = CosineAnnealingLR(opt, T_max=4)
    for _ in range(2):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.5e-3, 2e-3])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5e-3, 2e-3])


def _stepped(name):
    init, grads = _problem(steps=1)
    params = [fg.Tensor(x, requires_grad=True) for x in init]
    opt = _grouped(name, params)
    for p, g in zip(params, grads[0]):
        p.grad = g.astype(np.float32)
    opt.step()
    return params, opt


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    "corrupt",
    [
        lambda g: g.update(lr=-0.1),
        lambda g: g.update(weight_decay=-1.0),
        lambda g: g.update(lr="fast"),
    ],
    ids=["negative-lr", "negative-decay", "str-lr"],
)
def test_a_state_dict_with_a_bad_group_is_refused_and_changes_nothing(name, corrupt):
    params, opt = _stepped(name)
    sd = opt.state_dict()
    corrupt(sd["param_groups"][1])
    target = _grouped(name, [fg.Tensor(p.numpy(), requires_grad=True) for p in params])
    before = [dict(g) for g in target.param_groups]
    with pytest.raises((ValueError, TypeError)):
        target.load_state_dict(sd)
    assert target.param_groups == before and not target.state


def test_a_state_dict_may_hold_lr_zero_where_a_schedule_ended_and_may_lack_new_keys():
    params, opt = _stepped("SGD")
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.0  # CosineAnnealingLR(eta_min=0) at T_max
    del sd["param_groups"][1]["dampening"]  # written before the key existed
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.0
    assert opt.param_groups[1]["dampening"] == 0.0
    before = [p.numpy() for p in params[:2]]
    for p in params:
        p.grad = np.ones(p.shape, dtype=np.float32)
    opt.step()
    for p, b in zip(params[:2], before):
        np.testing.assert_array_equal(p.numpy(), b)  # lr 0 leaves group 0 where it was
