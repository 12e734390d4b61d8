"""nncompile loads the recurrent models real Keras wrote (tests/fixtures/keras/recurrent, made by
make_recurrent.py), and its layers reproduce what Keras 3 computed in recurrent_facts.json.

Every expectation is Keras's, stored beside the files: predictions, evaluate results, the
predictions after one more training batch (they match only if the optimizer state came back),
the weights each file holds, and the facts' outputs of tiny layers with fixed weights.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.saving import load_model

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "keras" / "recurrent"
# A few files also run compiled; the rest on the interpreter, which needs no compile per model
# (compiled runs are tested against it in tests/keras/test_recurrent*.py).
COMPILED = ("lstm.keras", "masked_rnn.h5", "states.keras")
BATCH = 16   # the batch of the extra training step (architectures.one_more_batch)
TOLERANCE = 1e-5


def _fixtures() -> dict[str, Path]:
    """file name -> its npz, for every file an npz says Keras wrote."""
    found = {}
    for npz in sorted(FIXTURES.glob("*.npz")):
        with np.load(npz) as z:
            for file in json.loads(str(z["meta"]))["files"]:
                found[file] = npz
    return found


FILES = _fixtures()


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def _arrays(file: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(FILES[file]) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def _group(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [arrays[k] for k in sorted(k for k in arrays if re.fullmatch(rf"{prefix}\d*", k))]


def _feed(arrays: list[np.ndarray]):
    return arrays[0] if len(arrays) == 1 else arrays


def _predict(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    y = model.predict(_feed(inputs), verbose=0)
    return [np.asarray(a) for a in (y if isinstance(y, (list, tuple)) else [y])]


def _assert_outputs(got, want, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, Keras gave {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOLERANCE, err_msg=f"{what}, output {i}")


def test_fixtures_are_present():
    assert {"lstm.keras", "gru_reset_after.h5", "gru_reset_before.keras", "simple_rnn.h5",
            "bidirectional.keras", "stacked.h5", "masked_rnn.keras", "tf_keras_lstm.h5"} <= set(FILES)
    assert all((FIXTURES / f).is_file() for f in FILES)


@pytest.mark.parametrize("file", sorted(FILES))
def test_loaded_model_predicts_what_keras_predicted(file):
    _, arrays = _arrays(file)
    model = load_model(str(FIXTURES / file))
    _assert_outputs(_predict(model, _group(arrays, "x")), _group(arrays, "y"), file)


@pytest.mark.parametrize("file, backend", [(f, "reference") for f in sorted(FILES)]
                         + [(f, "cpu") for f in COMPILED])
def test_training_resumes_from_the_saved_optimizer_state(file, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    meta, arrays = _arrays(file)
    model = load_model(str(FIXTURES / file))
    assert type(model.optimizer).__name__ == meta["optimizer"]
    inputs, targets = _group(arrays, "x"), _group(arrays, "t")
    got = model.evaluate(_feed(inputs), _feed(targets), batch_size=len(inputs[0]), verbose=0,
                         return_dict=True)
    for name, value in meta["evaluate"].items():
        assert got[name] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE), name
    model.train_on_batch(_feed([a[:BATCH] for a in inputs]), _feed([t[:BATCH] for t in targets]))
    want = [arrays[f"{k}_next"] for k in sorted(k for k in arrays if re.fullmatch(r"y\d*", k))]
    _assert_outputs(_predict(model, inputs), want, f"{file} after one more batch")


@pytest.mark.parametrize("file", sorted(f for f in FILES if f.endswith(".keras")))
def test_files_nncompile_writes_hold_the_weights_keras_wrote(tmp_path, file):
    """Saved again by nncompile, a model's weights sit at the paths, with the shapes, that
    Keras's own file has."""
    import zipfile

    import h5py

    meta, _ = _arrays(file)
    model = load_model(str(FIXTURES / file), compile=False)
    model.save(tmp_path / file)
    with zipfile.ZipFile(tmp_path / file) as archive, archive.open("model.weights.h5") as member:
        with h5py.File(member, "r") as f:
            found = []
            f.visititems(lambda path, item: found.append([path, list(item.shape)])
                         if isinstance(item, h5py.Dataset) else None)
    keras_weights = [entry for entry in meta["weights"][file] if not entry[0].startswith("optimizer")]
    assert sorted(found) == sorted(keras_weights)


# --- the facts: tiny layers with fixed weights, as Keras 3 ran them -----------------------------

FACTS = json.loads((FIXTURES / "recurrent_facts.json").read_text()) if FIXTURES.is_dir() else {}
KINDS = {"lstm": lambda **kw: layers.LSTM(2, **kw), "gru_reset_after": lambda **kw: layers.GRU(2, **kw),
         "gru_reset_before": lambda **kw: layers.GRU(2, reset_after=False, **kw),
         "simple_rnn": lambda **kw: layers.SimpleRNN(2, **kw)}


