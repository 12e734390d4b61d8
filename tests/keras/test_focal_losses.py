"""The focal losses (BinaryFocalCrossentropy, CategoricalFocalCrossentropy and their functions)
against float64 numpy formulas written here from Keras 3's source, against values real Keras
3.15.1 computed, their gradients against central differences, and in compiled fit / evaluate /
save / load."""
import json
import zipfile

import numpy as np
import pytest
from finite_differences import gradients as numeric_gradients

import nncompile
from nncompile import keras
from nncompile.ir import BATCH, Builder, DType, TensorType
from nncompile.keras import layers, losses, metrics
from nncompile.runtime import reference

EPS = 1e-7
ONE_MINUS_EPS = float(np.float32(1 - EPS))   # Keras clips in float32: 1 - 1e-7 rounds down
RNG = np.random.default_rng(0)


# --- float64 references, from keras/src/losses/losses.py (Keras 3.15) -------------------------

def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def bfce(t, p, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
         label_smoothing=0.0, axis=-1):
    """binary_focal_crossentropy: p = sigmoid(logits); bce of p clipped to [eps, 1 - eps];
    focal factor (1 - p_t) ** gamma of the unclipped p; labels smoothed toward 0.5."""
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        p = sigmoid(p)
    clipped = np.clip(p, EPS, ONE_MINUS_EPS)
    bce = -(t * np.log(clipped) + (1 - t) * np.log(1 - clipped))
    p_t = t * p + (1 - t) * (1 - p)
    focal = (1 - p_t) ** gamma * bce
    if apply_class_balancing:
        focal = (t * alpha + (1 - t) * (1 - np.asarray(alpha))) * focal
    return focal.mean(axis)


def cfce(t, p, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    """categorical_focal_crossentropy: softmax of logits, normalized and clipped probabilities,
    sum(alpha * (1 - p) ** gamma * -t * log(p)); labels smoothed toward 1 / num_classes."""
    t = t * (1 - label_smoothing) + label_smoothing / t.shape[-1]
    if from_logits:
        p = softmax(p, axis)
    p = np.clip(p / p.sum(axis, keepdims=True), EPS, ONE_MINUS_EPS)
    return ((1 - p) ** gamma * np.asarray(alpha) * -t * np.log(p)).sum(axis)


REFERENCES = {"binary_focal_crossentropy": bfce, "categorical_focal_crossentropy": cfce}


def draw(kind, shape, rng=RNG):
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if kind == "unit":
        return rng.uniform(0.02, 0.98, size=shape)
    if kind == "logits":
        return rng.normal(size=shape) * 2
    if kind == "onehot":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "probabilities":
        e = np.exp(rng.normal(size=shape))
        return e / e.sum(-1, keepdims=True)
    if kind == "positive":   # unnormalized scores: the loss normalizes them
        return rng.uniform(0.1, 2.0, size=shape)
    raise AssertionError(kind)


# (function name, options, target kind, prediction kind)
CASES = [
    ("binary_focal_crossentropy", {}, "binary", "unit"),
    ("binary_focal_crossentropy", {"gamma": 0.0}, "binary", "unit"),
    ("binary_focal_crossentropy", {"gamma": 2.5, "from_logits": True}, "binary", "logits"),
    ("binary_focal_crossentropy", {"gamma": 1.0, "label_smoothing": 0.2}, "binary", "unit"),
    ("binary_focal_crossentropy", {"apply_class_balancing": True}, "binary", "unit"),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.7, "gamma": 3.0,
                                   "from_logits": True, "label_smoothing": 0.1}, "binary", "logits"),
    ("binary_focal_crossentropy", {"gamma": 0.5}, "unit", "unit"),   # soft labels
    ("categorical_focal_crossentropy", {}, "onehot", "probabilities"),
    ("categorical_focal_crossentropy", {"gamma": 0.0, "alpha": 1.0}, "onehot", "probabilities"),
    ("categorical_focal_crossentropy", {"from_logits": True}, "onehot", "logits"),
    ("categorical_focal_crossentropy", {"gamma": 3.0, "alpha": 0.5, "label_smoothing": 0.1}, "onehot",
     "positive"),
    ("categorical_focal_crossentropy", {"alpha": [0.1, 0.2, 0.3, 0.4], "gamma": 1.5, "from_logits": True,
                                        "label_smoothing": 0.2}, "onehot", "logits"),
]
IDS = [f"{name.split('_')[0]}-{i}" for i, (name, *_) in enumerate(CASES)]
CLASSES = {"binary_focal_crossentropy": losses.BinaryFocalCrossentropy,
           "categorical_focal_crossentropy": losses.CategoricalFocalCrossentropy}


