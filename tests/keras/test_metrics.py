"""Metrics against float64 numpy formulas written here (and values printed in Keras's own docs):
per-batch statistics emitted with a symbolic batch, run on the reference interpreter and compiled,
merged over several batches."""
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, DType, TensorType
from nncompile.keras import losses, metrics
from nncompile.runtime import reference

RNG = np.random.default_rng(1)
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- running emitted statistics ---------------------------------------------------------------

_GRAPHS = {}


@functools.lru_cache(maxsize=None)
def _compiled(text):
    return nncompile.compile(_GRAPHS[text])


def stats_graph(metric, t, p, w):
    b = Builder(name="metric")
    inputs = [b.input(name, TensorType(DType.from_numpy(a.dtype), (BATCH, *a.shape[1:])))
              for name, a in (("y_true", t), ("y_pred", p), ("weight", w)) if a is not None]
    stats = metric.emit(b, inputs[0], inputs[1], inputs[2] if w is not None else None)
    return b.finish(stats, [f"stat{i}" for i in range(len(stats))])


def feed(metric, batches, compiled):
    """Merge the statistics of each (y_true, y_pred, weight) batch, computed by the reference
    interpreter or by the compiled graph; returns the result."""
    metric.reset_state()
    for t, p, w in batches:
        arrays = [a for a in (t, p, w) if a is not None]
        graph = stats_graph(metric, t, p, w)
        if compiled:
            _GRAPHS.setdefault(str(graph), graph)
            outs = _compiled(str(graph))(*arrays)
            stats = outs if isinstance(outs, list) else [outs]
        else:
            stats = reference.run(graph, arrays)
        metric.merge(stats)
    return metric.result()


def f32(x):
    return np.asarray(x, np.float32)


def batches_of(t, p, w=None, sizes=(5, 2, 4)):
    """Consecutive batches (ragged) of the arrays; float targets stay float32, integers stay."""
    out, start = [], 0
    for size in sizes:
        part = slice(start, start + size)
        target = t[part] if t.dtype.kind in "iu" else f32(t[part])
        out.append((target, f32(p[part]), None if w is None else f32(w[part])))
        start += size
    return out


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def weighted_mean(values, w):
    return (values * (1 if w is None else w)).sum() / (len(values) if w is None else w.sum())


# --- float64 references -----------------------------------------------------------------------

def top_k_hits(labels, p, k):
    """1 where fewer than k classes score strictly above the label's class."""
    chosen = np.take_along_axis(p, labels[:, None], -1)
    return ((p > chosen).sum(-1) < k).astype(float)


N, C = 11, 4
LABELS = RNG.integers(0, C, N)
ONEHOT = np.eye(C)[LABELS]
SCORES = softmax(RNG.normal(size=(N, C)) * 2)
BINARY = RNG.integers(0, 2, (N, 1)).astype(float)
PROBS = RNG.uniform(size=(N, 1))
REAL_T, REAL_P = RNG.normal(size=(N, 3)), RNG.normal(size=(N, 3))
WEIGHTS = RNG.uniform(0, 2, N)

