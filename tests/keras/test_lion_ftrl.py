"""Lion and Ftrl: the emitted update (interpreted and compiled) against float64 numpy
transcriptions of Keras 3.15's `update_step`s, through tests/keras/test_optimizers.py's harness;
lookup, configs and errors as Keras's; and, against real Keras 3.15.1 (JAX) fixtures
(tests/fixtures/keras_optimizers/, made by make_optimizers.py there): the weights and optimizer
variables after `fit`, and Keras's own `.keras` files loaded, optimizer state included."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import optimizers
from nncompile.keras.layers.base import Variable
from nncompile.keras.optimizers import schedules
from nncompile.keras.saving.optimizer_state import optimizer_variables
from tests.keras import test_optimizers as harness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras_optimizers"


# ---- Keras 3.15's update_step, in float64 numpy (state maps slot kind -> array) -------------
def lion(c, w, g, s, lr, t):
    b1, b2 = c.get("beta_1", 0.9), c.get("beta_2", 0.99)
    w = w - lr * np.sign(s["momentum"] * b1 + g * (1 - b1))
    s["momentum"] = s["momentum"] * b2 + g * (1 - b2)
    return w


def ftrl(c, w, g, s, lr, t):
    power = -c.get("learning_rate_power", -0.5)
    l1 = c.get("l1_regularization_strength", 0.0)
    l2_reg = c.get("l2_regularization_strength", 0.0) + c.get("beta", 0.0) / (2 * lr)
    grad_to_use = g + 2 * c.get("l2_shrinkage_regularization_strength", 0.0) * w
    accum = s["accumulator"]
    new_accum = accum + g * g
    s["linear"] = s["linear"] + grad_to_use - (new_accum ** power - accum ** power) / lr * w
    quadratic = new_accum ** power / lr + 2 * l2_reg
    s["accumulator"] = new_accum
    return (np.clip(s["linear"], -l1, l1) - s["linear"]) / quadratic


SLOTS = {"Lion": ["momentum"], "Ftrl": ["accumulator", "linear"]}


@pytest.fixture(autouse=True)
def _harness_knows_lion_and_ftrl(monkeypatch):
    """test_optimizers' KerasTwin finds its rule in RULES and its slots in slot_kinds (Ftrl's
    accumulator starts at `initial_accumulator_value`, default 0.1, as Adagrad's does there)."""
    monkeypatch.setitem(harness.RULES, "Lion", lion)
    monkeypatch.setitem(harness.RULES, "Ftrl", ftrl)
    slot_kinds = harness.slot_kinds
    monkeypatch.setattr(harness, "slot_kinds", lambda cls_name, c: SLOTS.get(cls_name) or slot_kinds(cls_name, c))


FTRL_ALL = {"learning_rate": 0.1, "learning_rate_power": -0.7, "initial_accumulator_value": 0.5,
            "l1_regularization_strength": 0.05, "l2_regularization_strength": 0.1,
            "l2_shrinkage_regularization_strength": 0.2, "beta": 0.3}

CASES = [
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.01}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 1.0, "beta_2": 0.5}),
    ("Lion", {"learning_rate": 0.01, "weight_decay": 0.5, "clipnorm": 0.5}),
    ("Lion", {"learning_rate": 0.01, "global_clipnorm": 1.0}),
    ("Lion", {"learning_rate": 0.01, "clipvalue": 0.1}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate": 0.1}),
    ("Ftrl", FTRL_ALL),
    ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": 0.0, "l1_regularization_strength": 0.3}),
    ("Ftrl", {"learning_rate": 0.1, "initial_accumulator_value": 0.0, "beta": 1.0}),
    ("Ftrl", {"learning_rate": 0.1, "weight_decay": 0.2, "clipnorm": 0.5}),
    ("Ftrl", {**FTRL_ALL, "weight_decay": 0.1, "clipnorm": 1.0}),
    ("Ftrl", {"learning_rate": schedules.ExponentialDecay(0.2, decay_steps=2, decay_rate=0.5),
              "l2_shrinkage_regularization_strength": 0.1}),
]


