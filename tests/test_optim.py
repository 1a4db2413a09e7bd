"""Optimizers (SGD, Adagrad, Adam, AdamW) and learning-rate schedules, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xprnn.backend import to_numpy
from xprnn.optim import SGD, Adagrad, Adam, AdamW, cosine_decay, step_decay

from ._helpers import other_backend, rel_error


def _run(opt, p0, grads, asarray):
    """Apply ``opt`` to ``{"w": p0}`` with each gradient in turn; the final ``w`` in NumPy."""
    params = {"w": asarray(np.asarray(p0, dtype=np.float64))}
    for g in grads:
        params = opt.step(params, {"w": asarray(np.asarray(g, dtype=np.float64))})
    return to_numpy(params["w"])


# -- one or two steps worked out by hand -------------------------------------------------------


def test_sgd_by_hand(xp, asarray):
    out = _run(SGD(lr=0.1), [1.0, -2.0], [[0.5, 0.25]], asarray)
    np.testing.assert_allclose(out, [0.95, -2.025], rtol=1e-15)


def test_sgd_momentum_dampening_by_hand(xp, asarray):
    # b1 = g1 = [1, -2] (no dampening on the first step): p1 = [-0.1, 0.2]
    # b2 = 0.9 b1 + 0.5 g2 = [1.15, -1.55]:              p2 = [-0.215, 0.355]
    opt = SGD(lr=0.1, momentum=0.9, dampening=0.5)
    out = _run(opt, [0.0, 0.0], [[1.0, -2.0], [0.5, 0.5]], asarray)
    np.testing.assert_allclose(out, [-0.215, 0.355], rtol=1e-14)


def test_sgd_nesterov_weight_decay_by_hand(xp, asarray):
    # step 1: d = g + 0.1 p = [0.6, 0.4]; b = d; d + 0.9 b = [1.14, 0.76]; p = [0.886, -1.076]
    # step 2: d = [0.0886, 0.8924]; b = 0.9 [0.6, 0.4] + d = [0.6286, 1.2524];
    #         d + 0.9 b = [0.65434, 2.01956];                p = [0.820566, -1.277956]
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    out = _run(opt, [1.0, -1.0], [[0.5, 0.5], [0.0, 1.0]], asarray)
    np.testing.assert_allclose(out, [0.820566, -1.277956], rtol=1e-13)


def test_adagrad_by_hand(xp, asarray):
    # step 1: s = [9, 16], p -= 0.1 * [3/3, -4/4]          -> [0.9, 2.1]
    # step 2: s = [25, 25], lr = 0.1 / (1 + 0.5), p -= lr * [4/5, 3/5] -> [0.84666.., 2.06]
    opt = Adagrad(lr=0.1, lr_decay=0.5, eps=0.0)
    out = _run(opt, [1.0, 2.0], [[3.0, -4.0], [4.0, 3.0]], asarray)
    np.testing.assert_allclose(out, [0.9 - 0.8 / 15, 2.06], rtol=1e-14)


def test_adagrad_weight_decay_initial_accumulator_by_hand(xp, asarray):
    # g = 2 + 0.5 * 2 = 3; s = 7 + 9 = 16; p = 2 - 0.1 * 3 / 4 = 1.925
    opt = Adagrad(lr=0.1, weight_decay=0.5, initial_accumulator_value=7.0, eps=0.0)
    np.testing.assert_allclose(_run(opt, [2.0], [[2.0]], asarray), [1.925], rtol=1e-15)


def test_adam_by_hand(xp, asarray):
    # betas (0.5, 0.75), lr 0.1, eps 0. Step 1 (bias corrections 0.5, 0.25):
    #   m = [1, -0.25], v = [1, 0.0625], p -= 0.2 * m / (sqrt(v) / 0.5) -> [0.9, -2.9]
    # Step 2 (bias corrections 0.75, 0.4375): m = [-0.5, 0.625], v = [1.75, 0.609375]
    opt = Adam(lr=0.1, betas=(0.5, 0.75), eps=0.0)
    out = _run(opt, [1.0, -3.0], [[2.0, -0.5], [-2.0, 1.5]], asarray)
    step2 = (0.1 / 0.75) * np.array([-0.5, 0.625]) / (np.sqrt([1.75, 0.609375]) / np.sqrt(0.4375))
    np.testing.assert_allclose(out, np.array([0.9, -2.9]) - step2, rtol=1e-14)
    assert abs(out[0] - (0.9 + 0.1 / 3)) < 1e-14  # sqrt(1.75 / 0.4375) = 2 exactly


def test_adam_l2_versus_adamw_decoupled_by_hand(xp, asarray):
    # First Adam step with eps = 0 moves by lr * sign(g).
    # Adam (L2): g = 1 + 0.5 * 2 = 2 -> p = 2 - 0.1 = 1.9
    # AdamW:     p = 2 * (1 - 0.1 * 0.5) = 1.9, then the Adam step on g = 1 -> 1.8
    adam = Adam(lr=0.1, eps=0.0, weight_decay=0.5)
    adamw = AdamW(lr=0.1, eps=0.0, weight_decay=0.5)
    np.testing.assert_allclose(_run(adam, [2.0], [[1.0]], asarray), [1.9], rtol=1e-15)
    np.testing.assert_allclose(_run(adamw, [2.0], [[1.0]], asarray), [1.8], rtol=1e-15)
    assert AdamW().weight_decay == 1e-2 and Adam().weight_decay == 0.0


# -- against torch.optim, step for step --------------------------------------------------------

SHAPES = {"weight": (3, 4), "bias": (5,)}
CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("Adagrad", {"lr": 0.1}),
    (
        "Adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.05,
            "weight_decay": 0.1,
            "initial_accumulator_value": 0.5,
            "eps": 1e-8,
        },
    ),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.02, "betas": (0.7, 0.95), "weight_decay": 0.3}),
]
OURS = {"SGD": SGD, "Adagrad": Adagrad, "Adam": Adam, "AdamW": AdamW}


def _torch_run(torch, name, kwargs, p0, grads, schedule=None):
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    opt = getattr(torch.optim, name)(list(tp.values()), **kwargs)
    sched = schedule(opt) if schedule is not None else None
    for g in grads:
        for k, t in tp.items():
            t.grad = None if g.get(k) is None else torch.tensor(g[k])
        opt.step()
        if sched is not None:
            sched.step()
    return {k: t.detach().numpy() for k, t in tp.items()}


def _sequence(seed=0, steps=20):
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(steps)]
    for t in (3, 4, 11):  # "bias" has no gradient on these steps: unchanged, state frozen
        if t < steps:
            grads[t]["bias"] = None
    return p0, grads


def _our_run(opt, p0, grads, asarray):
    params = {k: asarray(v) for k, v in p0.items()}
    for g in grads:
        params = opt.step(params, {k: (None if v is None else asarray(v)) for k, v in g.items()})
    return params


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=[f"{n}-{kw}" for n, kw in CONFIGS])
def test_matches_torch_optim(xp, asarray, name, kwargs):
    torch = pytest.importorskip("torch")
    p0, grads = _sequence()
    ref = _torch_run(torch, name, kwargs, p0, grads)
    ours = _our_run(OURS[name](**kwargs), p0, grads, asarray)
    for k in SHAPES:
        assert rel_error(ours[k], ref[k]) < 1e-12, k


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_schedules_match_torch_schedulers(xp, asarray, name):
    torch = pytest.importorskip("torch")
    from torch.optim import lr_scheduler

    p0, grads = _sequence(seed=1)
    kw = {"momentum": 0.9} if name == "SGD" else {}
    cases = [
        (step_decay(0.1, 4, 0.5), lambda o: lr_scheduler.StepLR(o, step_size=4, gamma=0.5)),
        (
            cosine_decay(0.1, 20, min_lr=0.01),
            lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01),
        ),
    ]
    for ours_lr, torch_sched in cases:
        ref = _torch_run(torch, name, {"lr": 0.1, **kw}, p0, grads, schedule=torch_sched)
        ours = _our_run(OURS[name](lr=ours_lr, **kw), p0, grads, asarray)
        for k in SHAPES:
            assert rel_error(ours[k], ref[k]) < 1e-12, k


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: SGD(0.1, momentum=0.9), lambda: Adam(0.1), lambda: Adagrad(0.1), lambda: AdamW(0.1)],
)
def test_new_dict_inputs_untouched_missing_grads(xp, asarray, make):
    opt = make()
    a_np, b_np, g_np = np.ones((2, 3)), np.full(4, 2.0), np.full((2, 3), 0.5)
    params = {"a": asarray(a_np), "b": asarray(b_np)}
    grads = {"a": asarray(g_np)}
    new = opt.step(params, grads)
    assert new is not params and set(new) == {"a", "b"}
    np.testing.assert_array_equal(to_numpy(params["a"]), a_np)  # inputs not mutated
    np.testing.assert_array_equal(to_numpy(grads["a"]), g_np)
    assert new["b"] is params["b"] and "b" not in opt.state  # no gradient: untouched, no state
    assert np.all(to_numpy(new["a"]) < 1.0)
    new2 = opt.step(new, {"a": None, "b": asarray(np.ones(4))})
    assert new2["a"] is new["a"] and opt.step_count == 2


def test_state_dict_resume(xp, asarray):
    p0, grads = _sequence(seed=2, steps=10)
    full = _our_run(Adam(0.05, weight_decay=0.1), p0, grads, asarray)
    first = Adam(0.05, weight_decay=0.1)
    mid = _our_run(first, p0, grads[:6], asarray)
    second = Adam(0.05, weight_decay=0.1).load_state_dict(first.state_dict())
    assert second.step_count == 6
    params = mid
    for g in grads[6:]:
        params = second.step(params, {k: (None if v is None else asarray(v)) for k, v in g.items()})
    for k in SHAPES:
        np.testing.assert_array_equal(to_numpy(params[k]), to_numpy(full[k]))


def test_callable_lr_counts_steps_from_zero(xp, asarray):
    seen = []

    def lr(step):
        seen.append(step)
        return 0.1 * (step + 1)

    # p = 1 - 0.1 * 1 - 0.2 * 1 - 0.3 * 1 = 0.4
    out = _run(SGD(lr), [1.0], [[1.0]] * 3, asarray)
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(out, [0.4], rtol=1e-14)


def test_step_errors(xp, asarray):
    opt = SGD(0.1)
    p = {"w": asarray(np.ones(3))}
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(2,\)"):
        opt.step(p, {"w": asarray(np.ones(2))})
    with pytest.raises(KeyError, match="unknown parameters"):
        opt.step(p, {"v": asarray(np.ones(3))})
    with pytest.raises(ValueError, match="Invalid learning rate at step 0: -1"):
        SGD(lambda step: -1.0).step(p, {"w": asarray(np.ones(3))})
    other = other_backend(xp)
    with pytest.raises(TypeError, match="different backends"):
        opt.step(p, {"w": other.asarray(np.ones(3))})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGD(-0.1), "Invalid learning rate: -0.1"),
        (lambda: SGD(float("nan")), "Invalid learning rate: nan"),
        (lambda: SGD("0.1"), "Invalid learning rate: 0.1"),
        (lambda: SGD(0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
        (lambda: SGD(0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
        (lambda: SGD(0.1, nesterov=True), "Nesterov momentum requires a momentum"),
        (lambda: SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
        (lambda: Adagrad(lr_decay=-0.1), "Invalid lr_decay value"),
        (lambda: Adagrad(initial_accumulator_value=-1), "Invalid initial_accumulator_value"),
        (lambda: Adagrad(eps=-1e-10), "Invalid epsilon value"),
        (lambda: Adam(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
        (lambda: Adam(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
        (lambda: Adam(betas=0.9), "Invalid betas"),
        (lambda: Adam(eps=-1.0), "Invalid epsilon value"),
        (lambda: AdamW(weight_decay=-0.01), "Invalid weight_decay value"),
        (lambda: step_decay(0.1, 0), "Invalid step_size"),
        (lambda: step_decay(-0.1, 3), "Invalid learning rate"),
        (lambda: cosine_decay(0.1, 0), "Invalid total_steps"),
        (lambda: cosine_decay(0.1, 10, warmup=10), "Invalid warmup"),
        (lambda: cosine_decay(0.1, 10, min_lr=0.2), "Invalid min_lr"),
    ],
)
def test_bad_hyperparameters_raise_at_once(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- schedules ---------------------------------------------------------------------------------


def test_step_decay_values():
    s = step_decay(0.1, 3, gamma=0.5)
    assert [s(t) for t in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])


def test_cosine_decay_values():
    s = cosine_decay(1.0, 12, warmup=2, min_lr=0.1)
    assert s(0) == pytest.approx(0.5) and s(1) == pytest.approx(1.0)  # warm-up: (t + 1) / 2
    assert s(2) == pytest.approx(1.0)  # start of the cosine
    assert s(7) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert s(12) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)
    assert s(4) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 2 / 10)) / 2)
