"""Losses against float64 numpy formulas written here (and values printed in Keras's own docs),
emitted into graphs with a symbolic batch and run on the reference interpreter and compiled."""
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, DType, TensorType
from nncompile.keras import losses
from nncompile.runtime import reference

EPS = 1e-7
ONE_MINUS_EPS = float(np.float32(1 - EPS))   # Keras clips in float32: 1 - 1e-7 rounds down
RNG = np.random.default_rng(0)
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- float64 references -----------------------------------------------------------------------

def log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def normalized(x):
    return x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), EPS)


def hinge_labels(t):
    return 2 * t - 1 if np.isin(t, (0, 1)).all() else t


def bce(t, p, from_logits=False, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:   # -log(sigmoid(x)) = logaddexp(0, -x), written independently of the code
        return (t * np.logaddexp(0, -p) + (1 - t) * np.logaddexp(0, p)).mean(-1)
    p = np.clip(p, EPS, ONE_MINUS_EPS)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(-1)


def log_probabilities(p, from_logits):
    if from_logits:
        return log_softmax(p)
    return np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, ONE_MINUS_EPS))


def cce(t, p, from_logits=False, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + label_smoothing / t.shape[-1]
    log_p = log_probabilities(p, from_logits)
    return -(t * log_p).sum(-1)


def scce(t, p, from_logits=False):
    t = t.reshape(p.shape[:-1]).astype(int)
    log_p = log_probabilities(p, from_logits)
    return -np.take_along_axis(log_p, t[..., None], -1)[..., 0]


def huber(t, p, delta=1.0):
    e = np.abs(p - t)
    return np.where(e <= delta, 0.5 * e * e, delta * e - 0.5 * delta * delta).mean(-1)


REFERENCES = {
    "mean_squared_error": lambda t, p: ((t - p) ** 2).mean(-1),
    "mean_absolute_error": lambda t, p: np.abs(t - p).mean(-1),
    "mean_absolute_percentage_error":
        lambda t, p: 100 * (np.abs(t - p) / np.maximum(np.abs(t), EPS)).mean(-1),
    "mean_squared_logarithmic_error":
        lambda t, p: ((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2).mean(-1),
    "cosine_similarity": lambda t, p: -(normalized(t) * normalized(p)).sum(-1),
    "huber": huber,
    "log_cosh": lambda t, p: (np.logaddexp(p - t, t - p) - np.log(2)).mean(-1),
    "hinge": lambda t, p: np.maximum(1 - hinge_labels(t) * p, 0).mean(-1),
    "squared_hinge": lambda t, p: (np.maximum(1 - hinge_labels(t) * p, 0) ** 2).mean(-1),
    "categorical_hinge": lambda t, p: np.maximum(((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0),
    "kl_divergence":
        lambda t, p: (np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1))).sum(-1),
    "poisson": lambda t, p: (p - t * np.log(p + EPS)).mean(-1),
    "binary_crossentropy": bce,
    "categorical_crossentropy": cce,
    "sparse_categorical_crossentropy": scce,
}


def draw(kind, shape, rng=RNG):
    """Targets and predictions of the kinds the losses expect (float64)."""
    classes = shape[-1]
    if kind == "real":
        return rng.normal(size=shape)
    if kind == "positive":
        return rng.uniform(0.05, 3.0, size=shape)
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if kind == "signs":
        return rng.choice([-1.0, 1.0], size=shape)
    if kind == "probabilities":
        e = np.exp(rng.normal(size=shape))
        return e / e.sum(-1, keepdims=True)
    if kind == "unit":
        return rng.uniform(0.01, 0.99, size=shape)
    if kind == "onehot":
        return np.eye(classes)[rng.integers(0, classes, size=shape[:-1])]
    if kind == "indices":
        return rng.integers(0, classes, size=shape[:-1])
    raise AssertionError(kind)


# (name, loss object, target kind, prediction kind, options for the reference)
CASES = [
    ("mean_squared_error", losses.MeanSquaredError(), "real", "real", {}),
    ("mean_absolute_error", losses.MeanAbsoluteError(), "real", "real", {}),
    ("mean_absolute_percentage_error", losses.MeanAbsolutePercentageError(), "real", "real", {}),
    ("mean_squared_logarithmic_error", losses.MeanSquaredLogarithmicError(), "positive", "real", {}),
    ("cosine_similarity", losses.CosineSimilarity(), "real", "real", {}),
    ("huber", losses.Huber(), "real", "real", {}),
    ("huber", losses.Huber(delta=0.3), "real", "real", {"delta": 0.3}),
    ("log_cosh", losses.LogCosh(), "real", "real", {}),
    ("hinge", losses.Hinge(), "binary", "real", {}),
    ("hinge", losses.Hinge(), "signs", "real", {}),
    ("squared_hinge", losses.SquaredHinge(), "binary", "real", {}),
    ("categorical_hinge", losses.CategoricalHinge(), "onehot", "real", {}),
    ("kl_divergence", losses.KLDivergence(), "probabilities", "probabilities", {}),
    ("poisson", losses.Poisson(), "positive", "positive", {}),
    ("binary_crossentropy", losses.BinaryCrossentropy(), "binary", "unit", {}),
    ("binary_crossentropy", losses.BinaryCrossentropy(from_logits=True), "binary", "real",
     {"from_logits": True}),
    ("binary_crossentropy", losses.BinaryCrossentropy(label_smoothing=0.2), "binary", "unit",
     {"label_smoothing": 0.2}),
    ("categorical_crossentropy", losses.CategoricalCrossentropy(), "onehot", "probabilities", {}),
    ("categorical_crossentropy", losses.CategoricalCrossentropy(from_logits=True), "onehot", "real",
     {"from_logits": True}),
    ("categorical_crossentropy", losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     "onehot", "real", {"from_logits": True, "label_smoothing": 0.1}),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy(), "indices", "probabilities",
     {}),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy(from_logits=True), "indices",
     "real", {"from_logits": True}),
]
IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(CASES)]