def f32(x):
    return np.asarray(x, np.float32)


def loss_graph(loss, t, p, w):
    """The loss of one batch as a graph whose inputs have a symbolic batch dimension."""
    b = Builder(name="loss")
    inputs = [b.input(name, TensorType(DType.from_numpy(a.dtype), (BATCH, *a.shape[1:])))
              for name, a in (("y_true", t), ("y_pred", p), ("weight", w)) if a is not None]
    return b.finish([loss.emit(b, inputs[0], inputs[1], inputs[2] if w is not None else None)], ["loss"])


def run_both(loss, t, p, w=None, rtol=2e-5):
    """The emitted loss on the reference interpreter, checked against the compiled graph."""
    arrays = [a for a in (t, p, w) if a is not None]
    graph = loss_graph(loss, t, p, w)
    expected = reference.run(graph, arrays)[0]
    np.testing.assert_allclose(nncompile.compile(graph)(*arrays), expected, rtol=rtol, atol=1e-6)
    return expected


# --- against numpy ----------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name, options, t_kind, p_kind", CASES, ids=IDS)
def test_loss_matches_numpy_reference_and_compiled(name, options, t_kind, p_kind, weighted):
    t, p = draw(t_kind, (6, 4)), draw(p_kind, (6, 4))
    w = RNG.uniform(0, 2, size=6) if weighted else None
    expected = (REFERENCES[name](t, p, **options) * (1 if w is None else w)).mean()
    got = run_both(CLASSES[name](**options), f32(t), f32(p), None if w is None else f32(w))
    assert got.shape == ()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name, options, t_kind, p_kind", CASES, ids=IDS)
