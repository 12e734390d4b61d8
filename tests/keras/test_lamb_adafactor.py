"""Lamb and Adafactor: the emitted update (interpreted and compiled) against float64 numpy
transcriptions of Keras 3.15's `update_step`s, through tests/keras/test_optimizers.py's harness;
and against real Keras 3.15.1 (JAX) fixtures (tests/fixtures/keras/optimizers_extra/, made by
make_optimizers_extra.py there): the weights after every step, the optimizer's variables, Keras's
own `.keras` files loaded mid-training and trained on; lookup and configs as Keras's."""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import optimizers
from nncompile.keras.optimizers import schedules
from nncompile.keras.saving.optimizer_state import optimizer_variables
from nncompile.keras.saving.weights import read_optimizer_values
from tests.keras import test_optimizers as harness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "optimizers_extra"


# ---- Keras 3.15's update_step, in float64 numpy (state maps slot kind -> array) -------------
def lamb(c, w, g, s, lr, t):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    s["momentum"] = b1 * s["momentum"] + (1 - b1) * g
    s["velocity"] = b2 * s["velocity"] + (1 - b2) * g * g
    update = (s["momentum"] / (1 - b1 ** t)) / (np.sqrt(s["velocity"] / (1 - b2 ** t)) + eps)
    w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
    ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    return w - ratio * lr * update


def _rms(x):
    return np.sqrt(np.mean(x * x))


def adafactor(c, w, g, s, lr, t):
    """r and c (rank >= 2 only) start at zero; at step 1 beta_2_t is 0, so their first value
    does not depend on it."""
    beta = 1 - t ** c.get("beta_2_decay", -0.8)
    g2 = g * g + c.get("epsilon_1", 1e-30)
    if w.ndim >= 2:
        r = s["r"] = beta * s.get("r", 0.0) + (1 - beta) * g2.mean(axis=-1)
        s["c"] = beta * s.get("c", 0.0) + (1 - beta) * g2.mean(axis=-2)
        s["velocity"] = (r / r.mean(axis=-1, keepdims=True))[..., None] * s["c"][..., None, :]
    else:
        s["velocity"] = beta * s["velocity"] + (1 - beta) * g2
    u = g / np.sqrt(s["velocity"])
    u = u / max(1.0, _rms(u) / c.get("clip_threshold", 1.0))
    return w - max(c.get("epsilon_2", 1e-3), _rms(w)) * min(lr, 1 / math.sqrt(t)) * u


@pytest.fixture(autouse=True)
def _harness_knows_lamb_and_adafactor(monkeypatch):
    monkeypatch.setitem(harness.RULES, "Lamb", lamb)
    monkeypatch.setitem(harness.RULES, "Adafactor", adafactor)
    slot_kinds = harness.slot_kinds
    kinds = {"Lamb": ["momentum", "velocity"], "Adafactor": ["velocity"]}
    monkeypatch.setattr(harness, "slot_kinds", lambda cls_name, c: kinds.get(cls_name) or slot_kinds(cls_name, c))


CASES = [
    ("Lamb", {}),
    ("Lamb", {"learning_rate": 0.05, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 0.1}),
    ("Lamb", {"learning_rate": 0.02, "weight_decay": 0.1, "clipnorm": 0.5}),
    ("Lamb", {"learning_rate": schedules.ExponentialDecay(0.05, 2, 0.5), "global_clipnorm": 1.0}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.8}),
    ("Adafactor", {"learning_rate": 0.3, "beta_2_decay": -0.5, "epsilon_1": 1e-3, "epsilon_2": 0.9,
                   "clip_threshold": 0.05}),
    ("Adafactor", {"learning_rate": 0.1, "weight_decay": 0.05, "clipvalue": 0.2, "relative_step": False}),
]


@pytest.mark.parametrize("run", ["interpreted", "compiled"])
@pytest.mark.parametrize("cls_name, config", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_steps_match_keras_formulas(cls_name, config, run):
    """Shapes of rank 0 to 4 (harness.SHAPES): Adafactor factors the last two axes of (3, 5) and
    (2, 3, 3, 4) and keeps () and (7,) whole; the r and c slots are compared too."""
    harness.run_steps(cls_name, config, run)


def test_adafactor_slots_are_factored_as_keras_makes_them():
    keras.backend.clear_session()
    shapes = [(), (7,), (3, 5), (2, 3, 4)]
    opt = optimizers.Adafactor()
    opt.build(harness.variables(np.random.default_rng(0), shapes))
    got = [(name, array.shape, array.dtype) for name, array in opt.slots()]
    # Keras's placeholders for rank < 2 are `backend.Variable(0)`: int32 scalars
    placeholder = [((), np.int32), ((), np.int32)]
    want = [*placeholder, ((), np.float32), *placeholder, ((7,), np.float32),
            ((3,), np.float32), ((5,), np.float32), ((3, 5), np.float32),
            ((2, 3), np.float32), ((2, 4), np.float32), ((2, 3, 4), np.float32)]
    assert [(shape, dtype) for _, shape, dtype in got] == want
    assert [name for name, _, _ in got][-3:] == [f"adafactor/layer_3_kernel_{kind}" for kind in ("r", "c", "velocity")]


# ---- against real Keras 3.15.1 ---------------------------------------------------------------
DATA = np.load(FIXTURES / "optimizers_extra.npz")
META = json.loads(str(DATA["meta"]))
FIT_CASES = sorted(META["cases"])


def _weights(prefix: str) -> list[np.ndarray]:
    return [DATA[f"{prefix}_{i}"] for i in range(4)]


def _state(case: str, step: int) -> list[np.ndarray]:
    return [DATA[f"{case}/state{step}_{j}"] for j in range(len(META["cases"][case]["optimizer_variables"]))]


def _model():
    # make_optimizers_extra.py's build()
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"),
                             keras.layers.EinsumDense("ab,bcd->acd", output_shape=(2, 4), bias_axes="d")])


