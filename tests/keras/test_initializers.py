"""Initializers: statistics of large draws against Keras's formulas, fans, seeds and lookup."""
import math

import numpy as np
import pytest

from nncompile.keras import initializers, utils
from nncompile.keras.layers.core import Dense

# The standard deviation of a unit normal truncated to [-2, 2].
TRUNCATED_STD = 0.8796256610342398


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((3, 4), (3, 4)),
    ((5, 8, 16), (40, 80)),              # Conv1D kernel (k, in, out)
    ((3, 3, 16, 32), (144, 288)),        # Conv2D kernel (kh, kw, in, out)
])
def test_compute_fans(shape, fans):
    assert initializers.compute_fans(shape) == fans


def uniform_checks(w, limit):
    assert w.min() >= -limit and w.max() <= limit
    assert abs(w.mean()) < 0.02 * limit
    assert w.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)


def truncated_checks(w, stddev_before_truncation):
    assert np.abs(w).max() <= 2 * stddev_before_truncation * (1 + 1e-6)
    assert abs(w.mean()) < 0.02 * stddev_before_truncation
    assert w.std() == pytest.approx(stddev_before_truncation * TRUNCATED_STD, rel=0.02)


def test_random_uniform_defaults():
    w = initializers.RandomUniform(seed=1)((400, 500))
    uniform_checks(w, 0.05)
    assert w.dtype == np.float32


def test_random_normal_defaults():
    w = initializers.RandomNormal(seed=1)((400, 500))
    assert abs(w.mean()) < 0.001
    assert w.std() == pytest.approx(0.05, rel=0.02)
    assert np.abs(w).max() > 0.2   # untruncated: tails beyond 4 stddev appear in 200k draws


def test_random_normal_arguments():
    w = initializers.RandomNormal(mean=3.0, stddev=0.5, seed=2)((100_000,))
    assert w.mean() == pytest.approx(3.0, abs=0.01) and w.std() == pytest.approx(0.5, rel=0.02)


def test_truncated_normal_redraws_beyond_two_stddev():
    w = initializers.TruncatedNormal(mean=1.0, stddev=0.1, seed=3)((200_000,))
    truncated_checks(w - 1.0, 0.1)


# name -> (fan used, scale, distribution)
PRESETS = {
    "glorot_uniform": ("avg", 1.0, "uniform"),
    "glorot_normal": ("avg", 1.0, "truncated"),
    "he_uniform": ("in", 2.0, "uniform"),
    "he_normal": ("in", 2.0, "truncated"),
    "lecun_uniform": ("in", 1.0, "uniform"),
    "lecun_normal": ("in", 1.0, "truncated"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("shape", [(300, 700), (3, 3, 32, 64)])
def test_variance_scaling_presets(name, shape):
    fan_mode, scale, distribution = PRESETS[name]
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    fan = fan_in if fan_mode == "in" else (fan_in + fan_out) / 2
    utils.set_random_seed(0)   # fixed draws: the tolerances below are 4 standard errors or more
    w = initializers.get(name)(shape)
    if distribution == "uniform":
        uniform_checks(w, math.sqrt(3 * scale / fan))
    else:
        truncated_checks(w, math.sqrt(scale / fan) / TRUNCATED_STD)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_untruncated_modes(mode):
    fan = {"fan_in": 200, "fan_out": 800, "fan_avg": 500}[mode]
    w = initializers.VarianceScaling(3.0, mode, "untruncated_normal", seed=0)((200, 800))
    assert w.std() == pytest.approx(math.sqrt(3.0 / fan), rel=0.02)
    assert np.abs(w).max() > 3 * math.sqrt(3.0 / fan)


def test_variance_scaling_normal_means_truncated():
    assert initializers.VarianceScaling(distribution="normal").distribution == "truncated_normal"


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": 0.0}, "scale"), ({"mode": "fan_sum"}, "fan_in, fan_out, fan_avg"),
    ({"distribution": "gamma"}, "truncated_normal, untruncated_normal, uniform"),
    ({"seed": 1.5}, "seed"),
])
def test_variance_scaling_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        initializers.VarianceScaling(**kwargs)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 3, 4, 8)])
def test_orthogonal(shape):
    w = initializers.Orthogonal(gain=2.0, seed=0)(shape)
    flat = w.reshape(-1, shape[-1]) / 2.0
    small = min(flat.shape)
    product = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(product, np.eye(small), atol=1e-5)