@pytest.mark.parametrize("run", ["interpreted", "compiled"])
@pytest.mark.parametrize("cls_name, config", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_steps_match_keras_formulas(cls_name, config, run, monkeypatch):
    if cls_name == "Ftrl" and not callable(config.get("learning_rate")) and config.get("learning_rate", 0.001) < 0.01:
        # Ftrl's linear slot gains (n'^-p - n^-p) / lr * w each step: ~1e3 at lr 0.001, so float32
        # (Keras's as well as ours) rounds its small entries by ~1e3 * 6e-8 against float64
        monkeypatch.setitem(harness.TOLERANCE, "atol", 2e-4)
    harness.run_steps(cls_name, config, run)


@pytest.mark.parametrize("cls_name, config", [("Lion", {"learning_rate": 0.05, "weight_decay": 0.1}),
                                              ("Ftrl", {**FTRL_ALL, "clipnorm": 0.5})])
def test_eager_apply_gradients_matches_keras(cls_name, config):
    rng = np.random.default_rng(4)
    vs = harness.variables(rng, [(3,), (2, 2)])
    twin = harness.KerasTwin(cls_name, config, [v.value for v in vs])
    opt = getattr(optimizers, cls_name)(**config)
    for t in (1, 2, 3):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in vs]
        assert opt.apply_gradients(zip(grads, vs)) == t
        twin.step(grads, t)
    for i, (v, want) in enumerate(zip(vs, twin.w)):
        np.testing.assert_allclose(v.value, want, **harness.TOLERANCE)
        for kind, state in twin.state[i].items():
            np.testing.assert_allclose(dict(opt.slots())[f"{opt.name}/layer_{i}_kernel_{kind}"], state,
                                       **harness.TOLERANCE)


def test_lion_moves_every_weight_by_the_learning_rate():
    """sign(): each coordinate moves by exactly lr (here from 0, so to +-lr), whatever |g|."""
    w = Variable(np.zeros(4, np.float32), "w", "w")
    optimizers.Lion(learning_rate=0.25).apply([np.array([1e-3, -50.0, 2.0, -1e-6], np.float32)], [w])
    np.testing.assert_array_equal(w.numpy(), np.float32([-0.25, 0.25, -0.25, 0.25]))


def test_slot_names_order_and_initial_values_follow_keras():
    keras.backend.clear_session()       # unnamed: "lion", not "lion_<n>"
    vs = [Variable(np.zeros((2, 3), np.float32), "kernel", "dense/kernel"),
          Variable(np.zeros(3, np.float32), "bias", "dense/bias")]
    paths = ["dense_kernel", "dense_bias"]
    lion_opt = optimizers.Lion()
    lion_opt.build(vs)
    assert [name for name, _ in lion_opt.slots()] == [f"lion/{p}_momentum" for p in paths]
    ftrl_opt = optimizers.Ftrl(initial_accumulator_value=0.25)
    ftrl_opt.build(vs)
    # one Keras add_optimizer_variables(["accumulator", "linear"]) call: interleaved per variable
    want = [f"ftrl/{p}_{kind}" for p in paths for kind in ("accumulator", "linear")]
    assert [name for name, _ in ftrl_opt.slots()] == want
    assert [name for name, _ in optimizer_variables(ftrl_opt)] == ["ftrl/iteration", "ftrl/learning_rate", *want]
    for name, array in ftrl_opt.slots():
        assert array.dtype == np.float32 and np.all(array == (0.25 if name.endswith("accumulator") else 0.0))


# ---- lookup, configs, arguments ------------------------------------------------------------
# Keras 3.15.1's get_config() of Lion() and Ftrl(), keys in its order
BASE_KEYS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
             "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
             "gradient_accumulation_steps": None}