# --- running emitted graphs -------------------------------------------------------------------

def ir_dtype(array):
    return DType.from_numpy(array.dtype)


def loss_graph(loss, t, p, w):
    """The loss of one batch as a graph whose inputs have a symbolic batch dimension."""
    b = Builder(name="loss")
    inputs = [b.input(name, TensorType(ir_dtype(a), (BATCH, *a.shape[1:])))
              for name, a in (("y_true", t), ("y_pred", p), ("weight", w)) if a is not None]
    weight = inputs[2] if w is not None else None
    return b.finish([loss.emit(b, inputs[0], inputs[1], weight)], ["loss"])


@functools.lru_cache(maxsize=None)
def _compiled(text):
    return nncompile.compile(_GRAPHS[text])


_GRAPHS = {}


def run_both(loss, t, p, w=None, rtol=2e-5):
    """The emitted loss on the reference interpreter, checked against the compiled graph."""
    arrays = [a for a in (t, p, w) if a is not None]
    graph = loss_graph(loss, t, p, w)
    expected = reference.run(graph, arrays)[0]
    _GRAPHS.setdefault(str(graph), graph)
    compiled = _compiled(str(graph))(*arrays)
    np.testing.assert_allclose(compiled, expected, rtol=rtol, atol=1e-6)
    return expected


def f32(x):
    return np.asarray(x, np.float32)


def as_targets(name, t):
    return t.astype(np.int32) if name == "sparse_categorical_crossentropy" else f32(t)


# --- every loss against numpy ------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name, loss, t_kind, p_kind, options", CASES, ids=IDS)
def test_loss_matches_numpy(name, loss, t_kind, p_kind, options, weighted):
    shape = (6, 4)
    t, p = draw(t_kind, shape), draw(p_kind, shape)
    w = RNG.uniform(0, 2, size=6) if weighted else None
    per_sample = REFERENCES[name](t, p, **options)
    expected = (per_sample * (1 if w is None else w)).mean()
    got = run_both(loss, as_targets(name, t), f32(p), None if w is None else f32(w))
    assert got.shape == ()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, loss, t_kind, p_kind, options", CASES, ids=IDS)
def test_function_is_per_sample_and_eager(name, loss, t_kind, p_kind, options):
    shape = (5, 3)
    t, p = draw(t_kind, shape), draw(p_kind, shape)
    function = getattr(losses, name)
    got = function(as_targets(name, t), p, **options)
    assert got.shape == (5,) and got.dtype == np.float32
    np.testing.assert_allclose(got, REFERENCES[name](t, p, **options), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss(as_targets(name, t), p), got.mean(), rtol=1e-5, atol=1e-7)


