"""IoU, BinaryIoU, OneHotIoU, OneHotMeanIoU (and MeanIoU, their common ground): against numpy
written here, compiled vs the reference interpreter in fit and evaluate, configs and argument
errors. Real Keras 3's results on shared data are in tests/fixtures/keras/metrics/ (checked by
test_score_metrics.py's test_results_match_real_keras_3)."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import metrics


def iou_numpy(labels, guesses, weights, num_classes, targets):
    """Mean over `targets` that occur of tp / (tp + fp + fn), from the weighted confusion matrix."""
    matrix = np.zeros((num_classes, num_classes))
    np.add.at(matrix, (labels.ravel(), guesses.ravel()), weights.ravel())
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    occur = [t for t in targets if union[t] > 0]
    return np.mean([matrix[t, t] / union[t] for t in occur])


def _segmentation(seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (6, 3, 3))
    scores = rng.random((6, 3, 3, 4)).astype(np.float32)
    weights = rng.random((6, 3, 3)).astype(np.float32)
    return labels, scores, weights


def _run(metric, y_true, y_pred, weights):
    for part in (slice(None, 3), slice(3, None)):
        metric.update_state(y_true[part], y_pred[part], weights[part])
    return metric.result()


def test_iou_and_one_hot_variants_against_numpy():
    labels, scores, weights = _segmentation()
    one_hot = np.eye(4, dtype=np.float32)[labels]
    guesses = scores.argmax(-1)
    want = iou_numpy(labels, guesses, weights, 4, [1, 3])
    assert _run(metrics.IoU(4, [1, 3], sparse_y_pred=False, dtype="float32"),
                labels, scores, weights) == pytest.approx(want, rel=1e-5)
    assert _run(metrics.OneHotIoU(4, [1, 3], dtype="float32"),
                one_hot, scores, weights) == pytest.approx(want, rel=1e-5)
    assert _run(metrics.OneHotMeanIoU(4, dtype="float32"), one_hot, scores, weights) == \
        pytest.approx(iou_numpy(labels, guesses, weights, 4, range(4)), rel=1e-5)
    ignored = np.where(labels == 2, 0, weights)
    assert _run(metrics.OneHotIoU(4, [0, 1], ignore_class=2, sparse_y_pred=True, dtype="float32"),
                one_hot, guesses, weights) == \
        pytest.approx(iou_numpy(labels, guesses, ignored, 4, [0, 1]), rel=1e-5)


def test_int_dtype_truncates_weights_as_keras():
    labels, scores, weights = _segmentation(4)
    whole = np.floor(weights * 3)
    assert _run(metrics.IoU(4, [0, 2], sparse_y_pred=False), labels, scores, weights * 3) == \
        pytest.approx(iou_numpy(labels, scores.argmax(-1), whole, 4, [0, 2]), rel=1e-5)


@pytest.mark.parametrize("threshold, targets", [(0.5, (0, 1)), (0.3, [1]), (0.8, [0])])
def test_binary_iou_thresholds_scores(threshold, targets):
    rng = np.random.default_rng(5)
    labels = (rng.random((10, 2)) > 0.5).astype(np.float32)
    scores = rng.random((10, 2)).astype(np.float32)
    weights = rng.random((10, 2)).astype(np.float32)
    want = iou_numpy(labels.astype(int), (scores >= threshold).astype(int), weights, 2, targets)
    got = _run(metrics.BinaryIoU(targets, threshold, dtype="float32"), labels, scores, weights)
    assert got == pytest.approx(want, rel=1e-5)


def test_compiled_fit_and_evaluate_match_the_reference_interpreter(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((24, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]
    results = []
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="sgd", loss="categorical_crossentropy",
                      metrics=[metrics.OneHotMeanIoU(3), metrics.OneHotIoU(3, [0, 2]),
                               metrics.IoU(3, [1], sparse_y_true=False, sparse_y_pred=False),
                               metrics.BinaryIoU(threshold=0.4)])
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
        assert history["one_hot_mean_io_u"][-1] >= 0
        results.append(model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True))
        guesses = model.predict(x, verbose=0)
    for name in results[1]:
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-5, err_msg=name)
    want = iou_numpy(y.argmax(1), guesses.argmax(1), np.ones(24), 3, range(3))
    assert results[1]["one_hot_mean_io_u"] == pytest.approx(want, rel=1e-5)
    want = iou_numpy(y.astype(int), (guesses >= 0.4).astype(int), np.ones_like(y), 2, (0, 1))
    assert results[1]["binary_io_u"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compiled_metrics_survive_saving(suffix, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=[metrics.OneHotIoU(3, [1, 2], name="iou12"), metrics.BinaryIoU([1])])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / f"m{suffix}")
    again = keras.models.load_model(tmp_path / f"m{suffix}")
    assert again.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True), rel=1e-6)


@pytest.mark.parametrize("metric", [
    metrics.IoU(3, [0, 2], ignore_class=1, sparse_y_pred=False),
    metrics.BinaryIoU([1], threshold=0.3, dtype="float32"),
    metrics.OneHotIoU(4, [3], sparse_y_pred=True, axis=1),
    metrics.OneHotMeanIoU(5, ignore_class=0)])
def test_configs_are_keras_3s_and_round_trip(metric):
    config = metrics.serialize(metric)
    again = metrics.deserialize(config)
    assert type(again) is type(metric) and again.get_config() == metric.get_config()
    assert "sparse_y_true" not in config["config"] or type(metric) is metrics.IoU


def test_names_resolve():
    assert type(metrics.get({"class_name": "BinaryIoU", "config": {}})) is metrics.BinaryIoU
    assert metrics.BinaryIoU().get_config() == {"name": "binary_io_u", "dtype": "int32",
                                                "target_class_ids": [0, 1], "threshold": 0.5}


@pytest.mark.parametrize("make, message", [
    (lambda: metrics.IoU(3, [3]), r"Target class id 3 is out of range, which is \[0, 3\)"),
    (lambda: metrics.IoU(3, [-1]), "Target class id -1 is out of range"),
    (lambda: metrics.IoU(3, []), "`target_class_ids` must name at least one class"),
    (lambda: metrics.OneHotIoU(0, [0]), "`num_classes` must be a positive integer"),
    (lambda: metrics.BinaryIoU([2]), "Target class id 2"),
])
def test_bad_arguments_get_keras_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