def test_function_is_per_sample_and_eager(name, options, t_kind, p_kind):
    t, p = draw(t_kind, (5, 4)), draw(p_kind, (5, 4))
    got = getattr(losses, name)(f32(t), p, **options)
    assert got.shape == (5,) and got.dtype == np.float32
    np.testing.assert_allclose(got, REFERENCES[name](t, p, **options), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(CLASSES[name](**options)(f32(t), p), got.mean(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight",
                                       None, "none"])
def test_reductions_and_sample_weights(reduction):
    t, p = draw("binary", (5, 3)), draw("unit", (5, 3))
    w = RNG.uniform(0.1, 2, size=5)
    per_sample = bfce(t, p, gamma=3.0) * w
    expected = {"sum_over_batch_size": per_sample.mean(), "mean": per_sample.mean(), "sum": per_sample.sum(),
                "mean_with_sample_weight": per_sample.sum() / w.sum()}.get(reduction, per_sample)
    loss = losses.BinaryFocalCrossentropy(gamma=3.0, reduction=reduction)
    np.testing.assert_allclose(loss(f32(t), f32(p), sample_weight=f32(w)), expected, rtol=1e-5)
    onehot, scores = draw("onehot", (5, 3)), draw("positive", (5, 3))
    per_sample = cfce(onehot, scores) * w
    expected = {"sum_over_batch_size": per_sample.mean(), "mean": per_sample.mean(), "sum": per_sample.sum(),
                "mean_with_sample_weight": per_sample.sum() / w.sum()}.get(reduction, per_sample)
    loss = losses.CategoricalFocalCrossentropy(reduction=reduction)
    np.testing.assert_allclose(loss(f32(onehot), f32(scores), sample_weight=f32(w)), expected, rtol=1e-5)


def test_sequence_outputs_and_other_axes():
    t, p = draw("binary", (2, 3, 4)), draw("unit", (2, 3, 4))
    np.testing.assert_allclose(losses.binary_focal_crossentropy(t, p, axis=1), bfce(t, p, axis=1), rtol=1e-5)
    np.testing.assert_allclose(losses.BinaryFocalCrossentropy(reduction=None)(t, p), bfce(t, p), rtol=1e-5)
    onehot, logits = draw("onehot", (2, 3, 4)), draw("logits", (2, 3, 4))
    np.testing.assert_allclose(losses.categorical_focal_crossentropy(onehot, logits, from_logits=True),
                               cfce(onehot, logits, from_logits=True), rtol=1e-5)
    onehot = np.moveaxis(onehot, -1, 1)
    logits = np.moveaxis(logits, -1, 1)
    np.testing.assert_allclose(
        losses.categorical_focal_crossentropy(onehot, logits, from_logits=True, axis=1),
        cfce(onehot, logits, from_logits=True, axis=1), rtol=1e-5)


def test_extreme_logits_saturate_as_keras_does():
    """From logits Keras takes the clipped crossentropy of sigmoid(x): a confidently wrong logit
    costs -log(eps) (times its focal factor, 1), not |x|; huge logits stay finite."""
    t = np.array([[1.0, 0.0, 1.0, 0.0]])
    x = np.array([[-1e4, 1e4, 1e30, -1e30]])
    got = run_both(losses.BinaryFocalCrossentropy(from_logits=True, reduction=None), f32(t), f32(x))
    # sigmoid gives exactly 0 or 1: -log(eps) and -log(1 - (1 - eps)) for the wrong ones, 0 else
    np.testing.assert_allclose(got, [(-np.log(EPS) - np.log(1 - ONE_MINUS_EPS)) / 4], rtol=1e-5)
    np.testing.assert_allclose(got, bfce(t, f32(x).astype(np.float64), from_logits=True), rtol=1e-5)
    onehot, logits = np.eye(3)[[0, 2]], np.array([[-1e4, 1e4, 0.0], [1e30, -1e30, 5.0]])
    got = run_both(losses.CategoricalFocalCrossentropy(from_logits=True, reduction=None), f32(onehot),
                   f32(logits), rtol=1e-4)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, cfce(onehot, logits, from_logits=True), rtol=1e-5)


# --- values computed by real Keras -------------------------------------------------------------
# From Keras 3.15.1 (JAX backend): a one-off script (not kept) defined the float32 arrays YB, PB,
# XB, YC, PC, XC, W exactly as below, ran under KERAS_BACKEND=jax and printed, one line per value,
# `np.asarray(<expression>).tolist()` of these expressions (labelled as in its output):
#   from keras import losses as L
#   bfce_default:          L.BinaryFocalCrossentropy()(YB, PB)
#   bfce_logits_balanced:  L.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0,
#                                                    from_logits=True)(YB, XB)
#   bfce_smoothing_weighted: L.BinaryFocalCrossentropy(label_smoothing=0.2, gamma=1.5)(YB, PB, sample_weight=W)
#   bfce_none:             L.BinaryFocalCrossentropy(gamma=0.0, reduction=None)(YB, PB)
#   bfce_fn:               L.binary_focal_crossentropy(YB, XB, apply_class_balancing=True, from_logits=True,
#                                                      label_smoothing=0.1)
#   cfce_default:          L.CategoricalFocalCrossentropy()(YC, PC)
#   cfce_logits_smoothing: L.CategoricalFocalCrossentropy(gamma=0.5, from_logits=True,
#                                                         label_smoothing=0.1)(YC, XC)
#   cfce_alpha_list_weighted_sum: L.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.4], gamma=3.0,
#                                                                reduction="sum")(YC, PC, sample_weight=W)
#   cfce_fn:               L.categorical_focal_crossentropy(YC, XC, alpha=0.5, gamma=2.5, from_logits=True)

