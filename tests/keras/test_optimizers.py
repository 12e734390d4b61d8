"""Optimizers: the emitted update, run on the reference interpreter and compiled, against float64
numpy transcriptions of Keras 3's formulas; schedules against their formulas; lookup, configs,
clipping, weight decay and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile import keras
from nncompile.ir import Builder, f32
from nncompile.keras import optimizers
from nncompile.keras.layers.base import Variable
from nncompile.keras.optimizers import schedules
from nncompile.runtime.reference import Interpreter

SHAPES = [(), (7,), (3, 5), (2, 3, 3, 4)]
STEPS = 5
# float32 tolerance: Keras's own float32 bias corrections (1 - 0.999**t) lose ~1e-5 to cancellation
TOLERANCE = {"rtol": 2e-5, "atol": 1e-5}


# ---- Keras 3's update rules in float64 numpy: state maps slot kind -> array ---------------------
def sgd(c, w, g, s, lr, t):
    momentum = c.get("momentum", 0.0)
    if momentum == 0:
        return w - lr * g
    s["momentum"] = momentum * s["momentum"] - lr * g
    return w + (momentum * s["momentum"] - lr * g if c.get("nesterov") else s["momentum"])


def adam(c, w, g, s, lr, t):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    s["momentum"] = b1 * s["momentum"] + (1 - b1) * g
    s["velocity"] = b2 * s["velocity"] + (1 - b2) * g * g
    v = s["velocity"]
    if c.get("amsgrad"):
        v = s["velocity_hat"] = np.maximum(s["velocity_hat"], v)
    step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - step_size * s["momentum"] / (np.sqrt(v) + eps)


def rmsprop(c, w, g, s, lr, t):
    rho, momentum, eps = c.get("rho", 0.9), c.get("momentum", 0.0), c.get("epsilon", 1e-7)
    s["velocity"] = rho * s["velocity"] + (1 - rho) * g * g
    mean_square = s["velocity"]
    if c.get("centered"):
        s["average_gradient"] = rho * s["average_gradient"] + (1 - rho) * g
        mean_square = mean_square - s["average_gradient"] ** 2
    increment = lr * g / np.sqrt(mean_square + eps)
    if momentum > 0:
        s["momentum"] = momentum * s["momentum"] + increment
        return w - s["momentum"]
    return w - increment


def adagrad(c, w, g, s, lr, t):
    s["accumulator"] = s["accumulator"] + g * g
    return w - lr * g / np.sqrt(s["accumulator"] + c.get("epsilon", 1e-7))


def adadelta(c, w, g, s, lr, t):
    rho, eps = c.get("rho", 0.95), c.get("epsilon", 1e-7)
    s["accumulated_grad"] = rho * s["accumulated_grad"] + (1 - rho) * g * g
    delta = -np.sqrt(s["accumulated_delta_var"] + eps) / np.sqrt(s["accumulated_grad"] + eps) * g
    s["accumulated_delta_var"] = rho * s["accumulated_delta_var"] + (1 - rho) * delta * delta
    return w + lr * delta


def adamax(c, w, g, s, lr, t):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    s["momentum"] = b1 * s["momentum"] + (1 - b1) * g
    s["norm"] = np.maximum(b2 * s["norm"], np.abs(g))
    return w - lr / (1 - b1 ** t) * s["momentum"] / (s["norm"] + eps)


def nadam(c, w, g, s, lr, t, cache):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    mu_t, mu_next = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
    product_t = cache["u_product"]                       # includes mu_t already
    s["momentum"] = b1 * s["momentum"] + (1 - b1) * g
    s["velocity"] = b2 * s["velocity"] + (1 - b2) * g * g
    m_hat = mu_next * s["momentum"] / (1 - product_t * mu_next) + (1 - mu_t) * g / (1 - product_t)
    v_hat = s["velocity"] / (1 - b2 ** t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps)


RULES = {"SGD": sgd, "Adam": adam, "AdamW": adam, "RMSprop": rmsprop, "Adagrad": adagrad, "Adadelta": adadelta,
         "Adamax": adamax, "Nadam": nadam}


def slot_kinds(cls_name, c):
    if cls_name == "SGD":
        return ["momentum"] if c.get("momentum", 0) else []
    if cls_name in ("Adam", "AdamW"):
        return ["momentum", "velocity"] + (["velocity_hat"] if c.get("amsgrad") else [])
    if cls_name == "RMSprop":
        return (["velocity"] + (["momentum"] if c.get("momentum", 0) > 0 else [])
                + (["average_gradient"] if c.get("centered") else []))
    return {"Adagrad": ["accumulator"], "Adadelta": ["accumulated_grad", "accumulated_delta_var"],
            "Adamax": ["momentum", "norm"], "Nadam": ["momentum", "velocity"]}[cls_name]


def clip(c, grads):
    if c.get("clipnorm"):
        return [g * c["clipnorm"] / max(np.sqrt((g * g).sum()), c["clipnorm"]) for g in grads]
    if c.get("global_clipnorm"):
        norm = math.sqrt(sum((g * g).sum() for g in grads))
        return [g * min(1.0, c["global_clipnorm"] / norm) for g in grads]
    if c.get("clipvalue"):
        return [np.clip(g, -c["clipvalue"], c["clipvalue"]) for g in grads]
    return grads


class KerasTwin:
    """The float64 numpy optimizer the compiled step is compared with."""

    def __init__(self, cls_name, config, weights, schedule=None):
        self.rule = RULES[cls_name]
        initial = {"accumulator": config.get("initial_accumulator_value", 0.1)}
        self.cls_name, self.c, self.schedule = cls_name, config, schedule
        self.w = [w.astype(np.float64) for w in weights]
        self.state = [{k: np.full(w.shape, initial.get(k, 0.0)) for k in slot_kinds(cls_name, config)}
                      for w in weights]
        self.cache = {"u_product": 1.0}
        self.weight_decay = config.get("weight_decay", 0.004 if cls_name == "AdamW" else None)

    def step(self, grads, t):
        lr = self.schedule(t - 1) if self.schedule else self.c.get("learning_rate", 0.001)
        grads = clip(self.c, [g.astype(np.float64) for g in grads])
        b1 = self.c.get("beta_1", 0.9)
        self.cache["u_product"] *= b1 * (1 - 0.5 * 0.96 ** t)
        for i, g in enumerate(grads):
            w = self.w[i]
            if self.weight_decay is not None:
                w = w - w * self.weight_decay * lr
            extra = (self.cache,) if self.cls_name == "Nadam" else ()
            self.w[i] = self.rule(self.c, w, g, self.state[i], lr, t, *extra)


def variables(rng, shapes=SHAPES):
    return [Variable(rng.standard_normal(s).astype(np.float32), "kernel", f"layer_{i}/kernel")
            for i, s in enumerate(shapes)]


def step_graph(opt, variables):
    """The update part of a training step: gradients, lr and step are the data inputs."""
    b = Builder()
    pairs = [(b.param(v.path, v.value), b.input(f"grad_{i}", f32[v.shape]))
             for i, v in enumerate(variables)]
    slots = {name: b.param(name, array) for name, array in opt.slots()}
    lr, step = b.input("lr", f32[()]), b.input("step", f32[()])
    opt.emit_apply(b, pairs, slots, lr, step)
    return b.finish([], [])


def run_steps(cls_name, config, run, shapes=SHAPES, seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    vs = variables(rng, shapes)
    opt = getattr(optimizers, cls_name)(**config)
    twin = KerasTwin(cls_name, config, [v.value for v in vs],
                     schedule=config["learning_rate"] if callable(config.get("learning_rate")) else None)
    opt.build(vs)
    graph = step_graph(opt, vs)
    runner = nncompile.compile(graph) if run == "compiled" else Interpreter(graph)
    slots = dict(opt.slots())
    for t in range(1, steps + 1):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in vs]
        runner.run({**{f"grad_{i}": g for i, g in enumerate(grads)},
                    "lr": np.float32(opt.current_learning_rate()), "step": np.float32(t)})
        opt.iterations += 1
        twin.step(grads, t)
        for i, v in enumerate(vs):
            np.testing.assert_allclose(v.value, twin.w[i], **TOLERANCE,
                                       err_msg=f"{cls_name} {config} step {t} variable {i}")
            for kind, want in twin.state[i].items():
                got = slots[f"{opt.name}/layer_{i}_kernel_{kind}"]
                np.testing.assert_allclose(got, want, **TOLERANCE,
                                           err_msg=f"{cls_name} {config} step {t} slot {kind} of {i}")
    return opt, vs


CASES = [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.1, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    ("Adam", {"learning_rate": 0.1, "amsgrad": True}),
    ("AdamW", {"learning_rate": 0.1}),
    ("AdamW", {"learning_rate": 0.1, "weight_decay": 0.5, "amsgrad": True}),
    ("RMSprop", {"learning_rate": 0.01}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "rho": 0.8}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 1.0, "epsilon": 1e-2}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adadelta", {"learning_rate": 1.0, "rho": 0.5, "epsilon": 1e-3}),
    ("Adamax", {"learning_rate": 0.1}),
    ("Nadam", {"learning_rate": 0.1}),
    ("Nadam", {"learning_rate": 0.1, "beta_1": 0.5, "weight_decay": 0.1}),
    # gradient clipping and weight decay on any optimizer
    ("Adam", {"learning_rate": 0.1, "clipnorm": 1.0}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "global_clipnorm": 2.0}),
    ("RMSprop", {"learning_rate": 0.01, "clipvalue": 0.5}),
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.2}),
    ("Adamax", {"learning_rate": 0.1, "weight_decay": 0.1, "clipnorm": 0.5}),
    # learning rate schedules, evaluated at `iterations` in Python
    ("SGD", {"learning_rate": schedules.ExponentialDecay(0.5, decay_steps=2, decay_rate=0.5, staircase=True)}),
    ("Adam", {"learning_rate": schedules.CosineDecay(0.1, decay_steps=4, warmup_target=0.2, warmup_steps=2)}),
]


@pytest.mark.parametrize("run", ["interpreted", "compiled"])
@pytest.mark.parametrize("cls_name, config", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_steps_match_keras_formulas(cls_name, config, run):
    run_steps(cls_name, config, run)


@settings(max_examples=15, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 4), max_size=3).map(tuple), min_size=1, max_size=3),
       case=st.sampled_from([("Adam", {"learning_rate": 0.1, "amsgrad": True}),
                             ("RMSprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.3}),
                             ("Nadam", {"learning_rate": 0.1, "global_clipnorm": 1.0})]),
       seed=st.integers(0, 1000))
def test_random_shapes_match_keras_formulas(shapes, case, seed):
    run_steps(*case, "interpreted", shapes=shapes, seed=seed, steps=3)


def test_global_clipnorm_bounds_the_joint_norm_of_the_update():
    # SGD without momentum: the update is -lr * clipped gradient, so its joint norm is lr * 0.1.
    rng = np.random.default_rng(3)
    vs = variables(rng, [(4,), (2, 3)])
    before = [v.numpy() for v in vs]
    opt = optimizers.SGD(learning_rate=1.0, global_clipnorm=0.1)
    opt.apply([100 * rng.standard_normal(v.shape).astype(np.float32) for v in vs], vs)
    norm = math.sqrt(sum(((v.value - w) ** 2).sum() for v, w in zip(vs, before)))
    assert norm == pytest.approx(0.1, rel=1e-5)


def test_one_loop_per_variable_when_compiled():
    rng = np.random.default_rng(0)
    vs = variables(rng, [(3, 5), (8,), (2, 3, 3, 4)])
    opt = optimizers.Adam()
    opt.build(vs)
    exe = nncompile.compile(step_graph(opt, vs))
    big = [n for n in exe.graph.nodes if any(o.type.rank > 0 for o in n.outputs)]
    assert len(big) == len(vs)
    assert all(n.op == "fused" and len(n.outputs) == 3 for n in big)    # variable, m, v in one loop


def test_eager_apply_gradients_matches_keras_and_counts_iterations():
    rng = np.random.default_rng(1)
    vs = variables(rng, [(3,), (2, 2)])
    twin = KerasTwin("Nadam", {"learning_rate": 0.1}, [v.value for v in vs])
    opt = optimizers.Nadam(learning_rate=0.1)
    for t in (1, 2, 3):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in vs]
        assert opt.apply_gradients(zip(grads, vs)) == t
        twin.step(grads, t)
    for v, want in zip(vs, twin.w):
        np.testing.assert_allclose(v.value, want, rtol=2e-5, atol=2e-6)
    assert dict(opt.slots())["nadam/u_product"] == pytest.approx(twin.cache["u_product"], rel=1e-6)


def test_slot_names_and_order_follow_keras():
    vs = [Variable(np.zeros((2, 3), np.float32), "kernel", "dense/kernel"),
          Variable(np.zeros(3, np.float32), "bias", "dense/bias")]
    opt = optimizers.Adam(amsgrad=True)
    opt.build(vs)
    assert [name for name, _ in opt.slots()] == [
        "adam/dense_kernel_momentum", "adam/dense_bias_momentum", "adam/dense_kernel_velocity",
        "adam/dense_bias_velocity", "adam/dense_kernel_velocity_hat", "adam/dense_bias_velocity_hat"]
    adamax = optimizers.Adamax()
    adamax.build(vs)
    assert [name for name, _ in adamax.slots()] == [
        "adamax/dense_kernel_momentum", "adamax/dense_kernel_norm", "adamax/dense_bias_momentum",
        "adamax/dense_bias_norm"]
    adagrad = optimizers.Adagrad(initial_accumulator_value=0.25)
    adagrad.build(vs)
    for _, array in adagrad.slots():
        assert array.dtype == np.float32 and np.all(array == 0.25)
    sgd = optimizers.SGD()
    sgd.build(vs)
    assert sgd.slots() == []


def test_excluded_variables_get_no_weight_decay():
    kernel = Variable(np.ones((2, 2), np.float32), "kernel", "dense/kernel")
    bias = Variable(np.ones(2, np.float32), "bias", "dense/bias")
    opt = optimizers.SGD(learning_rate=0.5, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)], [kernel, bias])
    np.testing.assert_allclose(kernel.value, 1 - 0.1 * 0.5)
    np.testing.assert_allclose(bias.value, 1.0)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


def test_eager_apply_projects_constrained_variables():
    kernel = Variable(np.ones(3, np.float32), "kernel", "dense/kernel", constraint=lambda w: np.maximum(w, 0.5))
    optimizers.SGD(learning_rate=1.0).apply([np.array([0.2, 1.0, 2.0], np.float32)], [kernel])
    np.testing.assert_allclose(kernel.value, [0.8, 0.5, 0.5])


def test_a_missing_gradient_leaves_its_variable_alone_with_a_warning():
    rng = np.random.default_rng(2)
    vs = variables(rng, [(3,), (2,)])
    before = vs[1].numpy()
    opt = optimizers.SGD(learning_rate=0.1)
    opt.build(vs)
    b = Builder()
    p0, p1 = b.param("w0", vs[0].value), b.param("w1", vs[1].value)
    g0 = b.input("g0", f32[3])
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['layer_1/kernel'\]"):
        opt.emit_apply(b, [(p0, g0), (p1, None)], {}, b.input("lr", f32[()]), b.input("step", f32[()]))
    graph = b.finish([], [])
    assert set(graph.updates.values()) == {"w0"}
    Interpreter(graph).run({"g0": np.ones(3, np.float32), "lr": np.float32(0.1), "step": np.float32(1)})
    np.testing.assert_array_equal(vs[1].value, before)


# ---- schedules -------------------------------------------------------------------------------
STEPS_TO_CHECK = [0, 1, 3, 9, 10, 11, 25, 99, 100, 101, 1000]


@pytest.mark.parametrize("schedule, formula", [
    (schedules.ExponentialDecay(0.1, 10, 0.5), lambda s: 0.1 * 0.5 ** (s / 10)),
    (schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), lambda s: 0.1 * 0.5 ** (s // 10)),
    (schedules.PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1]),
     lambda s: 1.0 if s <= 10 else 0.5 if s <= 100 else 0.1),
    (schedules.CosineDecay(0.1, 100), lambda s: 0.1 * 0.5 * (1 + np.cos(np.pi * min(s, 100) / 100))),
    (schedules.CosineDecay(0.1, 100, alpha=0.2),
     lambda s: 0.1 * (0.8 * 0.5 * (1 + np.cos(np.pi * min(s, 100) / 100)) + 0.2)),
    (schedules.CosineDecay(0.0, 90, alpha=0.1, warmup_target=0.3, warmup_steps=10),
     lambda s: 0.3 * s / 10 if s < 10
     else 0.3 * (0.9 * 0.5 * (1 + np.cos(np.pi * (min(s, 100) - 10) / 90)) + 0.1)),
    (schedules.InverseTimeDecay(0.1, 10, 0.5), lambda s: 0.1 / (1 + 0.5 * s / 10)),
    (schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True), lambda s: 0.1 / (1 + 0.5 * (s // 10))),
    (schedules.PolynomialDecay(0.1, 100, 0.01, power=2.0),
     lambda s: (0.1 - 0.01) * (1 - min(s, 100) / 100) ** 2 + 0.01),
    (schedules.PolynomialDecay(0.1, 100, 0.01, cycle=True),
     lambda s: (0.1 - 0.01) * (1 - s / (100 * max(1, np.ceil(s / 100)))) + 0.01),
])
def test_schedules_follow_their_formulas(schedule, formula):
    for s in STEPS_TO_CHECK:
        assert schedule(s) == pytest.approx(float(formula(s)), rel=1e-12, abs=1e-15), f"step {s}"
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()
    again = schedules.deserialize(schedules.serialize(schedule))
    assert [again(s) for s in STEPS_TO_CHECK] == [schedule(s) for s in STEPS_TO_CHECK]


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="`decay_steps` must be > 0. Received: decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="boundaries should be 1 less than the length of values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="learning rate schedule identifier: 'Nope'"):
        schedules.deserialize({"class_name": "Nope", "config": {}})


def test_optimizer_reads_its_schedule_at_iterations():
    opt = optimizers.SGD(learning_rate=schedules.PiecewiseConstantDecay([2], [1.0, 0.5]))
    seen = []
    for _ in range(4):
        seen.append(opt.learning_rate)
        opt.iterations += 1
    assert seen == [1.0, 1.0, 1.0, 0.5]
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1


@pytest.mark.parametrize("rate", [
    schedules.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.5),
    lambda: 0.05,
    0.1,
])
def test_fit_steps_take_each_steps_learning_rate(rate):
    """fit runs a chunk of batches in one native call: each step gets its own rate, a schedule's
    at its own `iterations`, as a numpy loop of SGD steps on a linear model's squared error."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    y = rng.standard_normal((20, 1)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=optimizers.SGD(learning_rate=rate), loss="mse")
    w = model.get_weights()[0].astype(np.float64)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for t in range(10):
        lr = 0.2 * 0.5 ** t if isinstance(rate, schedules.LearningRateSchedule) else 0.05 if callable(rate) else rate
        xb, yb = x[t % 5 * 4:t % 5 * 4 + 4].astype(np.float64), y[t % 5 * 4:t % 5 * 4 + 4]
        w -= lr * 2 / 4 * xb.T @ (xb @ w - yb)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == 10