# (metric, y_true, y_pred, per-sample reference values)
MEAN_CASES = [
    (metrics.BinaryAccuracy(), BINARY, PROBS, ((PROBS > 0.5) == BINARY)[:, 0].astype(float)),
    (metrics.BinaryAccuracy(threshold=0.7), BINARY, PROBS, ((PROBS > 0.7) == BINARY)[:, 0].astype(float)),
    (metrics.CategoricalAccuracy(), ONEHOT, SCORES, (SCORES.argmax(-1) == LABELS).astype(float)),
    (metrics.SparseCategoricalAccuracy(), LABELS, SCORES, (SCORES.argmax(-1) == LABELS).astype(float)),
    (metrics.SparseCategoricalAccuracy(), LABELS[:, None].astype(np.int32), SCORES,
     (SCORES.argmax(-1) == LABELS).astype(float)),
    (metrics.TopKCategoricalAccuracy(k=2), ONEHOT, SCORES, top_k_hits(LABELS, SCORES, 2)),
    (metrics.SparseTopKCategoricalAccuracy(k=2), LABELS, SCORES, top_k_hits(LABELS, SCORES, 2)),
    (metrics.SparseTopKCategoricalAccuracy(), LABELS, SCORES, np.ones(N)),
    (metrics.MeanSquaredError(), REAL_T, REAL_P, ((REAL_T - REAL_P) ** 2).mean(-1)),
    (metrics.MeanAbsoluteError(), REAL_T, REAL_P, np.abs(REAL_T - REAL_P).mean(-1)),
    (metrics.BinaryCrossentropy(), BINARY, PROBS,
     -(BINARY * np.log(PROBS) + (1 - BINARY) * np.log(1 - PROBS))[:, 0]),
    (metrics.CategoricalCrossentropy(from_logits=True), ONEHOT, np.log(SCORES),
     -np.log(SCORES[np.arange(N), LABELS])),
    (metrics.SparseCategoricalCrossentropy(), LABELS, SCORES, -np.log(SCORES[np.arange(N), LABELS])),
    (metrics.CosineSimilarity(), REAL_T, REAL_P,
     (REAL_T * REAL_P).sum(-1) / np.linalg.norm(REAL_T, axis=-1) / np.linalg.norm(REAL_P, axis=-1)),
    (metrics.Hinge(), BINARY, PROBS - 0.5, np.maximum(1 - (2 * BINARY - 1) * (PROBS - 0.5), 0)[:, 0]),
]
MEAN_IDS = [f"{m.name}-{i}" for i, (m, *_) in enumerate(MEAN_CASES)]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
@pytest.mark.parametrize("metric, t, p, values", MEAN_CASES, ids=MEAN_IDS)
def test_mean_metrics_match_numpy(metric, t, p, values, compiled, weighted):
    w = WEIGHTS if weighted else None
    got = feed(metric, batches_of(t, p, w), compiled)
    assert got == pytest.approx(weighted_mean(values, w), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_root_mean_squared_error(weighted):
    w = WEIGHTS if weighted else None
    got = feed(metrics.RootMeanSquaredError(), batches_of(REAL_T, REAL_P, w), compiled=True)
    assert got == pytest.approx(np.sqrt(weighted_mean(((REAL_T - REAL_P) ** 2).mean(-1), w)), rel=1e-5)


def test_update_state_on_arrays_accumulates_and_resets():
    metric = metrics.SparseCategoricalAccuracy()
    metric.update_state(LABELS[:6], SCORES[:6])
    metric.update_state(LABELS[6:], SCORES[6:], sample_weight=WEIGHTS[6:])
    hits = (SCORES.argmax(-1) == LABELS).astype(float)
    expected = (hits[:6].sum() + (hits[6:] * WEIGHTS[6:]).sum()) / (6 + WEIGHTS[6:].sum())
    assert metric.result() == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    assert metric.result() == 0.0


def test_mean_of_batch_losses_weighted_by_batch_size():
    mean = metrics.Mean(name="loss")
    mean.update_state(2.0, sample_weight=3)
    mean.update_state(np.float32(5.0), sample_weight=1)
    assert mean.result() == pytest.approx((2 * 3 + 5) / 4)
    mean.update_state(np.array([1.0, 2.0, 3.0]), sample_weight=np.array([1.0, 0.0, 1.0]))
    assert mean.result() == pytest.approx((2 * 3 + 5 + 4) / 6)
    mean.reset_state()
    mean.update_state(np.array([[1.0, 3.0], [5.0, 7.0]]))   # averaged per sample, one count each
    assert mean.result() == pytest.approx(4.0)


def test_merge_rejects_statistics_of_the_wrong_form():
    metric = metrics.AUC(num_thresholds=5)
    with pytest.raises(ValueError, match="metric 'auc': expected 4 statistics"):
        metric.merge([np.zeros(5)])
    with pytest.raises(ValueError, match=r"metric 'auc': a statistic has shape \(3,\); expected \(5,\)"):
        metric.merge([np.zeros(3)] * 4)


# --- confusion-matrix metrics -----------------------------------------------------------------

def confusion(t, p, w, thresholds):
    """Weighted tp, fp, tn, fn per threshold over every element, by direct comparison."""
    t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
    w = np.ones(len(t)) if w is None else w
    w = np.broadcast_to(w[:, None], t.shape)
    pos, neg = (t != 0) * w, (t == 0) * w
    above = p[..., None] > np.asarray(thresholds)
    tp, fp = (above * pos[..., None]).sum((0, 1)), (above * neg[..., None]).sum((0, 1))
    return tp, fp, neg.sum() - fp, pos.sum() - tp


def roc_auc(t, p, w, num_thresholds=200):
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    tp, fp, tn, fn = confusion(t, np.clip(p, 0, 1), w, [-1e-7, *inner, 1 + 1e-7])
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    return np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)


