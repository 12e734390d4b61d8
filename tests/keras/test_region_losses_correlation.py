"""Dice, Tversky, Circle and CategoricalGeneralizedCrossEntropy, PearsonCorrelation,
ConcordanceCorrelation and Sum against what real Keras 3.15.1 computed on the same data
(tests/fixtures/keras/losses_extra, made by its script): eagerly, emitted with a symbolic batch
and compiled, inside compiled evaluate / train_on_batch of tiny models, streamed over batches;
their configs, names and error messages."""
import doctest
import json
from pathlib import Path

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.ir import BATCH, Builder, DType, TensorType
from nncompile.keras import correlation_metrics, layers, losses, metrics, region_losses
from nncompile.passes.autodiff import gradients
from nncompile.runtime import reference

FIXTURE = np.load(Path(__file__).parents[1] / "fixtures/keras/losses_extra/losses_extra.npz")
EAGER = json.loads(str(FIXTURE["eager_cases"]))
MODELS = json.loads(str(FIXTURE["models"]))
STREAMS = json.loads(str(FIXTURE["streams"]))
CONFIGS = json.loads(str(FIXTURE["configs"]))


def _module(name: str):
    return metrics if "correlation" in name else losses


def _weight(case):
    return None if case["sample_weight"] is None else FIXTURE[case["sample_weight"]]


# --- eager and compiled values ------------------------------------------------------------------

@pytest.mark.parametrize("case", EAGER, ids=[c["id"] for c in EAGER])
def test_eager_values_match_keras(case):
    y_true, y_pred = FIXTURE[case["y_true"]], FIXTURE[case["y_pred"]]
    if case["call"] == "function":
        got = getattr(_module(case["name"]), case["name"])(y_true, y_pred, **case["args"])
    else:
        got = getattr(losses, case["name"])(**case["args"])(y_true, y_pred, sample_weight=_weight(case))
    expected = FIXTURE[f"eager_{case['id']}"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


CLASS_CASES = [c for c in EAGER if c["call"] == "class"]


@pytest.mark.parametrize("case", CLASS_CASES, ids=[c["id"] for c in CLASS_CASES])
def test_emitted_with_a_symbolic_batch_and_compiled(case):
    """The loss of a step graph, whose batch size is a symbol (Circle's diagonal is found without
    knowing it), on the interpreter and compiled."""
    arrays = [FIXTURE[case["y_true"]], FIXTURE[case["y_pred"]]]
    if case["sample_weight"] is not None:
        arrays.append(_weight(case))
    b = Builder(name="loss")
    inputs = [b.input(f"in{i}", TensorType(DType.from_numpy(a.dtype), (BATCH, *a.shape[1:])))
              for i, a in enumerate(arrays)]
    loss = getattr(losses, case["name"])(**case["args"])
    graph = b.finish([loss.emit(b, *inputs)], ["loss"])
    expected = FIXTURE[f"eager_{case['id']}"]
    np.testing.assert_allclose(reference.run(graph, arrays)[0], expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(nncompile.compile(graph)(*arrays), expected, rtol=1e-4, atol=1e-5)


def test_circle_against_a_reference_set():
    got = losses.circle(FIXTURE["emb_labels"], FIXTURE["emb"], ref_labels=FIXTURE["ref_labels"],
                        ref_embeddings=FIXTURE["ref_emb"], gamma=25, margin=0.3)
    np.testing.assert_allclose(got, FIXTURE["circle_references"], rtol=2e-5, atol=1e-6)


def test_circle_gradient_is_finite_for_a_sample_without_positives():
    """A label seen once has no positive pair: its logsumexp is -inf and its loss 0, and the
    gradient stays finite (as JAX's), here checked against central differences."""
    labels, embeddings = np.array([0, 1, 0, 2], np.int32), FIXTURE["emb"][:4].astype(np.float64)
    b = Builder(name="grad")
    t = b.input("t", TensorType(DType.i32, (BATCH,)))
    p = b.input("p", TensorType(DType.f64, (BATCH, 4)))
    value = losses.Circle(gamma=5.0, dtype="float64").emit(b, t, p)
    graph = b.finish([value, *gradients(b.graph, value, [p])], ["loss", "grad"])
    grad = reference.run(graph, [labels, embeddings])[1]
    assert np.isfinite(grad).all()
    numeric = np.zeros_like(embeddings)
    for index in np.ndindex(embeddings.shape):
        step = np.zeros_like(embeddings)
        step[index] = 1e-6
        up, down = (reference.run(graph, [labels, embeddings + s])[0] for s in (step, -step))
        numeric[index] = (up - down) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


# --- inside compiled models --------------------------------------------------------------------

def _model(kind: str):
    if kind == "embedding":
        stack = [layers.Dense(4), layers.UnitNormalization()]
    else:
        stack = [layers.Dense(4, activation=kind)]
    return keras.Sequential([keras.Input(shape=(5,)), *stack])


@pytest.mark.parametrize("case", MODELS, ids=[c["id"] for c in MODELS])
def test_evaluate_and_a_training_step_match_keras(case):
    name = case["id"]
    model = _model(case["kind"])
    model.set_weights([FIXTURE[f"{name}_w{i}"] for i in range(2)])
    loss = case["loss"] if isinstance(case["loss"], str) else losses.deserialize(case["loss"])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    x, y = FIXTURE["model_x"], FIXTURE[f"model_{case['y']}"]
    w = None if case["sample_weight"] is None else FIXTURE[f"model_{case['sample_weight']}"]
    for batch, key in ((10, "full"), (case["batch"], "batched")):
        got = model.evaluate(x, y, sample_weight=w, batch_size=batch, verbose=0)
        assert got == pytest.approx(float(FIXTURE[f"{name}_{key}"]), rel=1e-5, abs=1e-6)
    model.train_on_batch(x, y, sample_weight=w)
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_allclose(weight, FIXTURE[f"{name}_next{i}"], rtol=1e-4, atol=1e-5)


def test_correlation_metrics_stream_over_evaluate_batches_like_keras():
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(3)])
    model.set_weights([FIXTURE["metric_model_w0"], FIXTURE["metric_model_w1"]])
    model.compile(loss="mse", metrics=[metrics.PearsonCorrelation(), "concordance_correlation",
                                       metrics.ConcordanceCorrelation(axis=0, name="ccc_batch")],
                  weighted_metrics=[metrics.PearsonCorrelation(name="weighted_pearson")])
    logs = model.evaluate(FIXTURE["model_x"], FIXTURE["metric_model_y"], sample_weight=FIXTURE["model_w"],
                          batch_size=4, verbose=0, return_dict=True)
    expected = json.loads(str(FIXTURE["metric_logs"]))
    assert logs.keys() == expected.keys()
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("case", STREAMS, ids=[c["id"] for c in STREAMS])
def test_update_state_over_batches_matches_keras(case):
    metric = getattr(metrics, case["name"])(**case["args"])
    for first, second, weight, start, stop in case["batches"]:
        rows = slice(start, stop)
        w = None if weight is None else np.ones(3, np.float32) if weight == "none3" else FIXTURE[weight][rows]
        if second is None:
            metric.update_state(FIXTURE[first][rows], sample_weight=w)
        else:
            metric.update_state(FIXTURE[first][rows], FIXTURE[second][rows], sample_weight=w)
    assert metric.result() == pytest.approx(float(FIXTURE[f"stream_{case['id']}"]), rel=1e-5, abs=1e-6)
    metric.reset_state()
    assert metric.state[0] == 0