def _batch(step: int):
    rows = slice(0, 8) if step % 2 else slice(8, 16)
    return DATA["x"][rows], DATA["t"][rows]


def _optimizer(case: str):
    """The case's optimizer from Keras's own config of it."""
    meta = META["cases"][case]
    return optimizers.deserialize({"class_name": meta["class_name"], "config": meta["config"]})


def _unique_paths(paths: list[str]) -> list[str | None]:
    """Keras's optimizer variable paths without the model's name (Keras 3 names the slots of a
    Sequential's weights `sequential_dense_kernel_...`, nncompile `dense_kernel_...`); None for
    a path Keras gives more than one variable (Adafactor's r and c are named after the weight's
    bare name, its placeholders have no optimizer prefix), which nncompile cannot share."""
    return [p.replace("/sequential_", "/") if paths.count(p) == 1 else None for p in paths]


def _check_state(opt, case: str, step: int, exact: bool = False) -> None:
    state = optimizer_variables(opt)
    want_paths = _unique_paths(META["cases"][case]["optimizer_variables"])
    assert [name if want else None for (name, _), want in zip(state, want_paths, strict=True)] == want_paths
    for (name, got), want in zip(state, _state(case, step), strict=True):
        # iteration: Keras on JAX keeps int32, nncompile int64 (Keras on TensorFlow's dtype)
        assert got.shape == want.shape and (name.endswith("/iteration") or got.dtype == want.dtype), name
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{case} step {step} {name}")


def _train_and_compare(model, case: str, steps) -> None:
    """Train `steps` as the fixture did, comparing the loss and the weights after each with
    Keras's. float32 tolerances: both sides round each operation to 6e-8 relatively, and the
    reductions (norms, means) may sum in another order; six steps of that stay far inside
    rtol 1e-5 / atol 1e-6, which a wrong constant or a swapped axis leaves far behind."""
    losses = META["cases"][case]["losses"]
    for k in steps:
        loss = model.train_on_batch(*_batch(k))
        assert float(np.asarray(loss).reshape(-1)[0]) == pytest.approx(losses[k - 1], rel=1e-5)
        for i, (got, want) in enumerate(zip(model.get_weights(), _weights(f"{case}/step{k}"), strict=True)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{case} step {k} weight {i}")


@pytest.mark.parametrize("case", FIT_CASES)
def test_training_matches_real_keras_step_by_step(case):
    keras.backend.clear_session()
    model = _model()
    model.set_weights(_weights("initial"))
    model.compile(optimizer=_optimizer(case), loss="mse")
    for k in range(1, META["steps"] + 1):
        _train_and_compare(model, case, [k])
        if k in META["states_at"]:
            _check_state(model.optimizer, case, k)
    assert model.optimizer.get_config() == META["cases"][case]["config"]


@pytest.mark.parametrize("file", META["files"])
def test_real_keras_files_load_mid_training_and_train_on(file):
    case = file.removesuffix(".keras")
    model = keras.models.load_model(FIXTURES / file)
    opt = model.optimizer
    assert type(opt).__name__ == META["cases"][case]["class_name"]
    assert opt.get_config() == META["cases"][case]["config"] and opt.iterations == META["save_at"]
    for got, want in zip(model.get_weights(), _weights(f"{case}/step{META['save_at']}"), strict=True):
        np.testing.assert_array_equal(got, want)
    _check_state(opt, case, META["save_at"], exact=True)
    _train_and_compare(model, case, range(META["save_at"] + 1, META["steps"] + 1))
    _check_state(opt, case, META["steps"])


@pytest.mark.parametrize("case", ["lamb_betas", "adafactor_args"])
def test_nncompile_keras_files_hold_the_state_where_keras_does(tmp_path, case):
    keras.backend.clear_session()
    model = _model()
    model.set_weights(_weights("initial"))
    model.compile(optimizer=_optimizer(case), loss="mse")
    for k in range(1, META["save_at"] + 1):
        model.train_on_batch(*_batch(k))
    model.save(tmp_path / "mine.keras")

    def stored(path):
        with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as f:
            return read_optimizer_values(str(path), f)

    mine, theirs = stored(tmp_path / "mine.keras"), stored(FIXTURES / f"{case}.keras")
    assert len(mine) == len(theirs)
    for j, (got, want) in enumerate(zip(mine, theirs)):
        # iteration (j 0): int64 here, int32 from Keras on JAX; Adafactor's placeholders int32 in both
        assert got.shape == want.shape and (j == 0 or got.dtype == want.dtype), j
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(j))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("case", ["lamb_wd_clipnorm", "adafactor_args", "adafactor_schedule_wd"])
def test_saved_state_resumes_the_same_trajectory(tmp_path, suffix, case):
    keras.backend.clear_session()
    uninterrupted = _model()
    uninterrupted.set_weights(_weights("initial"))
    uninterrupted.compile(optimizer=_optimizer(case), loss="mse")
    first = _model()
    first.set_weights(_weights("initial"))
    first.compile(optimizer=_optimizer(case), loss="mse")
    for k in range(1, META["steps"] + 1):
        uninterrupted.train_on_batch(*_batch(k))
        if k <= META["save_at"]:
            first.train_on_batch(*_batch(k))
    first.save(tmp_path / f"half{suffix}")
    resumed = keras.models.load_model(tmp_path / f"half{suffix}")
    assert resumed.optimizer.iterations == META["save_at"]
    assert resumed.optimizer.get_config() == first.optimizer.get_config()
    for (name, got), (_, want) in zip(optimizer_variables(resumed.optimizer), optimizer_variables(first.optimizer),
                                      strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    for k in range(META["save_at"] + 1, META["steps"] + 1):
        resumed.train_on_batch(*_batch(k))
    for got, want in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


# ---- lookup, configs -----------------------------------------------------------------------
BASE_KEYS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
             "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
             "gradient_accumulation_steps": None}