def rank_auc(t, p):
    """The exact ROC AUC: the chance a positive scores above a negative (ties half)."""
    pos, neg = p[t == 1], p[t == 0]
    return ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / (len(pos) * len(neg))


@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_auc_matches_numpy(compiled, weighted):
    n = 40
    t = RNG.integers(0, 2, (n, 1)).astype(float)
    p = np.clip(0.3 * t + RNG.uniform(0, 0.7, (n, 1)), 0, 1)
    w = RNG.uniform(0, 2, n) if weighted else None
    got = feed(metrics.AUC(), batches_of(t, p, w, sizes=(17, 3, 20)), compiled)
    assert got == pytest.approx(roc_auc(t, p, w), rel=1e-5)
    if not weighted:
        assert got == pytest.approx(rank_auc(t[:, 0], p[:, 0]), abs=1e-2)


def test_auc_from_logits_pr_curve_and_summation_methods():
    t = RNG.integers(0, 2, (30, 2)).astype(float)
    logits = RNG.normal(size=(30, 2)) + t
    p = 1 / (1 + np.exp(-logits))
    inner = [(i + 1) / 9 for i in range(8)]
    tp, fp, tn, fn = confusion(t, p, None, [-1e-7, *inner, 1 + 1e-7])
    recall, fpr = tp / (tp + fn), fp / (fp + tn)
    precision = np.divide(tp, tp + fp, out=np.zeros(10), where=tp + fp > 0)
    metric = metrics.AUC(num_thresholds=10, from_logits=True)
    roc = np.sum((fpr[:-1] - fpr[1:]) * (recall[:-1] + recall[1:]) / 2)
    assert metric(f32(t), f32(logits)) == pytest.approx(roc, rel=1e-5)
    for method, height in (("minoring", np.minimum), ("majoring", np.maximum)):
        metric = metrics.AUC(num_thresholds=10, curve="pr", summation_method=method)
        expected = np.sum((recall[:-1] - recall[1:]) * height(precision[:-1], precision[1:]))
        assert metric(f32(t), f32(p)) == pytest.approx(expected, rel=1e-5)
    # interpolated PR-AUC: integrate precision along recall with precision interpolated linearly in
    # the positive count between thresholds, done here numerically
    total = 0.0
    for i in range(9):
        pos_hi, pos_lo = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        if pos_hi - pos_lo <= 0:
            continue
        xs = np.linspace(pos_lo, pos_hi, 20001)
        slope = (tp[i] - tp[i + 1]) / (pos_hi - pos_lo)
        tps = tp[i + 1] + slope * (xs - pos_lo)
        prec = np.divide(tps, xs, out=np.zeros_like(xs), where=xs > 0)
        total += np.trapezoid(prec * slope, xs) / (tp[i + 1] + fn[i + 1])
    assert metrics.AUC(num_thresholds=10, curve="PR")(f32(t), f32(p)) == pytest.approx(total, rel=1e-3)


def test_auc_documented_values():
    assert metrics.AUC(num_thresholds=3)([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]) == pytest.approx(0.75)
    auc = metrics.AUC(num_thresholds=3)
    auc.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9], sample_weight=[1, 0, 0, 1])
    assert auc.result() == pytest.approx(1.0)