YB = f32([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]])
PB = f32([[0.1, 0.8, 0.55, 0.3], [0.95, 0.2, 0.02, 0.6], [0.999, 0.4, 0.7, 0.05]])
XB = f32([[-2.0, 1.5, 0.3, -0.7], [3.1, -1.2, -4.0, 0.4], [8.0, -0.2, 0.9, -30.0]])
YC = np.eye(4, dtype=np.float32)[[1, 3, 0]]
PC = f32([[0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1], [0.97, 0.01, 0.01, 0.01]])
XC = f32([[0.5, 2.0, -1.0, 0.0], [1.0, -2.0, 0.5, 0.25], [6.0, -3.0, 0.0, 1.0]])
W = f32([0.5, 1.0, 2.0])

KERAS_VALUES = [
    (lambda: losses.BinaryFocalCrossentropy()(YB, PB), 0.09782297164201736),
    (lambda: losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0,
                                            from_logits=True)(YB, XB), 0.030203411355614662),
    (lambda: losses.BinaryFocalCrossentropy(label_smoothing=0.2, gamma=1.5)(YB, PB, sample_weight=W),
     0.20527173578739166),
    (lambda: losses.BinaryFocalCrossentropy(gamma=0.0, reduction=None)(YB, PB),
     [0.3207539916038513, 0.20136627554893494, 0.5431393384933472]),
    (lambda: losses.binary_focal_crossentropy(YB, XB, apply_class_balancing=True, from_logits=True,
                                              label_smoothing=0.1),
     [0.01888136938214302, 0.010386887937784195, 0.1196964755654335]),
    (lambda: losses.CategoricalFocalCrossentropy()(YC, PC), 0.16223777830600739),
    (lambda: losses.CategoricalFocalCrossentropy(gamma=0.5, from_logits=True, label_smoothing=0.1)(YC, XC),
     0.1844071000814438),
    (lambda: losses.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.4], gamma=3.0,
                                                 reduction="sum")(YC, PC, sample_weight=W),
     0.6747031807899475),
    (lambda: losses.categorical_focal_crossentropy(YC, XC, alpha=0.5, gamma=2.5, from_logits=True),
     [0.007745698560029268, 0.4020063579082489, 3.828936812055872e-08]),
]


@pytest.mark.parametrize("index", range(len(KERAS_VALUES)))
def test_values_computed_by_keras(index):
    compute, expected = KERAS_VALUES[index]
    np.testing.assert_allclose(compute(), expected, rtol=2e-6, atol=1e-9)


