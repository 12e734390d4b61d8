"""What fit, evaluate, predict and *_on_batch take: every wrong argument is one ValueError naming
it and what was expected; integer inputs are never wrapped into range; two threads fitting one
model run one after the other."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 3)).astype("float32")
Y = RNG.standard_normal((8, 2)).astype("float32")


def _model():
    model = keras.Sequential([keras.Input(shape=(3,), name="x"), layers.Dense(2, name="out")])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("call", [
    lambda m: m.fit(X[:2], Y, verbose=0),
    lambda m: m.fit(X, Y[:3], verbose=0),
    lambda m: m.evaluate(X[:2], Y, verbose=0),
    lambda m: m.train_on_batch(X[:2], Y),
    lambda m: m.fit(X, Y, validation_data=(X, Y[:3]), verbose=0),
])
def test_different_numbers_of_samples_are_refused(call):
    with pytest.raises(ValueError, match=r'Data cardinality is ambiguous: model "\w+" received \d '
                                         r'samples for input "x", \d samples for target "out"'):
        call(_model())


def test_a_sample_weight_of_another_length_is_refused():
    with pytest.raises(ValueError, match=r'8 samples for target "out", 3 samples for `sample_weight`'):
        _model().fit(X, Y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match=r"`sample_weight` must hold one weight per sample: "
                                         r"expected shape \(8,\)"):
        _model().fit(X, Y, sample_weight=np.ones((8, 2)), verbose=0)


@pytest.mark.parametrize("call", [lambda m: m.fit(X, verbose=0), lambda m: m.evaluate(X, verbose=0),
                                  lambda m: m.test_on_batch(X)])
def test_no_targets_for_a_model_with_a_loss_is_refused(call):
    with pytest.raises(ValueError, match=r'The target `y` of output "out" of model "\w+" is required: '
                                         r"the model was compiled with a loss .* Received: y=None"):
        call(_model())


def test_string_labels_are_refused():
    with pytest.raises(ValueError, match=r'The target `y` of output "out" .* must be numeric: '
                                         r"received an array of dtype <U1"):
        _model().fit(X, np.array([["a", "b"]] * 8), verbose=0)


@pytest.mark.parametrize("value", [0, -1, 2.0, 2.5, "8", True])
@pytest.mark.parametrize("call", [
    lambda m, v: m.fit(X, Y, batch_size=v, verbose=0),
    lambda m, v: m.evaluate(X, Y, batch_size=v, verbose=0),
    lambda m, v: m.predict(X, batch_size=v, verbose=0),
], ids=["fit", "evaluate", "predict"])
def test_batch_size_must_be_a_positive_integer(call, value):
    with pytest.raises(ValueError, match=r"the `batch_size` argument must be a positive integer\. "
                                         rf"Received: batch_size={value!r}"):
        call(_model(), value)


@pytest.mark.parametrize("arg,value,kind", [
    ("epochs", 2.0, "a non-negative integer"), ("epochs", -1, "a non-negative integer"),
    ("initial_epoch", 0.5, "a non-negative integer"), ("steps_per_epoch", 0, "a positive integer"),
    ("validation_batch_size", 1.5, "a positive integer"), ("validation_freq", 0, "a positive integer"),
])
def test_fit_counts_must_be_integers(arg, value, kind):
    with pytest.raises(ValueError, match=rf"fit\(\) of model '\w+': the `{arg}` argument must be "
                                         rf"{kind}\. Received: {arg}={value!r}"):
        _model().fit(X, Y, verbose=0, **{arg: value})


@pytest.mark.parametrize("split", [1, 1.5, -0.25, "0.2", None])
def test_validation_split_must_be_in_zero_one(split):
    with pytest.raises(ValueError, match=r"the `validation_split` argument must be a float in "
                                         rf"\[0, 1\).* Received: validation_split={split!r}"):
        _model().fit(X, Y, validation_split=split, verbose=0)


def test_a_validation_split_that_leaves_no_training_sample_is_refused():
    with pytest.raises(ValueError, match=r"Training data contains 8 samples, which is not sufficient "
                                         r"to split it .* `validation_split=0.9`"):
        _model().fit(X, Y, validation_split=0.9, verbose=0)
    history = _model().fit(X, Y, validation_split=0.25, verbose=0)   # 6 train, 2 validate
    assert sorted(history.history) == ["loss", "val_loss"]


def test_an_int64_index_beyond_int32_is_refused_not_wrapped():
    model = keras.Sequential([keras.Input(shape=(2,), dtype="int32", name="ids"),
                              layers.Embedding(10, 3, name="emb")])
    table = model.get_layer("emb").get_weights()[0]
    np.testing.assert_array_equal(model.predict(np.array([[3, 9]], np.int64), verbose=0),
                                  table[[[3, 9]]])
    for bad in (2**32 + 3, -2**31 - 1):
        with pytest.raises(ValueError, match=rf'Input 0 of model "\w+" \(input "ids"\) holds the '
                                             rf"value {bad}, which int32 \(the dtype it is cast "
                                             r"to\) cannot hold: expected values in "
                                             r"\[-2147483648, 2147483647\]"):
            model.predict(np.array([[bad, 1]], np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"holds the value nan, which int32"):
        model.predict(np.array([[np.nan, 1.0]]), verbose=0)


def test_two_threads_fitting_one_model_run_one_after_the_other():
    reference, model = _model(), _model()
    model.set_weights(reference.get_weights())
    for _ in range(2):
        reference.fit(X, Y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    events, errors = [], []
    first_began, second_began = threading.Event(), threading.Event()

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("begin")
            if first_began.is_set():
                second_began.set()
            first_began.set()
            second_began.wait(timeout=0.5)   # the other thread's fit would begin now if it could

        def on_train_end(self, logs=None):
            events.append("end")

    def fit():
        try:
            model.fit(X, Y, epochs=2, batch_size=4, shuffle=False, verbose=0, callbacks=[Recorder()])
        except Exception as e:   # reported below: an exception in a thread fails nothing itself
            errors.append(e)

    threads = [threading.Thread(target=fit) for _ in range(2)]
    threads[0].start()
    first_began.wait()
    threads[1].start()
    for thread in threads:
        thread.join()
    assert errors == [] and events == ["begin", "end", "begin", "end"]
    assert model.optimizer.iterations == reference.optimizer.iterations == 8
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