def test_learning_rate_is_settable_as_callbacks_do():
    opt = optimizers.Adam()
    assert float(opt.learning_rate) == np.float32(0.001)       # a float32 variable, as in Keras 3
    opt.learning_rate = 0.02
    assert opt.current_learning_rate() == np.float32(0.02) and opt.get_config()["learning_rate"] == np.float32(0.02)
    with pytest.raises(ValueError, match="Argument `learning_rate` should be float"):
        opt.learning_rate = "fast"


# ---- lookup, configs, arguments ------------------------------------------------------------
KERAS_DEFAULTS = {
    "sgd": ("SGD", "SGD", {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
    "adam": ("Adam", "adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                              "amsgrad": False}),
    "adamw": ("AdamW", "adamw", {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
                                 "epsilon": 1e-7, "amsgrad": False}),
    "rmsprop": ("RMSprop", "rmsprop", {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                                       "centered": False}),
    "adagrad": ("Adagrad", "adagrad", {"learning_rate": 0.001, "initial_accumulator_value": 0.1,
                                       "epsilon": 1e-7}),
    "adadelta": ("Adadelta", "adadelta", {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7}),
    "adamax": ("Adamax", "adamax", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    "nadam": ("Nadam", "nadam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
}


@pytest.mark.parametrize("identifier", sorted(KERAS_DEFAULTS))
def test_get_by_name_gives_keras_defaults(identifier):
    cls_name, name, defaults = KERAS_DEFAULTS[identifier]
    for spelling in (identifier, identifier.upper(), cls_name):
        opt = optimizers.get(spelling)
        assert type(opt).__name__ == cls_name and opt.name == name
        config = opt.get_config()
        # the learning rate is a float32 variable: Keras 3's config holds its float32 value
        assert {k: config[k] for k in defaults} == {**defaults, "learning_rate": float(np.float32(defaults["learning_rate"]))}
        assert config["clipnorm"] is None and config["global_clipnorm"] is None and config["clipvalue"] is None
    assert opt.iterations == 0


def test_get_passes_instances_and_none_and_rejects_the_rest():
    opt = optimizers.RMSprop()
    assert optimizers.get(opt) is opt and optimizers.get(None) is None
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier: 'adamm'"):
        optimizers.get("adamm")
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier: 3"):
        optimizers.get(3)


@pytest.mark.parametrize("opt", [
    optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True, clipnorm=1.5, name="my_sgd"),
    optimizers.Adam(learning_rate=schedules.ExponentialDecay(0.01, 100, 0.9), amsgrad=True, global_clipnorm=2.0),
    optimizers.AdamW(weight_decay=0.1, clipvalue=0.5),
    optimizers.RMSprop(rho=0.8, momentum=0.2, centered=True, weight_decay=0.01),
    optimizers.Adagrad(initial_accumulator_value=0.5, epsilon=1e-5),
    optimizers.Adadelta(learning_rate=1.0, rho=0.9),
    optimizers.Adamax(beta_1=0.8),
    optimizers.Nadam(learning_rate=schedules.CosineDecay(0.01, 10, warmup_target=0.1, warmup_steps=5)),
    optimizers.Lion(learning_rate=0.05, beta_1=0.7, beta_2=0.9, weight_decay=0.1, clipnorm=1.5, name="l"),
    optimizers.Lion(learning_rate=schedules.ExponentialDecay(0.01, 100, 0.9), global_clipnorm=2.0),
    optimizers.Ftrl(learning_rate=0.1, learning_rate_power=-0.7, initial_accumulator_value=0.5,
                    l1_regularization_strength=0.05, l2_regularization_strength=0.1,
                    l2_shrinkage_regularization_strength=0.2, beta=0.3, clipvalue=0.5),
    optimizers.Ftrl(learning_rate=schedules.CosineDecay(0.01, 10), name="f"),
    optimizers.Lamb(learning_rate=0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-5, weight_decay=0.1,
                    clipnorm=1.5, name="lb"),
    optimizers.Lamb(learning_rate=schedules.ExponentialDecay(0.01, 100, 0.9), global_clipnorm=2.0),
    optimizers.Adafactor(learning_rate=0.3, beta_2_decay=-0.5, epsilon_1=1e-20, epsilon_2=0.01,
                         clip_threshold=2.0, relative_step=False, clipvalue=0.5, name="a"),
    optimizers.Adafactor(learning_rate=schedules.CosineDecay(0.01, 10), weight_decay=0.01),
])
def test_config_round_trip(opt):
    config = opt.get_config()
    again = type(opt).from_config(config)
    assert again.get_config() == config
    assert optimizers.deserialize(optimizers.serialize(opt)).get_config() == config
    serialized = optimizers.serialize(opt)
    assert serialized["module"] == "keras.optimizers" and serialized["class_name"] == type(opt).__name__


def test_deserializes_a_keras_3_config():
    # what Keras 3.x writes for Adam(learning_rate=ExponentialDecay(...)) in a .keras file
    config = {"module": "keras.optimizers", "class_name": "Adam", "registered_name": None, "config": {
        "name": "adam", "learning_rate": {
            "module": "keras.optimizers.schedules", "class_name": "ExponentialDecay", "registered_name": None,
            "config": {"initial_learning_rate": 0.01, "decay_steps": 1000, "decay_rate": 0.9,
                       "staircase": False, "name": "ExponentialDecay"}},
        "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
        "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
        "gradient_accumulation_steps": None, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
        "amsgrad": False}}
    opt = optimizers.get(config)
    opt.iterations = 1000
    assert isinstance(opt, optimizers.Adam) and opt.learning_rate == pytest.approx(0.009)


def test_keras_2_arguments_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="`lr` is the Keras 2 name of `learning_rate`"):
        opt = optimizers.SGD(lr=0.1, momentum=0.9)
    assert opt.learning_rate == pytest.approx(0.1)
    with pytest.warns(DeprecationWarning, match="`decay` is Keras 2's learning rate decay"):
        opt = optimizers.SGD(learning_rate=0.1, decay=0.01)
    opt.iterations = 50
    assert opt.learning_rate == pytest.approx(0.1 / (1 + 0.01 * 50))
    assert float(optimizers.SGD(decay=0.0).learning_rate) == np.float32(0.01)


@pytest.mark.parametrize("make, message", [
    (lambda: optimizers.Adam(beta=0.9), r"Argument\(s\) not recognized: \{'beta': 0.9\}"),
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0),
     "Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"),
    (lambda: optimizers.SGD(momentum=1.5), r"`momentum` must be a float between \[0, 1\]"),
    (lambda: optimizers.AdamW(weight_decay=None), "Argument `weight_decay` must be a float"),
    (lambda: optimizers.Adam(learning_rate="0.1"), "Argument `learning_rate` should be float"),
    (lambda: optimizers.Adam(clipnorm="big"), "`clipnorm` must be a float or None"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unsupported_options_say_so():
    with pytest.raises(NotImplementedError, match="`use_ema=True` is not supported"):
        optimizers.Adam(use_ema=True)


def test_emit_apply_checks_what_it_is_given():
    rng = np.random.default_rng(0)
    vs = variables(rng, [(3,), (2, 2)])
    opt = optimizers.Adam()
    b = Builder()
    p0, p1 = b.param("w0", vs[0].value), b.param("w1", vs[1].value)
    lr, step = b.input("lr", f32[()]), b.input("step", f32[()])
    with pytest.raises(ValueError, match="optimizer 'adam' is not built"):
        opt.emit_apply(b, [(p0, p0)], {}, lr, step)
    opt.build(vs)
    slots = {name: b.param(name, array) for name, array in opt.slots()}
    with pytest.raises(ValueError, match="built for 2 variables; emit_apply received 1"):
        opt.emit_apply(b, [(p0, p0)], slots, lr, step)
    with pytest.raises(ValueError,
                       match=r"variable 1 \('layer_1/kernel'\) has shape \(2, 2\); received parameter f32\[3\]"):
        opt.emit_apply(b, [(p0, p0), (p0, p0)], slots, lr, step)
    with pytest.raises(ValueError, match="no graph parameter for slot 'adam/layer_0_kernel_momentum'"):
        opt.emit_apply(b, [(p0, p0), (p1, p1)], {}, lr, step)


def test_a_set_learning_rate_is_a_variable_a_callback_assigns():
    """Keras 3's `optimizer.learning_rate` is a float32 Variable: a callback may `assign` it,
    and the next steps use the new rate (SGD: w -= lr * grad, checked against numpy)."""
    x = np.ones((4, 1), np.float32)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rate = model.optimizer.learning_rate
    assert rate.path == "SGD/learning_rate" and rate.dtype == "float32" and float(rate) == np.float32(0.1)

    class Halve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate.assign(self.model.optimizer.learning_rate * 0.5)

    model.fit(x, 2 * x, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[Halve()])
    w = 0.0
    for lr in (0.1, 0.05):   # d/dw mean((w - 2)^2) = 2 (w - 2)
        w -= np.float32(lr) * 2 * (w - 2)
    np.testing.assert_allclose(model.get_weights()[0], [[w]], rtol=1e-6)
    assert model.optimizer.learning_rate is rate and float(rate) == np.float32(0.025)
    assert model.optimizer.get_config()["learning_rate"] == float(np.float32(0.025))
    model.optimizer.learning_rate = 0.3            # setting it assigns the same variable
    assert model.optimizer.learning_rate is rate and float(rate) == np.float32(0.3)


def test_a_frozen_model_fits_without_updating_anything():
    """As in Keras 3: with no trainable weight, fit reports the loss and changes nothing."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.trainable = False
    model.compile("adam", "mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 1), np.float32)
    before = model.get_weights()
    history = model.fit(x, y, epochs=2, verbose=0)
    kernel, bias = before
    want = float(((x @ kernel + bias - y) ** 2).mean())
    np.testing.assert_allclose(history.history["loss"], [want, want], rtol=1e-6)
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