def test_orthogonal_needs_two_dims():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        initializers.Orthogonal()((4,))


def test_identity_and_constants():
    np.testing.assert_array_equal(initializers.Identity(gain=3.0)((2, 3)), 3.0 * np.eye(2, 3))
    with pytest.raises(ValueError, match="2D matrices"):
        initializers.Identity()((2, 2, 2))
    np.testing.assert_array_equal(initializers.Constant(1.5)((2, 2)), np.full((2, 2), 1.5))
    assert initializers.get("zeros")((3,), "float64").dtype == np.float64
    assert initializers.get("ones")((2, 3)).sum() == 6.0


def test_seeded_initializer_repeats_and_unseeded_does_not():
    seeded = initializers.GlorotUniform(seed=7)
    np.testing.assert_array_equal(seeded((5, 5)), seeded((5, 5)))
    np.testing.assert_array_equal(seeded((5, 5)), initializers.GlorotUniform(seed=7)((5, 5)))
    assert not np.array_equal(seeded((5, 5)), initializers.GlorotUniform(seed=8)((5, 5)))
    unseeded = initializers.GlorotUniform()
    assert not np.array_equal(unseeded((5, 5)), unseeded((5, 5)))


def test_set_random_seed_reproduces_draws_and_models():
    def draw():
        return [initializers.get(n)((4, 6)) for n in ("he_normal", "uniform", "orthogonal")]

    def model_weights():
        layers = [Dense(5), Dense(3)]
        x = np.ones((1, 4), np.float32)
        for layer in layers:
            x = layer(x)
        return [w for layer in layers for w in layer.get_weights()]

    utils.set_random_seed(123)
    first, first_model = draw(), model_weights()
    utils.set_random_seed(123)
    second, second_model = draw(), model_weights()
    for a, b in zip(first + first_model, second + second_model):
        np.testing.assert_array_equal(a, b)
    utils.set_random_seed(124)
    assert not np.array_equal(draw()[0], first[0])


def test_set_random_seed_needs_an_int():
    with pytest.raises(ValueError, match="integer"):
        utils.set_random_seed("42")


def test_legacy_names():
    uniform = initializers.get("uniform")
    assert isinstance(uniform, initializers.RandomUniform)
    assert (uniform.minval, uniform.maxval) == (-0.05, 0.05)
    normal = initializers.get("normal")
    assert isinstance(normal, initializers.RandomNormal) and (normal.mean, normal.stddev) == (0.0, 0.05)


@pytest.mark.parametrize("name, cls", [
    ("glorot_uniform", "GlorotUniform"), ("he_normal", "HeNormal"), ("lecun_uniform", "LecunUniform"),
    ("random_normal", "RandomNormal"), ("truncated_normal", "TruncatedNormal"), ("zeros", "Zeros"),
    ("ones", "Ones"), ("orthogonal", "Orthogonal"), ("identity", "Identity"), ("Constant", "Constant"),
    ("variance_scaling", "VarianceScaling"),
])
def test_names(name, cls):
    assert type(initializers.get(name)).__name__ == cls


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="Could not interpret initializer") as info:
        initializers.get("glorot_uniformm")
    assert "glorot_uniform" in str(info.value) and "he_normal" in str(info.value)


def test_get_instances_callables_and_dicts():
    instance = initializers.HeUniform(seed=1)
    assert initializers.get(instance) is instance
    assert type(initializers.get(initializers.HeUniform)) is initializers.HeUniform

    def fives(shape, dtype=None):
        return np.full(shape, 5.0, dtype)

    assert initializers.get(fives) is fives
    assert initializers.get(None) is None
    from_dict = initializers.get({"class_name": "RandomUniform",
                                  "config": {"minval": 1.0, "maxval": 2.0}})
    w = from_dict((1000,))
    assert w.min() >= 1.0 and w.max() < 2.0
    with pytest.raises(ValueError, match="class_name"):
        initializers.get({"config": {}})