KERAS_CONFIGS = {
    "lion": {"name": "lion", "learning_rate": 0.0010000000474974513, **BASE_KEYS, "beta_1": 0.9, "beta_2": 0.99},
    "ftrl": {"name": "ftrl", "learning_rate": 0.0010000000474974513, **BASE_KEYS, "learning_rate_power": -0.5,
             "initial_accumulator_value": 0.1, "l1_regularization_strength": 0.0,
             "l2_regularization_strength": 0.0, "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0},
}


@pytest.mark.parametrize("identifier", sorted(KERAS_CONFIGS))
def test_get_by_name_gives_keras_defaults(identifier):
    for spelling in (identifier, identifier.upper(), identifier.capitalize()):
        keras.backend.clear_session()
        opt = optimizers.get(spelling)
        assert type(opt).__name__ == identifier.capitalize()
        config = opt.get_config()
        assert config == KERAS_CONFIGS[identifier] and list(config) == list(KERAS_CONFIGS[identifier])


def test_unnamed_optimizers_are_numbered_as_keras_does():
    keras.backend.clear_session()
    assert [optimizers.Lion().name, optimizers.Lion().name, optimizers.Ftrl().name] == ["lion", "lion_1", "ftrl"]
    assert optimizers.Lion(name="mine").name == "mine"


@pytest.mark.parametrize("make, message", [
    (lambda: optimizers.Lion(beta_1=0.0), r"`beta_1` must be in the \[0, 1\] range.*SignSGD. Received: beta_1=0.0"),
    (lambda: optimizers.Lion(beta_1=1.5), r"Received: beta_1=1.5"),
    (lambda: optimizers.Ftrl(initial_accumulator_value=-0.1), "`initial_accumulator_value` needs to be positive"),
    (lambda: optimizers.Ftrl(learning_rate_power=0.5), "`learning_rate_power` needs to be negative or zero"),
    (lambda: optimizers.Ftrl(l1_regularization_strength=-1.0), "`l1_regularization_strength` needs to be positive"),
    (lambda: optimizers.Ftrl(l2_regularization_strength=-1.0), "`l2_regularization_strength` needs to be positive"),
    (lambda: optimizers.Ftrl(l2_shrinkage_regularization_strength=-1.0),
     "`l2_shrinkage_regularization_strength` needs to be positive"),
    (lambda: optimizers.Lion(epsilon=1e-7), r"Argument\(s\) not recognized"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- training, against real Keras 3.15.1 ---------------------------------------------------
def _fixture(case):
    data = np.load(FIXTURES / f"{case}.npz")
    meta = json.loads(str(data["meta"]))
    arrays = {k: data[k] for k in data.files if k != "meta"}
    pick = lambda prefix: [arrays[f"{prefix}_{i}"] for i in range(sum(k.startswith(f"{prefix}_") for k in arrays))]
    return meta, arrays, pick


def _model():
    # make_optimizers.py's build()
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(2)])


def _kinds(path):
    """An optimizer variable's path without the model's name: Keras 3 names the slots of a
    Sequential's weights `sequential_dense_kernel_...`, nncompile `dense_kernel_...`."""
    return path.replace("/sequential_", "/")


FIT_CASES = ["lion", "lion_wd_clip", "ftrl", "ftrl_wd_clip"]


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_matches_real_keras(case):
    meta, arrays, pick = _fixture(case)
    keras.backend.clear_session()
    model = _model()
    model.set_weights(pick("initial"))
    model.compile(optimizer=getattr(optimizers, meta["class_name"])(**meta["arguments"]), loss="mse")
    history = model.fit(arrays["x"], arrays["t"], batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], meta["fit_losses"], rtol=1e-5)
    for got, want in zip(model.get_weights(), pick("trained"), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    state = optimizer_variables(model.optimizer)
    assert [name for name, _ in state] == [_kinds(p) for p in meta["optimizer_variables"]]
    for (name, got), want in zip(state, pick("optimizer"), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert model.optimizer.get_config() == meta["config"]


@pytest.mark.parametrize("case", FIT_CASES)
def test_real_keras_files_load_with_their_optimizer_state(case):
    meta, arrays, pick = _fixture(case)
    model = keras.models.load_model(FIXTURES / f"{case}.keras")
    opt = model.optimizer
    assert type(opt).__name__ == meta["class_name"] and opt.get_config() == meta["config"]
    assert opt.iterations == 4
    for got, want in zip(model.get_weights(), pick("trained"), strict=True):
        np.testing.assert_array_equal(got, want)
    state = optimizer_variables(opt)
    assert [name for name, _ in state] == [_kinds(p) for p in meta["optimizer_variables"]]
    for (name, got), want in zip(state, pick("optimizer"), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    # Keras's next step from the restored state
    loss = model.train_on_batch(arrays["x"][:8], arrays["t"][:8])
    assert float(np.asarray(loss).reshape(-1)[0]) == pytest.approx(meta["next_loss"], rel=1e-5)
    for got, want in zip(model.get_weights(), pick("next"), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("optimizer", [lambda: optimizers.Lion(learning_rate=0.01, beta_1=0.8, weight_decay=0.1),
                                       lambda: optimizers.Ftrl(**FTRL_ALL)], ids=["Lion", "Ftrl"])
def test_saved_state_resumes_the_same_trajectory(tmp_path, suffix, optimizer):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    keras.backend.clear_session()
    uninterrupted = _model()
    start = uninterrupted.get_weights()
    uninterrupted.compile(optimizer=optimizer(), loss="mse")
    uninterrupted.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    first = _model()
    first.set_weights(start)
    first.compile(optimizer=optimizer(), loss="mse")
    first.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / f"half{suffix}")
    resumed = keras.models.load_model(tmp_path / f"half{suffix}")
    assert resumed.optimizer.iterations == 4
    assert resumed.optimizer.get_config() == first.optimizer.get_config()
    for (name, got), (_, want) in zip(optimizer_variables(resumed.optimizer), optimizer_variables(first.optimizer),
                                      strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["lion", "ftrl"])
def test_nncompile_keras_files_hold_the_state_where_keras_does(tmp_path, case):
    """The `.keras` nncompile writes after the fixture's fit holds, at optimizer/vars/<j>, what
    Keras's own file holds there."""
    meta, arrays, pick = _fixture(case)
    keras.backend.clear_session()
    model = _model()
    model.set_weights(pick("initial"))
    model.compile(optimizer=getattr(optimizers, meta["class_name"])(**meta["arguments"]), loss="mse")
    model.fit(arrays["x"], arrays["t"], batch_size=8, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "mine.keras")

    def stored(path):
        with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as f:
            group = f["optimizer/vars"]
            return [np.asarray(group[str(j)]) for j in range(len(group))]

    mine, theirs = stored(tmp_path / "mine.keras"), stored(FIXTURES / f"{case}.keras")
    assert len(mine) == len(theirs) == len(meta["optimizer_variables"])
    for j, (got, want) in enumerate(zip(mine, theirs)):
        # iteration: Keras on JAX writes int32, nncompile int64 (Keras on TensorFlow's dtype); both load
        assert got.shape == want.shape and (j == 0 or got.dtype == want.dtype), meta["optimizer_variables"][j]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=meta["optimizer_variables"][j])


@pytest.mark.parametrize("name, cls", [("lion", optimizers.Lion), ("ftrl", optimizers.Ftrl)])
def test_compile_by_name_trains(name, cls):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 2)).astype(np.float32)
    model = _model()
    model.compile(optimizer=name, loss="mse")
    assert isinstance(model.optimizer, cls)
    before = model.evaluate(x, y, verbose=0)
    model.optimizer.learning_rate = 0.05
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    assert model.optimizer.iterations == 20
    assert model.evaluate(x, y, verbose=0) < before
