"""The confusion-count metrics (TruePositives ..., PrecisionAtRecall ...), the F-scores and
R2Score: against numpy written here, against real Keras 3's results on the same data
(tests/fixtures/keras/metrics/, with the script that made them), compiled vs the reference
interpreter inside evaluate, and their configs and argument errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import metrics

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "metrics" / "metrics.json"
KERAS = json.loads(FIXTURE.read_text())
DATA = {k: tuple(np.asarray(a, np.float32) for a in v) if k != "weights" else np.asarray(v, np.float32)
        for k, v in KERAS["data"].items()}


def _run(metric, y_true, y_pred, weights=None):
    half = len(y_true) // 2
    for part in (slice(None, half), slice(half, None)):
        metric.update_state(y_true[part], y_pred[part], None if weights is None else weights[part])
    return np.asarray(metric.result(), np.float64)


@pytest.mark.parametrize("case", KERAS["cases"], ids=lambda c: f"{c['class_name']}-{c['arguments']}")
def test_results_match_real_keras_3(case):
    y_true, y_pred = DATA[case["data"]]
    make = getattr(metrics, case["class_name"])
    np.testing.assert_allclose(_run(make(**case["arguments"]), y_true, y_pred), case["result"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(make(**case["arguments"]), y_true, y_pred, DATA["weights"]),
                               case["weighted"], rtol=1e-5, atol=1e-6)


def test_confusion_counts_and_rates_against_numpy():
    (y, p), w = DATA["binary"], DATA["weights"]
    y, p = y[:, 0], p[:, 0]
    for cls, want in [(metrics.TruePositives, (p > 0.5) & (y == 1)),
                      (metrics.FalsePositives, (p > 0.5) & (y == 0)),
                      (metrics.TrueNegatives, (p <= 0.5) & (y == 0)),
                      (metrics.FalseNegatives, (p <= 0.5) & (y == 1))]:
        assert _run(cls(), y, p, w) == pytest.approx(float(np.sum(w * want)), rel=1e-6)
    thresholds = np.linspace(0, 1, 200)
    above = p[None, :] > thresholds[:, None]
    tp, fp, fn = ((above & (y == 1)).sum(1), (above & (y == 0)).sum(1), (~above & (y == 1)).sum(1))
    recall, precision = tp / np.maximum(tp + fn, 1), np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0)
    want = precision[recall >= 0.6].max()
    assert _run(metrics.PrecisionAtRecall(0.6), y, p) == pytest.approx(want, rel=1e-6)


def test_f_scores_and_r2_against_numpy():
    (y, p), w = DATA["classes"], DATA["weights"]
    predicted = (p == p.max(1, keepdims=True)).astype(np.float64)
    tp, fp, fn = ((w[:, None] * predicted * y).sum(0), (w[:, None] * predicted * (1 - y)).sum(0),
                  (w[:, None] * (1 - predicted) * y).sum(0))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f2 = 5 * precision * recall / (4 * precision + recall)
    np.testing.assert_allclose(_run(metrics.FBetaScore(beta=2.0), y, p, w), f2, rtol=1e-5)
    (truth, guess) = DATA["regression"]
    residual = ((truth - guess) ** 2).sum(0)
    total = ((truth - truth.mean(0)) ** 2).sum(0)
    assert _run(metrics.R2Score(), truth, guess) == pytest.approx(np.mean(1 - residual / total), rel=1e-5)


def test_mean_iou_of_segmentation_maps_against_numpy():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 4, (5, 3, 3)), rng.random((5, 3, 3, 4)).astype(np.float32)
    weights = rng.random((5, 3, 3)).astype(np.float32)
    matrix = np.zeros((4, 4))
    np.add.at(matrix, (labels.ravel(), scores.argmax(-1).ravel()), weights.ravel())
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    want = np.mean(np.diag(matrix) / union)
    got = _run(metrics.MeanIoU(4, sparse_y_pred=False, dtype="float32"), labels, scores, weights)
    assert got == pytest.approx(want, rel=1e-5)


def test_compiled_step_matches_the_reference_interpreter(monkeypatch):
    y, p = DATA["classes"]
    x = np.log(p)   # a softmax of these logits gives back p
    results = []
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Softmax()])
        model.compile(loss="categorical_crossentropy",
                      metrics=[metrics.F1Score(average="macro"), metrics.PrecisionAtRecall(0.5),
                               metrics.TruePositives(), metrics.R2Score(),
                               metrics.MeanIoU(3, sparse_y_true=False, sparse_y_pred=False)])
        results.append(model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True))
    for name in results[1]:
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-5, err_msg=name)
    want = _run(metrics.F1Score(average="macro"), y, p)
    assert results[1]["f1_score"] == pytest.approx(float(want), rel=1e-5)


def test_configs_round_trip_and_names_resolve():
    for metric in (metrics.SensitivityAtSpecificity(0.4, num_thresholds=20, class_id=2),
                   metrics.F1Score(average="weighted", threshold=0.3), metrics.TrueNegatives([0.1]),
                   metrics.R2Score(class_aggregation=None, num_regressors=2)):
        again = metrics.deserialize(metrics.serialize(metric))
        assert type(again) is type(metric) and again.get_config() == metric.get_config()
    assert isinstance(metrics.get("f1_score"), metrics.F1Score)
    assert "beta" not in metrics.F1Score().get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: metrics.FBetaScore(average="mean"), "Invalid `average` argument value"),
    (lambda: metrics.FBetaScore(beta=2), "It should be a Python float. Received: beta=2"),
    (lambda: metrics.F1Score(threshold=1.5), "It should be between 0 and 1"),
    (lambda: metrics.PrecisionAtRecall(1.5), r"`recall` must be in the range \[0, 1\]"),
    (lambda: metrics.RecallAtPrecision(0.5, num_thresholds=0),
     "`num_thresholds` must be an integer > 0"),
    (lambda: metrics.R2Score(class_aggregation="mean"), "`class_aggregation`"),
    (lambda: _run(metrics.R2Score(), np.ones(4), np.ones(4)), "expects 2D inputs"),
])
def test_bad_arguments_get_keras_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_array_results_reach_fit_and_evaluate_logs(capsys):
    """F1Score(average=None) in fit: History holds the per-class float32 arrays, evaluate returns
    one, and the progress line shows their mean, as Keras 3 does."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((48, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=[metrics.F1Score(average=None)])
    history = model.fit(x, y, epochs=2, batch_size=48, verbose=2, validation_data=(x, y))
    assert [v.shape for v in history.history["f1_score"] + history.history["val_f1_score"]] == [(3,)] * 4
    assert all(v.dtype == np.float32 for v in history.history["f1_score"])
    capsys.readouterr()
    loss, f1 = model.evaluate(x, y, verbose=2)
    predicted = np.eye(3)[model.predict(x, verbose=0).argmax(axis=1)]
    tp = (predicted * y).sum(axis=0)
    want = 2 * tp / np.maximum(predicted.sum(axis=0) + y.sum(axis=0), 1e-7)
    np.testing.assert_allclose(f1, want, rtol=1e-5, atol=1e-6)
    assert f"f1_score: {np.mean(f1):.4f}" in capsys.readouterr().out