@FEW
@given(batch=st.integers(1, 5), inner=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       classes=st.integers(2, 5), seed=st.integers(0, 2**31))
def test_random_shapes_match_numpy(batch, inner, classes, seed):
    rng = np.random.default_rng(seed)
    shape = (batch, *inner, classes)
    t, logits = draw("onehot", shape, rng), rng.normal(size=shape) * 3
    got = losses.CategoricalCrossentropy(from_logits=True, reduction=None)(f32(t), f32(logits))
    np.testing.assert_allclose(got, cce(t, logits, from_logits=True), rtol=1e-4, atol=1e-5)
    labels = draw("indices", shape, rng)
    got = losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(labels, f32(logits))
    np.testing.assert_allclose(got, scce(labels, logits, from_logits=True), rtol=1e-4, atol=1e-5)
    t, p = rng.normal(size=shape), rng.normal(size=shape)
    np.testing.assert_allclose(losses.MeanSquaredError()(f32(t), f32(p)), ((t - p) ** 2).mean(), rtol=1e-4)


@pytest.mark.parametrize("name, loss, t_kind, p_kind, options", CASES, ids=IDS)
def test_gradient_matches_central_differences(name, loss, t_kind, p_kind, options):
    from nncompile.passes.autodiff import gradients

    rng = np.random.default_rng(7)
    t, p = as_targets(name, draw(t_kind, (3, 4), rng)), draw(p_kind, (3, 4), rng)
    loss = type(loss)(**{**loss.get_config(), "dtype": "float64"})
    b = Builder(name="grad")
    y_true = b.input("y_true", TensorType(ir_dtype(t), (BATCH, *t.shape[1:])))
    y_pred = b.input("y_pred", TensorType(DType.f64, (BATCH, 4)))
    value = loss.emit(b, y_true, y_pred)
    graph = b.finish([value, *gradients(b.graph, value, [y_pred])], ["loss", "grad"])
    grad = reference.run(graph, [t, p])[1]
    h, numeric = 1e-6, np.zeros_like(p)
    for i in np.ndindex(p.shape):
        step = np.zeros_like(p)
        step[i] = h
        ahead, behind = reference.run(graph, [t, p + step])[0], reference.run(graph, [t, p - step])[0]
        numeric[i] = (ahead - behind) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


# --- values printed in Keras's documentation --------------------------------------------------

def test_keras_documented_values():
    y_true, logits = np.array([[0, 1], [0, 0]]), np.array([[-18.6, 0.51], [2.94, -12.8]])
    bce_logits = losses.BinaryCrossentropy(from_logits=True)
    assert float(bce_logits(y_true, logits)) == pytest.approx(0.8654, abs=1e-4)
    assert float(bce_logits(y_true, logits, sample_weight=[0.8, 0.2])) == pytest.approx(0.243, abs=1e-3)
    assert float(losses.BinaryCrossentropy(from_logits=True, reduction="sum")(y_true, logits)) == \
        pytest.approx(1.730, abs=1e-3)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True, reduction=None)(y_true, logits),
                               [0.235, 1.496], atol=1e-3)
    probabilities = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    scce_loss = losses.SparseCategoricalCrossentropy()
    assert float(scce_loss([1, 2], probabilities)) == pytest.approx(1.177, abs=1e-3)
    assert float(scce_loss([1, 2], probabilities, sample_weight=np.array([0.3, 0.7]))) == \
        pytest.approx(0.814, abs=1e-3)
    np.testing.assert_allclose(losses.categorical_crossentropy([[0, 1, 0], [0, 0, 1]], probabilities),
                               [0.0513, 2.303], atol=1e-3)
    cosine = losses.cosine_similarity([[0., 1.], [1., 1.], [1., 1.]], [[1., 0.], [1., 1.], [-1., -1.]])
    np.testing.assert_allclose(cosine, [0, -1, 1], atol=1e-6)
    assert losses.huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).mean() == pytest.approx(0.155, abs=1e-3)
    log_cosh = losses.log_cosh([[0., 1.], [0., 0.]], [[1., 1.], [0., 0.]])
    assert log_cosh.mean() == pytest.approx(0.108, abs=1e-3)


# --- reductions and sample weights -------------------------------------------------------------