def test_values_printed_in_keras_docs():
    y_true, logits = np.array([0, 1, 0, 0]), np.array([-18.6, 0.51, 2.94, -12.8])
    assert float(losses.BinaryFocalCrossentropy(gamma=2, from_logits=True)(y_true, logits)) == \
        pytest.approx(0.691, abs=1e-3)
    assert float(losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=2, from_logits=True)(
        y_true, logits)) == pytest.approx(0.51, abs=1e-3)
    y_true, logits = np.array([[0, 1], [0, 0]]), np.array([[-18.6, 0.51], [2.94, -12.8]])
    assert float(losses.BinaryFocalCrossentropy(gamma=3, from_logits=True)(y_true, logits, sample_weight=[
        0.8, 0.2])) == pytest.approx(0.133, abs=1e-3)
    assert float(losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=4, from_logits=True,
                                                reduction="sum")(y_true, logits)) == pytest.approx(0.914, abs=1e-3)
    np.testing.assert_allclose(losses.BinaryFocalCrossentropy(gamma=5, from_logits=True, reduction=None)(
        y_true, logits), [0.0017, 1.1561], atol=1e-4)
    y_true, probabilities = [[0., 1., 0.], [0., 0., 1.]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    cce = losses.CategoricalFocalCrossentropy()
    assert float(cce(y_true, probabilities)) == pytest.approx(0.23315276, rel=1e-6)
    assert float(cce(y_true, probabilities, sample_weight=np.array([0.3, 0.7]))) == pytest.approx(0.1632, abs=1e-4)
    np.testing.assert_allclose(losses.CategoricalFocalCrossentropy(reduction=None)(y_true, probabilities),
                               [3.2058331e-05, 4.6627346e-01], rtol=1e-6)


# --- gradients --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, t_kind, p_kind", CASES, ids=IDS)
def test_gradient_matches_central_differences(name, options, t_kind, p_kind):
    from nncompile.passes.autodiff import gradients

    rng = np.random.default_rng(7)
    t, p = draw(t_kind, (3, 4), rng), draw(p_kind, (3, 4), rng)
    loss = CLASSES[name](**options, dtype="float64")
    b = Builder(name="grad")
    y_true = b.input("y_true", TensorType(DType.f64, (BATCH, 4)))
    y_pred = b.input("y_pred", TensorType(DType.f64, (BATCH, 4)))
    value = loss.emit(b, y_true, y_pred)
    graph = b.finish([value, *gradients(b.graph, value, [y_pred])], ["loss", "grad"])
    grad = reference.run(graph, [t, p])[1]
    numeric, = numeric_gradients(lambda: float(reference.run(graph, [t, p])[0]), [p], eps=1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # the same gradient compiled, in float32
    loss = CLASSES[name](**options)
    b = Builder(name="grad32")
    y_true = b.input("y_true", TensorType(DType.f32, (BATCH, 4)))
    y_pred = b.input("y_pred", TensorType(DType.f32, (BATCH, 4)))
    value = loss.emit(b, y_true, y_pred)
    graph = b.finish([value, *gradients(b.graph, value, [y_pred])], ["loss", "grad"])
    compiled = nncompile.compile(graph)(f32(t), f32(p))
    np.testing.assert_allclose(compiled[1], grad, rtol=2e-4, atol=1e-6)


def test_gamma_zero_has_a_finite_gradient_at_certain_predictions():
    """pow(0, 0)'s gradient is 0 * 0 ** -1 = NaN; with gamma 0 there is no focal factor at all."""
    from nncompile.passes.autodiff import gradients

    b = Builder(name="grad")
    y_true, y_pred = b.input("t", TensorType(DType.f32, (2, 2))), b.input("p", TensorType(DType.f32, (2, 2)))
    value = losses.BinaryFocalCrossentropy(gamma=0.0).emit(b, y_true, y_pred)
    graph = b.finish([value, *gradients(b.graph, value, [y_pred])], ["loss", "grad"])
    t, p = f32([[1, 0], [1, 0]]), f32([[1, 0], [0.5, 0.5]])
    assert np.isfinite(reference.run(graph, [t, p])[1]).all()


# --- compiled training ------------------------------------------------------------------------

def _binary_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) > 0.2).astype(np.float32)[:, None]
    return x, y


def _categorical_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.argmax(x[:, :3] + 0.3 * x[:, 3:4], axis=1)]
    return x, y


@pytest.mark.parametrize("loss, activation, data, reference_loss", [
    ("binary_focal_crossentropy", "sigmoid", _binary_data, lambda y, p: bfce(y, p)),
    (losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0, from_logits=True),
     None, _binary_data, lambda y, p: bfce(y, p, True, 0.4, 3.0, True)),
    (losses.binary_focal_crossentropy, "sigmoid", _binary_data, lambda y, p: bfce(y, p)),
    ("categorical_focal_crossentropy", "softmax", _categorical_data, lambda y, p: cfce(y, p)),
    (losses.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], gamma=1.5, from_logits=True,
                                         label_smoothing=0.1), None, _categorical_data,
     lambda y, p: cfce(y, p, [0.2, 0.3, 0.5], 1.5, True, 0.1)),
    (losses.categorical_focal_crossentropy, "softmax", _categorical_data, lambda y, p: cfce(y, p)),
], ids=["bfce-name", "bfce-logits-object", "bfce-function", "cfce-name", "cfce-logits-object",
        "cfce-function"])