@pytest.mark.parametrize("compiled", [False, True], ids=["reference", "compiled"])
@pytest.mark.parametrize("cls, index", [(metrics.Precision, 1), (metrics.Recall, 3)])
def test_precision_and_recall_match_numpy(cls, index, compiled):
    t = RNG.integers(0, 2, (N, 3)).astype(float)
    p = RNG.uniform(size=(N, 3))
    counts = confusion(t, p, WEIGHTS, [0.3, 0.5, 0.8])
    tp, other = counts[0], counts[index]
    got = feed(cls(thresholds=[0.3, 0.5, 0.8]), batches_of(t, p, WEIGHTS), compiled)
    np.testing.assert_allclose(got, tp / (tp + other), rtol=1e-5)
    tp, _, _, fn = confusion(t[:, 1:2], p[:, 1:2], None, [0.5])
    other = {1: confusion(t[:, 1:2], p[:, 1:2], None, [0.5])[1], 3: fn}[index]
    got = feed(cls(class_id=1), batches_of(t, p), compiled)
    assert got == pytest.approx(float(tp[0] / (tp[0] + other[0])), rel=1e-6)


def test_precision_top_k_keeps_the_k_best_per_row():
    t = np.array([[0, 0, 1, 1], [1, 0, 0, 1]], np.float32)
    p = np.array([[0.9, 0.8, 0.7, 0.1], [0.3, 0.3, 0.3, 0.2]], np.float32)
    # top 2: row 0 keeps classes 0, 1 (no hit); row 1 keeps classes 0, 1 of the tie (one hit)
    assert metrics.Precision(top_k=2)(t, p) == pytest.approx(1 / 4)
    assert metrics.Recall(top_k=2)(t, p) == pytest.approx(1 / 4)