@pytest.mark.parametrize("weight_shape", [(6,), (6, 1)])
def test_reductions_with_sample_weight(weight_shape):
    t, p = draw("real", (6, 3)), draw("real", (6, 3))
    w = RNG.uniform(0, 2, size=weight_shape)
    per_sample = ((t - p) ** 2).mean(-1) * w.reshape(6)
    expected = {"sum_over_batch_size": per_sample.mean(), "mean": per_sample.mean(), "sum": per_sample.sum(),
                "mean_with_sample_weight": per_sample.sum() / w.sum()}
    for reduction, value in expected.items():
        got = run_both(losses.MeanSquaredError(reduction=reduction), f32(t), f32(p), f32(w))
        np.testing.assert_allclose(got, value, rtol=1e-5)
    for reduction in (None, "none"):   # Keras expands the losses to a column weight's shape
        got = losses.MeanSquaredError(reduction=reduction)(f32(t), f32(p), f32(w))
        np.testing.assert_allclose(got, per_sample.reshape(weight_shape), rtol=1e-5)


def test_zero_weights_give_zero_not_nan():
    t, p = f32(draw("real", (4, 2))), f32(draw("real", (4, 2)))
    zero = np.zeros(4, np.float32)
    assert run_both(losses.MeanSquaredError(reduction="mean_with_sample_weight"), t, p, zero) == 0.0
    assert run_both(losses.MeanSquaredError(), t, p, zero) == 0.0