def test_fit_lowers_the_loss_and_evaluate_matches_numpy(loss, activation, data, reference_loss):
    keras.utils.set_random_seed(3)
    x, y = data()
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(8, activation="tanh"),
                              layers.Dense(y.shape[1], activation=activation)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss=loss)
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0] and after < 0.5 * before
    expected = reference_loss(y.astype(np.float64), model.predict(x, verbose=0).astype(np.float64)).mean()
    assert after == pytest.approx(expected, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("loss, data, reference_loss", [
    (losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=2.5, from_logits=True,
                                    label_smoothing=0.1), _binary_data,
     lambda y, p: bfce(y, p, True, 0.25, 2.5, True, 0.1)),
    (losses.CategoricalFocalCrossentropy(alpha=[0.5, 0.2, 0.3], gamma=3.0, from_logits=True), _categorical_data,
     lambda y, p: cfce(y, p, [0.5, 0.2, 0.3], 3.0, True)),
], ids=["bfce", "cfce"])
def test_a_compiled_sgd_step_follows_finite_differences_of_the_numpy_loss(loss, data, reference_loss):
    x, y = data(n=8)
    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(y.shape[1])])
    kernel, bias = rng.normal(size=(5, y.shape[1])) * 0.7, rng.normal(size=y.shape[1]) * 0.1
    model.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=loss)
    weights = [kernel.copy(), bias.copy()]
    grads = numeric_gradients(lambda: reference_loss(y, x @ weights[0] + weights[1]).mean(), weights, eps=1e-6)
    model.train_on_batch(x, y)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - lr * grads[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - lr * grads[1], rtol=1e-4, atol=1e-6)


def test_the_functions_are_keras_metrics_functions():
    x, y = _binary_data(n=16)
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="mse", metrics=[metrics.binary_focal_crossentropy])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    expected = bfce(y.astype(np.float64), model.predict(x, verbose=0).astype(np.float64)).mean()
    assert logs["binary_focal_crossentropy"] == pytest.approx(expected, rel=1e-5)
    assert metrics.categorical_focal_crossentropy is losses.categorical_focal_crossentropy
    with pytest.raises(ValueError, match="Could not interpret metric identifier"):   # as in Keras
        metrics.get("binary_focal_crossentropy")


# --- identifiers, configs, saving ----------------------------------------------------------------

@pytest.mark.parametrize("cls, names", [
    (losses.BinaryFocalCrossentropy, ["binary_focal_crossentropy", "BinaryFocalCrossentropy"]),
    (losses.CategoricalFocalCrossentropy, ["categorical_focal_crossentropy", "CategoricalFocalCrossentropy"]),
], ids=["binary", "categorical"])
def test_get_by_every_keras_name(cls, names):
    for name in names:
        assert type(losses.get(name)) is cls
    assert type(losses.get(getattr(losses, names[0]))) is cls
    assert type(losses.get(cls)) is cls


# Printed by real Keras 3.15.1: json.dumps(keras.losses.serialize(keras.losses.BinaryFocalCrossentropy()))
# and the same of keras.losses.CategoricalFocalCrossentropy().
KERAS_CONFIGS = {
    "BinaryFocalCrossentropy": '{"module": "keras.losses", "class_name": "BinaryFocalCrossentropy", "config": '
                               '{"name": "binary_focal_crossentropy", "reduction": "sum_over_batch_size", '
                               '"from_logits": false, "label_smoothing": 0.0, "axis": -1, '
                               '"apply_class_balancing": false, "alpha": 0.25, "gamma": 2.0}, '
                               '"registered_name": null}',
    "CategoricalFocalCrossentropy": '{"module": "keras.losses", "class_name": "CategoricalFocalCrossentropy", '
                                    '"config": {"name": "categorical_focal_crossentropy", "reduction": '
                                    '"sum_over_batch_size", "from_logits": false, "label_smoothing": 0.0, '
                                    '"axis": -1, "alpha": 0.25, "gamma": 2.0}, "registered_name": null}',
}


