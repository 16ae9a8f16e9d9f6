"""Optimizers and schedulers against NumPy re-implementations of PyTorch's documented
algorithms (torch.optim), plus parameter groups, state dicts and argument checking."""

import math

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg
from ferrograd import _core
from ferrograd.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    RMSprop,
    StepLR,
    lr_scheduler,
)

DTYPES = ["float32", "float64"]
TOL = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}
SHAPES = [(3, 4), (4,)]


def _problem(dtype, seed=0, steps=3):
    """Initial values and per-step gradients for a weight and a bias."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    np_dtype = np.dtype(dtype)
    init = [x.astype(np_dtype) for x in init]
    grads = [[g.astype(np_dtype) for g in gs] for gs in grads]
    return init, grads


def _run(make_optimizer, dtype, seed=0, steps=3):
    init, grads = _problem(dtype, seed, steps)
    params = [fg.Tensor(x, requires_grad=True) for x in init]
    opt = make_optimizer(params)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    return params, init, grads


# NumPy references, written from the pseudo-code in PyTorch's documentation.


def sgd_reference(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p = p.astype(np.float64)
    buf = None
    for g in grads:
        g = g.astype(np.float64)
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def adam_reference(p, grads, lr, betas, eps, weight_decay, decoupled):
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    beta1, beta2 = betas
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def rmsprop_reference(p, grads, lr, alpha, eps, weight_decay, momentum, centered):
    p = p.astype(np.float64)
    v = np.zeros_like(p)
    buf = np.zeros_like(p)
    g_avg = np.zeros_like(p)
    for g in grads:
        g = g.astype(np.float64)
        if weight_decay:
            g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        v_tilde = v
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            v_tilde = v - g_avg * g_avg
        denom = np.sqrt(v_tilde) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom
    return p


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.2, "nesterov": True},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "options", SGD_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
def test_sgd_matches_the_documented_algorithm_for_three_steps(options, dtype):
    params, init, grads = _run(lambda ps: SGD(ps, **options), dtype)
    for k, p in enumerate(params):
        want = sgd_reference(init[k], [gs[k] for gs in grads], **options)
        assert_close(p, want, dtype=dtype, **TOL[dtype])


ADAM_CASES = [
    (Adam, {}),
    (Adam, {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    (AdamW, {}),
    (AdamW, {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.3}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cls, options", ADAM_CASES, ids=[f"{c.__name__}{i}" for i, (c, _) in enumerate(ADAM_CASES)]
)
def test_adam_and_adamw_match_the_documented_algorithm_for_three_steps(cls, options, dtype):
    params, init, grads = _run(lambda ps: cls(ps, **options), dtype)
    full = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 1e-2 if cls is AdamW else 0.0,
        **options,
    }
    for k, p in enumerate(params):
        want = adam_reference(init[k], [gs[k] for gs in grads], decoupled=cls is AdamW, **full)
        assert_close(p, want, dtype=dtype, **TOL[dtype])


RMSPROP_CASES = [
    {},
    {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.1},
    {"lr": 0.01, "momentum": 0.9},
    {"lr": 0.01, "centered": True},
    {
        "lr": 0.005,
        "alpha": 0.8,
        "eps": 1e-6,
        "weight_decay": 0.05,
        "momentum": 0.5,
        "centered": True,
    },
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", RMSPROP_CASES, ids=lambda o: "-".join(o) or "defaults")
def test_rmsprop_matches_the_documented_algorithm_for_three_steps(options, dtype):
    params, init, grads = _run(lambda ps: RMSprop(ps, **options), dtype)
    full = {
        "lr": 1e-2,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        **options,
    }
    tol = TOL[dtype]
    if options.get("centered") and dtype == "float32":
        # √(v − ḡ²) cancels digits in float32.
        tol = {"rtol": 1e-4, "atol": 1e-5}
    for k, p in enumerate(params):
        want = rmsprop_reference(init[k], [gs[k] for gs in grads], **full)
        assert_close(p, want, dtype=dtype, **tol)


def test_a_hand_computed_sgd_momentum_step_sequence():
    # p = 1, grads 1, 1, 1; lr 0.1, momentum 0.9:
    # buf 1 → p 0.9; buf 1.9 → p 0.71; buf 2.71 → p 0.439
    p = fg.Tensor([1.0], requires_grad=True, dtype="float64")
    opt = SGD([p], lr=0.1, momentum=0.9)
    seen = []
    for _ in range(3):
        p.grad = [1.0]
        opt.step()
        seen.append(p.item())
    assert seen == pytest.approx([0.9, 0.71, 0.439], abs=1e-15)


def test_adam_first_step_moves_by_lr_against_the_sign_of_the_gradient():
    p = fg.Tensor([1.0, -1.0], requires_grad=True, dtype="float64")
    opt = Adam([p], lr=0.1, eps=0.0)
    p.grad = [5.0, -0.001]
    opt.step()
    assert_close(p, [0.9, -0.9])


def test_state_buffers_are_tensors_of_the_parameters_dtype_and_shape():
    for dtype in DTYPES:
        p = fg.zeros(2, 3, dtype=dtype, requires_grad=True)
        opt = RMSprop([p], momentum=0.9, centered=True)
        p.grad = np.ones((2, 3))
        opt.step()
        state = opt.state[p]
        assert state["step"] == 1
        for name in ("square_avg", "momentum_buffer", "grad_avg"):
            assert isinstance(state[name], fg.Tensor)
            assert state[name].dtype == dtype and state[name].shape == (2, 3)
        assert p.dtype == dtype


def test_a_training_loop_through_autograd_reaches_the_minimum():
    fg.manual_seed(0)
    target = fg.Tensor([[1.0, -2.0], [3.0, 0.5]])
    w = fg.randn(2, 2, requires_grad=True)
    opt = Adam([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        opt.step()
    assert_close(w, target, atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_parameters_update_like_the_reference(dtype):
    rng = np.random.default_rng(3)
    init = rng.standard_normal(200_003).astype(dtype)
    grads = [rng.standard_normal(init.shape).astype(dtype) for _ in range(3)]
    p = fg.Tensor(init, requires_grad=True)
    opt = AdamW([p], lr=0.01, weight_decay=0.1)
    for g in grads:
        p.grad = g
        opt.step()
    want = adam_reference(init, grads, 0.01, (0.9, 0.999), 1e-8, 0.1, decoupled=True)
    assert_close(p, want, **TOL[dtype])


# -- grads, groups, closures ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: Adam(ps),
        lambda ps: AdamW(ps),
        lambda ps: RMSprop(ps, momentum=0.5, centered=True),
    ],
    ids=["SGD", "Adam", "AdamW", "RMSprop"],
)
def test_step_skips_parameters_whose_grad_is_none(make):
    a = fg.Tensor([1.0, 2.0], requires_grad=True)
    b = fg.Tensor([3.0, 4.0], requires_grad=True)
    opt = make([a, b])
    a.grad = [0.5, 0.5]
    opt.step()
    assert_close(b, [3.0, 4.0])
    assert not opt.state.get(b)
    assert not np.allclose(a.numpy(), [1.0, 2.0])


def test_zero_grad_sets_grads_to_none_or_to_zeros():
    a = fg.Tensor([1.0, 2.0], requires_grad=True)
    b = fg.Tensor([3.0], requires_grad=True)
    opt = SGD([a, b], lr=0.1)
    a.grad = [1.0, 1.0]
    b.grad = [1.0]
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = [1.0, 1.0]
    opt.zero_grad(set_to_none=False)
    assert_close(a.grad, [0.0, 0.0])
    assert b.grad is None


def test_parameter_groups_use_their_own_hyper_parameters():
    a = fg.Tensor([1.0], requires_grad=True, dtype="float64")
    b = fg.Tensor([1.0], requires_grad=True, dtype="float64")
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[0]["momentum"] == 0.0
    for _ in range(2):
        a.grad = [1.0]
        b.grad = [1.0]
        opt.step()
    assert a.item() == pytest.approx(1 - 0.1 - 0.1)
    assert b.item() == pytest.approx(1 - 0.5 - 0.5 * 1.9)


def test_add_param_group_and_generators_of_parameters():
    a = fg.Tensor([1.0], requires_grad=True)
    b = fg.Tensor([1.0], requires_grad=True)
    opt = Adam(p for p in [a])
    opt.add_param_group({"params": b, "lr": 0.5})
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})


def test_step_returns_the_closures_loss():
    p = fg.Tensor([2.0], requires_grad=True)
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0
    assert p.item() == pytest.approx(1.0)


def test_repr_lists_each_group_like_pytorch():
    opt = SGD([fg.Tensor([1.0], requires_grad=True)], lr=0.1)
    text = repr(opt)
    assert text.startswith("SGD (\nParameter Group 0\n")
    assert "    lr: 0.1" in text and text.endswith(")")


# -- state dicts -----------------------------------------------------------------------------

OPTIMIZERS = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
    lambda ps: AdamW(ps, lr=0.01),
    lambda ps: RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
]
OPTIMIZER_IDS = ["SGD", "SGD-nesterov", "Adam", "AdamW", "RMSprop"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_a_reloaded_optimizer_continues_exactly_like_the_original(make, dtype):
    init, grads = _problem(dtype, seed=1, steps=5)
    original = [fg.Tensor(x, requires_grad=True) for x in init]
    opt = make(original)
    for gs in grads[:2]:
        for p, g in zip(original, gs):
            p.grad = g
        opt.step()
    saved = opt.state_dict()
    copies = [fg.Tensor(p.numpy(), requires_grad=True) for p in original]
    reloaded = make(copies)
    reloaded.load_state_dict(saved)
    for gs in grads[2:]:
        for ps in (original, copies):
            for p, g in zip(ps, gs):
                p.grad = g
        opt.step()
        reloaded.step()
    for a, b in zip(original, copies):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_dict_has_pytorchs_layout_and_holds_copies():
    a = fg.Tensor([1.0, 2.0], requires_grad=True)
    b = fg.Tensor([3.0], requires_grad=True)
    opt = Adam([{"params": [a]}, {"params": [b], "lr": 0.5}])
    a.grad = [1.0, 1.0]
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0]  # b had no grad: no state
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert sd["state"][0]["step"] == 1
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    before = sd["state"][0]["exp_avg"].numpy()
    a.grad = [1.0, 1.0]
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), before)


def test_load_state_dict_restores_hyper_parameters_and_casts_buffers():
    p = fg.Tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = [1.0, 1.0]
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.01
    sd["state"][0]["momentum_buffer"] = fg.Tensor([1.0, 1.0], dtype="float32")
    other = SGD([p], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.01
    assert other.state[p]["momentum_buffer"].dtype == "float64"


def _stepped_adam():
    p = fg.Tensor([1.0, 2.0], requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.grad = [1.0, 1.0]
    opt.step()
    return p, opt


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda sd: sd["param_groups"].append({"params": [], "lr": 1.0}), "group"),
        (lambda sd: sd["param_groups"][0]["params"].append(1), "parameter"),
        (lambda sd: sd["state"][0].update(exp_avg=fg.zeros(3)), "shape"),
        (lambda sd: sd["state"].update({7: {}}), "unknown parameter"),
        (lambda sd: sd.pop("state"), "state"),
    ],
    ids=["groups", "params", "shape", "index", "missing"],
)
def test_a_bad_state_dict_raises_value_error_and_changes_nothing(corrupt, message):
    p, opt = _stepped_adam()
    target = Adam([p], lr=0.7)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.3
    corrupt(sd)
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(sd)
    assert target.param_groups[0]["lr"] == 0.7
    assert not target.state


# -- argument checking -----------------------------------------------------------------------


def _param():
    return fg.Tensor([1.0], requires_grad=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD([_param()], lr=0.0),
        lambda: SGD([_param()], lr=-0.1),
        lambda: SGD([_param()], lr=float("nan")),
        lambda: SGD([_param()], lr=0.1, momentum=-0.5),
        lambda: SGD([_param()], lr=0.1, weight_decay=-1e-4),
        lambda: SGD([_param()], lr=0.1, nesterov=True),
        lambda: SGD([_param()], lr=0.1, momentum=0.9, dampening=0.5, nesterov=True),
        lambda: SGD([{"params": [_param()], "lr": -1.0}], lr=0.1),
        lambda: SGD([], lr=0.1),
        lambda: Adam([_param()], lr=0.0),
        lambda: Adam([_param()], betas=(1.0, 0.999)),
        lambda: Adam([_param()], betas=(0.9, -0.1)),
        lambda: Adam([_param()], betas=(0.9,)),
        lambda: Adam([_param()], eps=-1e-8),
        lambda: Adam([_param()], weight_decay=-0.1),
        lambda: AdamW([_param()], lr=-1e-3),
        lambda: RMSprop([_param()], lr=0.0),
        lambda: RMSprop([_param()], alpha=-0.1),
        lambda: RMSprop([_param()], momentum=-0.1),
        lambda: RMSprop([_param()], eps=-1.0),
        lambda: RMSprop([_param()], weight_decay=-1.0),
    ],
)
def test_bad_hyper_parameters_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_parameters_must_be_tensors_in_an_iterable():
    with pytest.raises(TypeError):
        SGD(_param(), lr=0.1)
    with pytest.raises(TypeError):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError):
        SGD(3, lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        p = _param()
        SGD([p, p], lr=0.1)


def test_the_kernels_check_their_arguments():
    p = fg.Tensor([1.0, 2.0], requires_grad=True)
    m, v = fg.zeros(2), fg.zeros(2)
    with pytest.raises(RuntimeError, match="gradient"):
        _core.adam_step(p, m, v, 1, 0.1)
    p.grad = [1.0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        _core.adam_step(p, m, fg.zeros(3), 1, 0.1)
    with pytest.raises(ValueError, match="share memory"):
        _core.adam_step(p, m, m, 1, 0.1)
    with pytest.raises(ValueError, match="share memory"):
        _core.adam_step(p, m, p.grad, 1, 0.1)
    with pytest.raises(TypeError):
        _core.sgd_step(np.zeros(2), None, 0.1)
    with pytest.raises(ValueError):
        _core.sgd_step(p, None, 0.1, momentum=0.9)
    assert_close(p, [1.0, 2.0])
    # NdArray buffers are accepted and updated in place.
    buf = fg.NdArray([0.0, 0.0])
    _core.sgd_step(p, buf, 0.1, momentum=0.9, first_step=True)
    assert_close(buf, [1.0, 1.0])
    assert_close(p, [0.9, 1.9])


# -- schedulers ------------------------------------------------------------------------------


def _optimizer(*lrs):
    return SGD([{"params": [_param()], "lr": lr} for lr in lrs], lr=1.0)


def test_step_lr_follows_pytorchs_formula():
    opt = _optimizer(0.1, 1.0)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    seen = [sched.get_last_lr()]
    for _ in range(10):
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr())
    want = [[base * 0.5 ** (e // 3) for base in (0.1, 1.0)] for e in range(11)]
    np.testing.assert_allclose(seen, want, rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == seen[-1]


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_follows_pytorchs_formula_past_t_max(eta_min):
    opt = _optimizer(0.1, 0.5)
    sched = CosineAnnealingLR(opt, T_max=10, eta_min=eta_min)
    seen = [sched.get_last_lr()]
    for _ in range(25):
        sched.step()
        seen.append(sched.get_last_lr())
    want = [
        [eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / 10)) / 2 for base in (0.1, 0.5)]
        for e in range(26)
    ]
    np.testing.assert_allclose(seen, want, rtol=1e-9, atol=1e-15)
    assert seen[10] == pytest.approx([eta_min, eta_min], abs=1e-15)


def test_step_with_an_epoch_jumps_to_the_closed_form():
    opt = _optimizer(1.0)
    sched = CosineAnnealingLR(opt, T_max=4)
    sched.step(2)
    assert sched.get_last_lr() == pytest.approx([0.5])
    step = StepLR(_optimizer(1.0), step_size=2, gamma=0.1)
    step.step(5)
    assert step.get_last_lr() == pytest.approx([0.01])


@pytest.mark.parametrize(
    "make",
    [lambda o: StepLR(o, step_size=2, gamma=0.3), lambda o: CosineAnnealingLR(o, 7, 0.001)],
    ids=["StepLR", "CosineAnnealingLR"],
)
def test_a_reloaded_scheduler_continues_identically(make):
    opt_a = _optimizer(0.2)
    a = make(opt_a)
    for _ in range(4):
        a.step()
    opt_b = _optimizer(0.2)
    opt_b.load_state_dict(opt_a.state_dict())
    b = make(opt_b)
    b.load_state_dict(a.state_dict())
    assert "optimizer" not in a.state_dict()
    for _ in range(6):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()
    assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]


def test_schedulers_check_their_arguments():
    with pytest.raises(ValueError):
        StepLR(_optimizer(0.1), step_size=0)
    with pytest.raises(ValueError):
        CosineAnnealingLR(_optimizer(0.1), T_max=0)
    with pytest.raises(TypeError):
        StepLR(object(), step_size=1)


def test_schedulers_are_reachable_like_torchs():
    assert fg.optim.StepLR is lr_scheduler.StepLR
    assert fg.optim.lr_scheduler.CosineAnnealingLR is CosineAnnealingLR