def test_rank_one_targets_meet_one_unit_outputs():
    t, p = draw("binary", (7,)), draw("unit", (7, 1))
    got = run_both(losses.BinaryCrossentropy(), f32(t), f32(p))
    np.testing.assert_allclose(got, bce(t[:, None], p).mean(), rtol=1e-5)
    got = run_both(losses.MeanSquaredError(), f32(t), f32(p), f32(np.arange(7)))
    np.testing.assert_allclose(got, (((t - p[:, 0]) ** 2) * np.arange(7)).mean(), rtol=1e-5)


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`.*Received: reduction=avg"):
        losses.MeanSquaredError(reduction="avg")


# --- extreme values ---------------------------------------------------------------------------

def test_crossentropy_of_exact_zero_and_one_probabilities_is_clipped():
    t = np.array([[0.0, 1.0, 0.0, 1.0]])
    p = np.array([[0.0, 1.0, 1.0, 0.0]])
    got = run_both(losses.BinaryCrossentropy(reduction=None), f32(t), f32(p))
    np.testing.assert_allclose(got, bce(t, p), rtol=1e-5)
    assert np.isfinite(got).all() and got[0] > 7
    onehot, probabilities = np.eye(3)[[0, 2]], np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    got = run_both(losses.CategoricalCrossentropy(reduction=None), f32(onehot), f32(probabilities))
    np.testing.assert_allclose(got, cce(onehot, probabilities), rtol=1e-5)
    got = run_both(losses.SparseCategoricalCrossentropy(reduction=None), np.array([0, 2], np.int32),
                   f32(probabilities))
    np.testing.assert_allclose(got, scce(np.array([0, 2]), probabilities), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [30.0, 1e4, 1e30])
def test_huge_logits_stay_finite_and_exact(scale):
    logits = np.array([[1.0, -1.0, 0.5], [-0.25, 1.0, -1.0]]) * scale
    t = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    exact = logits.astype(np.float32).astype(np.float64)   # the logits the float32 graph sees
    loss = losses.BinaryCrossentropy(from_logits=True, reduction=None)
    got = run_both(loss, f32(t), f32(logits), rtol=1e-4)
    np.testing.assert_allclose(got, bce(t, exact, from_logits=True), rtol=1e-5)
    onehot = np.eye(3)[[1, 2]]
    got = run_both(losses.CategoricalCrossentropy(from_logits=True, reduction=None), f32(onehot), f32(logits),
                   rtol=1e-4)
    np.testing.assert_allclose(got, cce(onehot, exact, from_logits=True), rtol=1e-5)
    got = run_both(losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None),
                   np.array([1, 2], np.int64), f32(logits), rtol=1e-4)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, scce(np.array([1, 2]), exact, from_logits=True), rtol=1e-5)


def test_cosine_similarity_of_a_zero_vector_is_zero():
    got = losses.cosine_similarity(np.zeros((2, 3)), np.ones((2, 3)))
    np.testing.assert_array_equal(got, [0.0, 0.0])


# --- labels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
@pytest.mark.parametrize("column", [False, True], ids=["flat", "column"])
def test_sparse_labels_of_any_dtype_and_shape(dtype, column):
    labels = np.array([2, 0, 1, 2])
    logits = draw("real", (4, 3))
    t = labels.astype(dtype)[:, None] if column else labels.astype(dtype)
    got = run_both(losses.SparseCategoricalCrossentropy(from_logits=True), t, f32(logits))
    np.testing.assert_allclose(got, scce(labels, logits, from_logits=True).mean(), rtol=1e-5)


def test_sparse_ignore_class_averages_over_the_other_labels():
    labels, logits = np.array([2, -1, 1, -1, 0]), draw("real", (5, 3))
    w = RNG.uniform(0.5, 2, 5)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    kept = labels != -1
    per_sample = scce(labels[kept], logits[kept], from_logits=True)
    np.testing.assert_allclose(run_both(loss, labels.astype(np.int32), f32(logits)), per_sample.mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(run_both(loss, labels.astype(np.int32), f32(logits), f32(w)),
                               (per_sample * w[kept]).sum() / kept.sum(), rtol=1e-5)
    np.testing.assert_array_equal(losses.sparse_categorical_crossentropy(labels, logits, from_logits=True,
                                                                         ignore_class=-1)[~kept], 0.0)


def test_hinge_keeps_labels_that_are_not_all_binary():
    t, p = np.array([[0.0, 1.0, -1.0]]), np.array([[0.3, -0.2, 0.5]])
    np.testing.assert_allclose(losses.hinge(t, p), np.maximum(1 - t * p, 0).mean(-1), rtol=1e-6)


def test_shape_mismatch_of_crossentropy_is_an_error():
    with pytest.raises(ValueError, match="must have the same shape"):
        losses.binary_crossentropy(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same shape up until the last dimension"):
        losses.sparse_categorical_crossentropy(np.zeros((3,)), np.zeros((2, 4)))


# --- identifiers and serialization ------------------------------------------------------------

NAMES = {
    losses.MeanSquaredError: ["mse", "MSE", "mean_squared_error", "MeanSquaredError"],
    losses.MeanAbsoluteError: ["mae", "MAE", "mean_absolute_error", "MeanAbsoluteError"],
    losses.MeanAbsolutePercentageError: ["mape", "MAPE", "mean_absolute_percentage_error",
                                         "MeanAbsolutePercentageError"],
    losses.MeanSquaredLogarithmicError: ["msle", "MSLE", "mean_squared_logarithmic_error",
                                         "MeanSquaredLogarithmicError"],
    losses.CosineSimilarity: ["cosine_similarity", "CosineSimilarity"],
    losses.Huber: ["huber", "huber_loss", "Huber"],
    losses.LogCosh: ["log_cosh", "logcosh", "LogCosh"],
    losses.Hinge: ["hinge", "Hinge"],
    losses.SquaredHinge: ["squared_hinge", "SquaredHinge"],
    losses.CategoricalHinge: ["categorical_hinge", "CategoricalHinge"],
    losses.KLDivergence: ["kld", "KLD", "kl_divergence", "kullback_leibler_divergence", "KLDivergence"],
    losses.Poisson: ["poisson", "Poisson"],
    losses.BinaryCrossentropy: ["bce", "BCE", "binary_crossentropy", "BinaryCrossentropy"],
    losses.CategoricalCrossentropy: ["categorical_crossentropy", "CategoricalCrossentropy"],
    losses.SparseCategoricalCrossentropy: ["sparse_categorical_crossentropy",
                                           "SparseCategoricalCrossentropy"],
}


@pytest.mark.parametrize("cls, names", NAMES.items(), ids=[c.__name__ for c in NAMES])
def test_get_by_every_keras_name(cls, names):
    for name in names:
        assert type(losses.get(name)) is cls
    function = getattr(losses, cls().fn.__name__)
    assert type(losses.get(function)) is cls


def test_get_passes_instances_and_none_and_rejects_the_rest():
    loss = losses.Huber(delta=2.0)
    assert losses.get(loss) is loss and losses.get(None) is None
    assert type(losses.get(losses.Poisson)) is losses.Poisson
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 'crossentropyy'"):
        losses.get("crossentropyy")
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 42"):
        losses.get(42)


@pytest.mark.parametrize("loss", [
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, reduction="sum", name="bce_x"),
    losses.CategoricalCrossentropy(label_smoothing=0.2, axis=-1),
    losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3),
    losses.Huber(delta=0.5, reduction=None), losses.CosineSimilarity(axis=-1), losses.KLDivergence(name="k")],
    ids=lambda loss: type(loss).__name__)
def test_serialization_round_trip(loss):
    config = losses.serialize(loss)
    assert config["class_name"] == type(loss).__name__ and config["module"] == "keras.losses"
    again = losses.deserialize(config)
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()


def test_configs_have_keras_keys_and_defaults():
    assert losses.BinaryCrossentropy().get_config() == {
        "name": "binary_crossentropy", "reduction": "sum_over_batch_size", "from_logits": False,
        "label_smoothing": 0.0, "axis": -1}
    assert losses.SparseCategoricalCrossentropy().get_config() == {
        "name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size", "from_logits": False,
        "ignore_class": None}
    default = "sum_over_batch_size"
    assert losses.Huber().get_config() == {"name": "huber_loss", "reduction": default, "delta": 1.0}
    assert losses.MeanSquaredError().get_config() == {"name": "mean_squared_error", "reduction": default}


def test_emit_builds_a_scalar_graph_of_ir_ops_only():
    graph = loss_graph(losses.CategoricalCrossentropy(from_logits=True), f32(np.eye(3)), f32(np.eye(3)), None)
    assert graph.outputs[0].type == TensorType(DType.f32, ())
    assert {n.op for n in graph.nodes} <= set(nncompile.ir.OPS) - {"gather"}


# --- target checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("labels", [np.array([1, 0, 3]), np.array([[1], [0], [3]])], ids=["flat", "column"])
def test_integer_labels_with_categorical_crossentropy_suggest_sparse(labels):
    with pytest.raises(ValueError, match=r"(?s)`categorical_crossentropy` expects targets to be binary "
                                         r"matrices.*to_categorical.*`sparse_categorical_crossentropy`"):
        losses.check_targets("categorical_crossentropy", labels, (None, 10))


def test_one_hot_labels_with_sparse_crossentropy_suggest_categorical():
    with pytest.raises(ValueError, match="use the loss `categorical_crossentropy`"):
        losses.check_targets(losses.SparseCategoricalCrossentropy(), np.eye(4)[[0, 1]], (None, 4))


def test_class_indices_with_binary_crossentropy_suggest_sparse():
    with pytest.raises(ValueError, match="use the loss `sparse_categorical_crossentropy`"):
        losses.check_targets("binary_crossentropy", np.array([3, 1, 2]), ("?", 5))


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 5, 1]), r"label value of 5 which is outside the valid range of \[0, 5\)"),
    (np.array([0, -1]), r"label value of -1 which is outside"),
    (np.array([0.0, 1.5]), "expects integer class indices"),
    (np.zeros((2, 3)), "expects integer class indices of shape"),
])
def test_bad_sparse_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        losses.check_targets("sparse_categorical_crossentropy", labels, (None, 5))


def test_other_shape_mismatches_name_the_loss():
    with pytest.raises(ValueError, match=r"shape \(4, 3\) was passed for an output of shape \(None, 2\) "
                                         r"while using as loss `mean_squared_error`"):
        losses.check_targets("mse", np.zeros((4, 3)), (None, 2))


@pytest.mark.parametrize("loss, labels, output_shape", [
    ("categorical_crossentropy", np.eye(3)[[0, 2]], (None, 3)),
    ("sparse_categorical_crossentropy", np.array([0, 4]), (None, 5)),
    ("sparse_categorical_crossentropy", np.array([[0], [4]], np.float32), (None, 5)),
    ("sparse_categorical_crossentropy", np.zeros((2, 7), np.int32), (None, 7, 5)),
    ("binary_crossentropy", np.array([0, 1, 1]), (None, 1)),
    ("binary_crossentropy", np.array([[0, 1]] * 3), (None, 2)),
    ("mse", np.zeros(4), (None, 1)),
    ("mse", np.zeros((4, 1)), (None,)),
    ("mse", np.zeros((4, 2, 3)), (None, None, 3)),
])
def test_fitting_targets_pass(loss, labels, output_shape):
    losses.check_targets(loss, labels, output_shape)