def test_precision_recall_documented_values():
    assert metrics.Precision()([0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    precision = metrics.Precision()
    precision.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert precision.result() == pytest.approx(1.0)
    assert metrics.Recall()([0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    assert metrics.Precision()([0, 0], [0.2, 0.1]) == 0.0   # no predicted positive: 0, not NaN


@FEW
@given(batch=st.integers(1, 6), classes=st.integers(2, 6), k=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_random_shapes_top_k_and_accuracy(batch, classes, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, batch)
    scores = rng.integers(0, 4, (batch, classes)).astype(np.float32)   # many ties
    metric = metrics.SparseTopKCategoricalAccuracy(k=k)
    assert metric(labels, scores) == pytest.approx(top_k_hits(labels, scores, k).mean())
    metric = metrics.CategoricalAccuracy()
    expected = (scores.argmax(-1) == labels).mean()
    assert metric(np.eye(classes)[labels], scores) == pytest.approx(expected)


# --- identifiers, names, serialization --------------------------------------------------------

@pytest.mark.parametrize("loss, output_shape, cls", [
    ("binary_crossentropy", (None, 1), metrics.BinaryAccuracy),
    (losses.BinaryCrossentropy(from_logits=True), (None, 5), metrics.BinaryAccuracy),
    ("mse", (None, 1), metrics.BinaryAccuracy),
    ("sparse_categorical_crossentropy", (None, 10), metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", (None, 10), metrics.CategoricalAccuracy),
    (None, (None, 3), metrics.CategoricalAccuracy),
    (None, None, metrics.Accuracy),
])
@pytest.mark.parametrize("alias", ["accuracy", "acc"])
def test_accuracy_resolves_like_keras(loss, output_shape, cls, alias):
    metric = metrics.get(alias, loss=loss, output_shape=output_shape)
    assert type(metric) is cls and metric.name == alias


NAMES = {
    metrics.BinaryAccuracy: ["binary_accuracy", "BinaryAccuracy"],
    metrics.CategoricalAccuracy: ["categorical_accuracy", "CategoricalAccuracy"],
    metrics.SparseCategoricalAccuracy: ["sparse_categorical_accuracy", "SparseCategoricalAccuracy"],
    metrics.TopKCategoricalAccuracy: ["top_k_categorical_accuracy", "TopKCategoricalAccuracy"],
    metrics.SparseTopKCategoricalAccuracy: ["sparse_top_k_categorical_accuracy",
                                            "SparseTopKCategoricalAccuracy"],
    metrics.MeanSquaredError: ["mse", "MSE", "mean_squared_error", "MeanSquaredError"],
    metrics.MeanAbsoluteError: ["mae", "MAE", "mean_absolute_error", "MeanAbsoluteError"],
    metrics.RootMeanSquaredError: ["root_mean_squared_error", "RootMeanSquaredError", "rmse"],
    metrics.MeanAbsolutePercentageError: ["mape", "mean_absolute_percentage_error"],
    metrics.MeanSquaredLogarithmicError: ["msle", "mean_squared_logarithmic_error"],
    metrics.Precision: ["precision", "Precision"],
    metrics.Recall: ["recall", "Recall"],
    metrics.AUC: ["auc", "AUC"],
    metrics.Mean: ["mean", "Mean"],
    metrics.BinaryCrossentropy: ["binary_crossentropy", "bce"],
    metrics.KLDivergence: ["kl_divergence", "KLDivergence"],
    metrics.LogCoshError: ["log_cosh_error", "LogCoshError"],
}


@pytest.mark.parametrize("cls, names", NAMES.items(), ids=[c.__name__ for c in NAMES])
def test_get_by_every_keras_name_logs_that_name(cls, names):
    for name in names:
        metric = metrics.get(name)
        assert type(metric) is cls and metric.name == name


def test_default_names_and_functions():
    classes = (metrics.BinaryAccuracy, metrics.MeanSquaredError, metrics.AUC, metrics.RootMeanSquaredError,
               metrics.LogCoshError, metrics.Precision)
    assert [cls().name for cls in classes] == \
        ["binary_accuracy", "mean_squared_error", "auc", "root_mean_squared_error", "logcosh", "precision"]
    metric = metrics.get(metrics.sparse_categorical_accuracy)
    assert type(metric) is metrics.SparseCategoricalAccuracy and metric.name == "sparse_categorical_accuracy"
    metric = metrics.get(losses.huber)
    assert type(metric) is metrics.MeanMetricWrapper and metric.name == "huber"
    instance = metrics.AUC(name="val_auc")
    assert metrics.get(instance) is instance and metrics.get(None) is None
    with pytest.raises(ValueError, match="Could not interpret metric identifier: 'accuracyy'"):
        metrics.get("accuracyy")
    with pytest.raises(ValueError, match="Could not interpret metric identifier: 42"):
        metrics.get(42)


@pytest.mark.parametrize("metric", [
    metrics.BinaryAccuracy(threshold=0.3, name="acc"), metrics.TopKCategoricalAccuracy(k=3),
    metrics.Precision(thresholds=[0.2, 0.6], class_id=1), metrics.Recall(top_k=2),
    metrics.AUC(num_thresholds=50, curve="PR", summation_method="minoring", from_logits=True),
    metrics.AUC(thresholds=[0.1, 0.4, 0.9]), metrics.RootMeanSquaredError(), metrics.Mean(name="loss"),
    metrics.MeanMetricWrapper(losses.huber, delta=2.0), metrics.CategoricalCrossentropy(label_smoothing=0.1)],
    ids=lambda m: type(m).__name__)
def test_serialization_round_trip(metric):
    config = metrics.serialize(metric)
    assert config["module"] == "keras.metrics" and config["class_name"] == type(metric).__name__
    again = metrics.deserialize(config)
    assert type(again) is type(metric) and again.get_config() == metric.get_config()
    assert again.state_shapes() == metric.state_shapes()


def test_auc_config_and_bad_arguments():
    config = metrics.AUC().get_config()
    assert {k: config[k] for k in ("name", "num_thresholds", "curve", "summation_method", "from_logits")} == \
        {"name": "auc", "num_thresholds": 200, "curve": "ROC", "summation_method": "interpolation",
         "from_logits": False}
    with pytest.raises(ValueError, match="`num_thresholds` must be an integer > 1"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="Invalid AUC curve value 'DET'"):
        metrics.AUC(curve="DET")
    with pytest.raises(ValueError, match="multi_label=True and label_weights are not supported"):
        metrics.AUC(multi_label=True)
    with pytest.raises(ValueError, match=r"Threshold values must be in \[0, 1\]"):
        metrics.Precision(thresholds=[0.5, 1.5])


def test_a_metric_that_defines_no_result_says_so():
    class Counted(metrics.Metric):
        def update_state(self, y_true, y_pred, sample_weight=None):
            pass

    with pytest.raises(NotImplementedError, match="Counted.result must compute the metric from its state"):
        Counted(name="counted").result()