# Keras 3.15.1's get_config() of Lamb() and Adafactor(), keys in its order
KERAS_CONFIGS = {
    "Lamb": {"name": "lamb", "learning_rate": 0.0010000000474974513, **BASE_KEYS, "beta_1": 0.9, "beta_2": 0.999,
             "epsilon": 1e-07},
    "Adafactor": {"name": "adafactor", "learning_rate": 0.0010000000474974513, **BASE_KEYS, "beta_2_decay": -0.8,
                  "epsilon_1": 1e-30, "epsilon_2": 0.001, "clip_threshold": 1.0, "relative_step": True},
}


@pytest.mark.parametrize("cls_name", sorted(KERAS_CONFIGS))
def test_defaults_are_keras_configs(cls_name):
    keras.backend.clear_session()
    config = getattr(optimizers, cls_name)().get_config()
    assert config == KERAS_CONFIGS[cls_name] and list(config) == list(KERAS_CONFIGS[cls_name])


def test_both_resolve_by_name_in_any_case():
    """Keras 3.15's `optimizers.get` knows "adafactor" but not "lamb" (Lamb is missing from its
    ALL_OBJECTS, a slip: a saved Lamb config loads); here both names work."""
    for cls, spellings in ((optimizers.Adafactor, ("adafactor", "Adafactor", "ADAFACTOR")),
                           (optimizers.Lamb, ("lamb", "Lamb"))):
        for spelling in spellings:
            keras.backend.clear_session()
            opt = optimizers.get(spelling)
            assert isinstance(opt, cls) and opt.get_config() == KERAS_CONFIGS[cls.__name__]
    lamb_opt = optimizers.get({"class_name": "Lamb", "config": {"learning_rate": 0.1}})
    assert isinstance(lamb_opt, optimizers.Lamb) and lamb_opt.get_config()["learning_rate"] == pytest.approx(0.1)


def test_unnamed_optimizers_are_numbered_as_keras_does():
    keras.backend.clear_session()
    names = [optimizers.Lamb().name, optimizers.Lamb().name, optimizers.Adafactor().name, optimizers.Adafactor().name]
    assert names == ["lamb", "lamb_1", "adafactor", "adafactor_1"]


def test_compile_by_name_trains():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = np.einsum("ab,bcd->acd", x, rng.standard_normal((4, 2, 4)).astype(np.float32))
    model = _model()
    model.compile(optimizer="adafactor", loss="mse")
    assert isinstance(model.optimizer, optimizers.Adafactor)
    before = model.evaluate(x, y, verbose=0)
    model.optimizer.learning_rate = 0.05
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    assert model.optimizer.iterations == 20
    assert model.evaluate(x, y, verbose=0) < before