@pytest.mark.parametrize("class_name", sorted(KERAS_CONFIGS))
def test_default_configs_are_keras_own(class_name):
    loss = getattr(losses, class_name)()
    assert json.dumps(losses.serialize(loss)) == KERAS_CONFIGS[class_name]   # keys in Keras's order too
    again = losses.deserialize(json.loads(KERAS_CONFIGS[class_name]))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


@pytest.mark.parametrize("loss", [
    losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0, from_logits=True,
                                   label_smoothing=0.1, axis=-1, reduction="sum", name="focal"),
    losses.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], gamma=0.5, from_logits=True, label_smoothing=0.2,
                                        reduction=None),
], ids=lambda loss: type(loss).__name__)
def test_serialization_round_trip(loss):
    config = losses.serialize(loss)
    again = losses.deserialize(json.loads(json.dumps(config)))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    t, p = draw("onehot", (4, 3)), draw("logits", (4, 3))
    np.testing.assert_array_equal(again(f32(t), f32(p)), loss(f32(t), f32(p)))


@pytest.mark.parametrize("loss", [
    "binary_focal_crossentropy",
    losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0, label_smoothing=0.1),
    "categorical_focal_crossentropy",
    losses.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], gamma=1.5, label_smoothing=0.1),
], ids=["bfce-name", "bfce-object", "cfce-name", "cfce-object"])
def test_a_model_compiled_with_the_loss_saves_and_loads(tmp_path, loss):
    categorical = "categorical" in (loss if isinstance(loss, str) else type(loss).__name__.lower())
    x, y = (_categorical_data if categorical else _binary_data)(n=32)
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(y.shape[1],
                                                                    activation="softmax" if categorical else
                                                                    "sigmoid")])
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        saved = json.loads(z.read("config.json"))["compile_config"]["loss"]
    assert saved == (loss if isinstance(loss, str) else losses.serialize(loss))
    again = keras.models.load_model(tmp_path / "m.keras")
    restored = again._compiled.losses[0]
    assert type(restored) is type(losses.get(loss)) and restored.get_config() == losses.get(loss).get_config()
    assert again.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)
    again.fit(x, y, epochs=1, batch_size=8, verbose=0)   # and it trains on


# --- argument and target checks ---------------------------------------------------------------

def test_alpha_of_the_wrong_length_is_named():
    with pytest.raises(ValueError, match=r"`alpha` must be a float or a list of one float per class \(3 here\)"):
        losses.categorical_focal_crossentropy(np.eye(3), np.eye(3), alpha=[0.5, 0.5])


def test_shape_mismatch_and_bool_axis_are_errors():
    with pytest.raises(ValueError, match="must have the same shape"):
        losses.binary_focal_crossentropy(np.zeros((2, 3)), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="must have the same shape"):
        losses.categorical_focal_crossentropy(np.zeros((2, 3)), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="`axis` must be of type `int`"):
        losses.CategoricalFocalCrossentropy(axis=True)(np.eye(3), np.eye(3))


def test_one_class_categorical_focal_warns_as_keras():
    with pytest.warns(SyntaxWarning, match="In loss categorical_focal_crossentropy, expected y_pred.shape"):
        losses.categorical_focal_crossentropy(np.ones((2, 1)), np.ones((2, 1)))


def test_integer_labels_are_refused_with_advice():
    with pytest.raises(ValueError, match=r"(?s)`categorical_focal_crossentropy` expects targets to be binary "
                                         r"matrices.*to_categorical"):
        losses.check_targets("categorical_focal_crossentropy", np.array([1, 0, 3]), (None, 4))
    with pytest.raises(ValueError, match=r"use the loss `sparse_categorical_crossentropy`.*"
                                         r"`binary_focal_crossentropy` expects targets of the output's shape"):
        losses.check_targets(losses.BinaryFocalCrossentropy(), np.array([3, 1, 2]), (None, 5))
    losses.check_targets("binary_focal_crossentropy", np.array([0, 1, 1]), (None, 1))
    losses.check_targets("categorical_focal_crossentropy", np.eye(3)[[0, 2]], (None, 3))