def _facts_run(kind: str, layer, masked: bool, initial: bool = False) -> list[np.ndarray]:
    """`layer` (of the facts' layer `kind`, perhaps wrapped) with the fixed weights of `kind`,
    run on the facts' x (with their mask, and initial states)."""
    record = FACTS["layers"][kind]
    weights = [np.asarray(record["weights"][k], np.float32) for k in ("kernel", "recurrent_kernel", "bias")]
    x = np.asarray(FACTS["x"], np.float32)
    steps, features = x.shape[1:]
    mask = np.asarray(FACTS["mask"], bool)
    states = [np.asarray(s, np.float32) for s in record["initial_state"]] if initial else []
    state_inputs = [keras.Input(s.shape[1:]) for s in states]
    if masked:
        # Token t of row b is 1 + the index of x[b, t] (0 where masked): the table holds x.
        table = np.concatenate([np.zeros((1, features), np.float32), x.reshape(-1, features)])
        tokens = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
        data, inputs = tokens, keras.Input((steps,), dtype="int32")
        embedding = layers.Embedding(len(table), features, mask_zero=True)
        sequence = embedding(inputs)
        embedding.set_weights([table])
    else:
        data, inputs = x, keras.Input((steps, features))
        sequence = inputs
    out = layer(sequence, initial_state=state_inputs) if initial else layer(sequence)
    model = keras.Model([inputs, *state_inputs], out)
    layer.set_weights(weights * (len(layer.weights) // 3))
    result = model.predict(_feed([data, *states]), verbose=0)
    return result if isinstance(result, list) else [result]


FACT_CASES = {   # facts key -> (masked, initial states, the layer for a kind's constructor)
    "sequence": (False, False, lambda make: make(return_sequences=True)),
    "masked_sequence": (True, False, lambda make: make(return_sequences=True)),
    "masked_sequence_zero_output_for_mask": (True, False, lambda make: layers.RNN(
        make().cell, return_sequences=True, zero_output_for_mask=True)),
    "backwards_sequence": (False, False, lambda make: make(return_sequences=True, go_backwards=True)),
    "backwards_masked_sequence": (True, False, lambda make: make(return_sequences=True,
                                                                  go_backwards=True)),
    "masked_sequence_from_initial_state_unroll_False": (True, True, lambda make: make(
        return_sequences=True)),
    "masked_sequence_from_initial_state_unroll_True": (True, True, lambda make: make(
        return_sequences=True, unroll=True)),
    "bidirectional_concat": (False, False, lambda make: layers.Bidirectional(make(return_sequences=True))),
    "bidirectional_concat_masked": (True, False, lambda make: layers.Bidirectional(
        make(return_sequences=True))),
    "bidirectional_last_masked": (True, False, lambda make: layers.Bidirectional(make())),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("key", sorted(FACT_CASES))
def test_layers_compute_what_keras_computed(kind, key):
    masked, initial, make = FACT_CASES[key]
    got = _facts_run(kind, make(KINDS[kind]), masked, initial)
    np.testing.assert_allclose(got[0], FACTS["layers"][kind][key], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("key, masked, options", [("states", False, {}), ("masked_states", True, {}),
                                                  ("backwards_states", False, {"go_backwards": True})])
def test_final_states_are_what_keras_computed(kind, key, masked, options):
    got = _facts_run(kind, KINDS[kind](return_state=True, **options), masked)
    for g, w in zip(got[1:], FACTS["layers"][kind][key]):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOLERANCE)


def test_pad_sequences_answers_as_keras_did():
    """Every case Keras answered with an array, but one: Keras checks `padding` only when it
    pads something, so it lets padding='middle' pass on empty sequences; nncompile refuses it."""
    for case in FACTS["pad_sequences"]:
        if "error" in case or case["label"] == "padding 'middle', all empty":
            continue
        kwargs = dict(case["kwargs"])
        args = case["args"]
        if kwargs.pop("numpy rows", False):
            args = [[np.asarray(row, np.int64) for row in args[0]]]
        if kwargs.get("dtype") == "<type object>":
            kwargs["dtype"] = object
        got = keras.utils.pad_sequences(*args, **kwargs)
        assert got.tolist() == case["value"] and str(got.dtype) == case["dtype"], case["label"]


def test_stateful_lstm_carries_states_as_keras_on_tensorflow_does():
    """predict and predict_on_batch carry a stateful LSTM's states to the next batch (and the
    next call) until reset_states(), as Keras 3 does on TensorFlow (the JAX backend does not)."""
    facts = FACTS["stateful_tensorflow"]
    x = np.asarray(facts["x"], np.float32)
    layer = layers.LSTM(2, stateful=True)
    model = keras.Sequential([keras.Input(batch_shape=(2,) + x.shape[1:]), layer])
    layer.set_weights([np.asarray(w, np.float32) for w in facts["weights"]])
    first, carried = facts["out_x_0_2_from_zeros"], facts["out_x_2_4_after_x_0_2"]
    both = model.predict(x, batch_size=2, verbose=0)
    np.testing.assert_allclose(both, np.concatenate([first, carried]), rtol=0, atol=TOLERANCE)
    layer.reset_states()
    model.predict_on_batch(x[:2])
    np.testing.assert_allclose(model.predict_on_batch(x[2:]), carried, rtol=0, atol=TOLERANCE)
    layer.reset_states()
    fresh = model.predict(x[2:], verbose=0)
    np.testing.assert_allclose(fresh, facts["out_x_2_4_from_zeros"], rtol=0, atol=TOLERANCE)