def test_empty_regions_cost_one_through_epsilon():
    """Keras adds epsilon to the denominators: two empty masks give 1 - 0 / epsilon = 1, not NaN."""
    zeros = np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(losses.dice(zeros, zeros, axis=-1), [1.0, 1.0])
    np.testing.assert_array_equal(losses.tversky(zeros, zeros, axis=-1), [1.0, 1.0])


def test_pearson_of_a_constant_sample_is_nan_as_in_keras():
    assert np.isnan(metrics.pearson_correlation(np.zeros((2, 3)), np.ones((2, 3)))).all()
    np.testing.assert_allclose(metrics.concordance_correlation(np.zeros((2, 3)), np.zeros((2, 3))), [0.0, 0.0])


# --- configs, names, errors --------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=[c["class_name"] for c in CONFIGS])
def test_configs_are_keras_and_round_trip(config):
    module = losses if config["module"] == "keras.losses" else metrics
    made = module.deserialize(config)
    assert type(made).__name__ == config["class_name"]
    assert module.serialize(made) == config
    assert module.serialize(type(made).from_config(made.get_config())) == config


def test_names_resolve_to_the_classes():
    for cls, names in [(losses.Dice, ["Dice", "dice"]), (losses.Tversky, ["Tversky", "tversky"]),
                       (losses.Circle, ["Circle", "circle"]),
                       (losses.CategoricalGeneralizedCrossEntropy, ["CategoricalGeneralizedCrossEntropy",
                                                                    "categorical_generalized_cross_entropy"])]:
        for name in names:
            assert type(losses.get(name)) is cls
        assert type(losses.get(getattr(losses, names[1]))) is cls
    for cls, name in [(metrics.PearsonCorrelation, "pearson_correlation"),
                      (metrics.ConcordanceCorrelation, "concordance_correlation"), (metrics.Sum, "sum")]:
        assert type(metrics.get(name)) is cls and type(metrics.get(cls.__name__)) is cls
    assert type(metrics.get(metrics.pearson_correlation)) is metrics.PearsonCorrelation
    assert metrics.PearsonCorrelation()._direction == "up"


@pytest.mark.parametrize("q", [0.0, 1.0, 1.5, -0.2])
def test_a_q_outside_the_open_unit_interval_gets_keras_message(q):
    expected = json.loads(str(FIXTURE["errors"]))[f"gce_q_{q}"]
    with pytest.raises(ValueError) as error:
        losses.CategoricalGeneralizedCrossEntropy(q=q)
    assert str(error.value) == expected


def test_saved_models_keep_the_losses_and_metrics(tmp_path):
    model = _model("sigmoid")
    model.compile(optimizer="sgd", loss=losses.Tversky(alpha=0.3, beta=0.7, axis=-1),
                  metrics=[metrics.PearsonCorrelation(axis=0), "concordance_correlation"])
    x, y = FIXTURE["model_x"], FIXTURE["model_binary"]
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(before, rel=1e-6)
    restored = again._compiled.losses[0]
    assert isinstance(restored, losses.Tversky) and restored.get_config() == model._compiled.losses[0].get_config()
    assert [type(m) for m in again._compiled.metrics[0]] == [metrics.PearsonCorrelation,
                                                             metrics.ConcordanceCorrelation]
    assert again._compiled.metrics[0][0].axis == 0


@pytest.mark.parametrize("module", [region_losses, correlation_metrics])
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