@pytest.mark.parametrize("init", [
    initializers.Zeros(), initializers.Constant(2.5), initializers.RandomUniform(-1.0, 3.0, seed=4),
    initializers.RandomNormal(1.0, 2.0, seed=5), initializers.TruncatedNormal(0.5, 0.1, seed=6),
    initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=7), initializers.GlorotNormal(seed=8),
    initializers.HeUniform(seed=9), initializers.Orthogonal(gain=0.5, seed=10),
    initializers.Identity(gain=2.0),
])
def test_config_round_trip(init):
    config = initializers.serialize(init)
    assert config["class_name"] == type(init).__name__
    again = initializers.get(config)
    assert type(again) is type(init) and again.get_config() == init.get_config()
    np.testing.assert_array_equal(again((4, 4)), init((4, 4)))


def test_np_random_seed_alone_repeats_a_run_as_keras_1_did(monkeypatch):
    """Before any keras.utils.set_random_seed, weights, dropout and shuffling all draw from
    numpy's global state: the tutorials' `np.random.seed(9)` makes a run repeat."""
    from nncompile import keras

    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    monkeypatch.setattr(initializers, "_generator", None)   # as in a fresh process
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
    runs = []
    for _ in range(2):
        np.random.seed(9)
        model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4, activation="relu"),
                                  keras.layers.Dropout(0.5), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)
    np.random.seed(9)
    again = initializers.GlorotUniform()((3, 4))
    np.random.seed(10)
    assert not np.array_equal(initializers.GlorotUniform()((3, 4)), again)


def test_orthogonal_draws_on_one_blas_thread_and_gives_the_count_back():
    """OpenBLAS's threads spin-wait for each other: with the other core busy, a 512 x 128 QR on two
    threads took 1.7 s. The draw runs on this thread's BLAS alone, and leaves the count as it was."""
    from nncompile.keras.initializers import _one_blas_thread, _openblas_thread_setter
    setter = _openblas_thread_setter()
    if setter is None:
        pytest.skip("numpy's BLAS has no per-thread count")
    before = setter(3)
    setter(before)
    with _one_blas_thread():
        assert setter(1) == 1
        q = initializers.Orthogonal(seed=2)((128, 512))
    assert setter(before) == before
    np.testing.assert_allclose(q @ q.T, np.eye(128), atol=1e-5)


def test_an_initializer_that_defines_no_call_or_no_draw_says_so():
    class Bare(initializers.Initializer):
        pass

    class Undrawn(initializers.RandomInitializer):
        pass

    with pytest.raises(NotImplementedError, match=r"must implement the `__call__\(\)` method \(Bare does not\)"):
        Bare()((2, 3))
    with pytest.raises(NotImplementedError, match="Undrawn does not define _draw"):
        Undrawn(seed=1)((2, 3))


def test_variance_scaling_fans_from_given_axes_and_keras_config():
    """Keras 3.15's input_axes / output_axes: the fans are the products of those axes (an
    EinsumDense kernel's), and the configs carry them (None by default), as Keras's do."""
    draw = initializers.VarianceScaling(2.0, "fan_in", "uniform", seed=0, input_axes=[0, 1], output_axes=[2])
    values = draw((4, 8, 16))
    limit = np.sqrt(3 * 2.0 / 32)
    assert np.abs(values).max() <= limit and np.abs(values).max() > 0.95 * limit
    assert initializers.GlorotUniform().get_config() == {"seed": None, "input_axes": None, "output_axes": None}
    config = initializers.serialize(draw)["config"]
    assert (config["input_axes"], config["output_axes"]) == ([0, 1], [2])
    again = initializers.deserialize(initializers.serialize(draw))
    np.testing.assert_array_equal(again((4, 8, 16)), values)
