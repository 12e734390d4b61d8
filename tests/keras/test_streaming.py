"""fit / evaluate / predict on data read batch by batch: keras.utils.PyDataset (Sequence),
generators and other iterables, with steps_per_epoch / validation_steps / steps, shuffling and
the epoch hooks as Keras 3 has them, and memory bounded by the batches read ahead."""
from __future__ import annotations

import threading
import warnings
import weakref

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers

BATCH = 4


@pytest.fixture(autouse=True)
def reference(monkeypatch):
    """The numpy interpreter runs the steps: these tests are about the data, not the code."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def data(count=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3)[:, None]


def model():
    keras.utils.set_random_seed(5)
    net = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(4, activation="tanh"),
                            layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    return net


class Batches(keras.utils.PyDataset):
    """Arrays served a batch at a time; it records the indices asked for, the epoch hooks
    called, and how many of the batches it made are still alive at any moment."""

    def __init__(self, x, y, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.weights = x, y, weights
        self.asked, self.hooks = [], []
        self.alive = self.most_alive = 0
        self.lock = threading.Lock()

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, index):
        part = slice(index * BATCH, (index + 1) * BATCH)
        x = self.x[part].copy()
        with self.lock:
            self.asked.append(index)
            self.alive += 1
            self.most_alive = max(self.most_alive, self.alive)
        weakref.finalize(x, self._dropped)
        return (x, self.y[part]) if self.weights is None else (x, self.y[part], self.weights[part])

    def _dropped(self):
        with self.lock:
            self.alive -= 1

    def on_epoch_begin(self):
        self.hooks.append("begin")

    def on_epoch_end(self):
        self.hooks.append("end")


def test_sequence_is_py_dataset_and_utils_exposes_no_modules_by_accident():
    assert keras.utils.Sequence is keras.utils.PyDataset
    assert not any(hasattr(keras.utils, name) for name in ("np", "os", "sys", "math"))


def test_fit_on_a_py_dataset_trains_as_on_the_same_arrays():
    x, y = data()
    on_arrays = model()
    want = on_arrays.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history
    streamed = model()
    got = streamed.fit(Batches(x, y), epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for a, b in zip(streamed.get_weights(), on_arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_memory_holds_only_the_batches_read_ahead():
    x, y = data(count=200)
    alone = Batches(x, y)
    model().fit(alone, epochs=1, verbose=0)
    assert len(alone.asked) == 50 and alone.most_alive <= 2
    ahead = Batches(x, y, workers=3, max_queue_size=3)
    model().fit(ahead, epochs=1, verbose=0)
    assert sorted(ahead.asked) == list(range(50)) and ahead.most_alive <= 3 + 2


def test_shuffle_permutes_the_batches_every_epoch_and_hooks_surround_each_pass():
    x, y = data()
    dataset = Batches(x, y)
    net = model()
    net.fit(dataset, epochs=2, verbose=0)
    first, second = dataset.asked[:6], dataset.asked[6:]
    assert sorted(first) == sorted(second) == list(range(6)) and first != second
    assert dataset.hooks == ["begin", "end"] * 2
    dataset.asked.clear()
    net.evaluate(dataset, verbose=0)
    assert dataset.asked == list(range(6)) and dataset.hooks[-2:] == ["begin", "end"]


def test_steps_per_epoch_goes_on_through_a_generator_and_running_out_stops_training():
    x, y = data()
    read = []

    def batches():
        for start in range(0, len(x), BATCH):
            read.append(start)
            yield x[start:start + BATCH], y[start:start + BATCH]

    history = model().fit(batches(), steps_per_epoch=2, epochs=3, verbose=0).history
    assert read == list(range(0, 24, BATCH)) and len(history["loss"]) == 3
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model().fit(batches(), epochs=3, verbose=0).history
    assert len(history["loss"]) == 1   # a generator is read once: the second epoch gets nothing


def test_iterables_of_weighted_tuples_evaluate_as_the_arrays_and_steps_limit_them():
    x, y = data()
    weights = np.linspace(0.5, 2.0, len(x)).astype(np.float32)

    class Loader:   # re-iterable, like a torch DataLoader
        def __iter__(self):
            return ((x[i:i + BATCH], y[i:i + BATCH], weights[i:i + BATCH])
                    for i in range(0, len(x), BATCH))

    net = model()
    want = net.evaluate(x, y, sample_weight=weights, batch_size=BATCH, verbose=0)
    np.testing.assert_allclose(net.evaluate(Loader(), verbose=0), want, rtol=1e-5)
    first_two = net.evaluate(x[:8], y[:8], sample_weight=weights[:8], verbose=0)
    np.testing.assert_allclose(net.evaluate(Loader(), steps=2, verbose=0), first_two, rtol=1e-5)


def test_validation_data_as_a_py_dataset_with_validation_steps():
    x, y = data()
    net = model()
    val = Batches(x, y)
    history = net.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_data=val,
                      validation_steps=2).history
    assert val.asked == [0, 1]
    np.testing.assert_allclose(history["val_loss"], [net.evaluate(x[:8], y[:8], verbose=0)[0]],
                               rtol=1e-5)


def test_predict_takes_steps_and_streams_ignoring_targets():
    x, y = data()
    net = model()
    np.testing.assert_allclose(net.predict(x, batch_size=BATCH, steps=3), net.predict(x[:12]),
                               rtol=1e-6)
    streamed = net.predict((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, 24, BATCH))
    np.testing.assert_allclose(streamed, net.predict(x), rtol=1e-6)
    np.testing.assert_allclose(net.predict(Batches(x, y), steps=2), net.predict(x[:8]), rtol=1e-6)


def test_class_weight_weighs_streamed_batches():
    x, y = data()
    labels = (y > 0).astype(np.float32)
    runs = []
    for source in ((x, labels), (Batches(x, labels),)):
        net = model()
        net.fit(*source, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                class_weight={0: 1.0, 1: 3.0})
        runs.append(net.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_multiprocessing_is_read_with_threads_and_says_so():
    x, y = data()
    with pytest.warns(UserWarning, match="use_multiprocessing=True.*threads"):
        model().fit(Batches(x, y, workers=2, use_multiprocessing=True), epochs=1, verbose=0)


def test_a_py_dataset_without_super_init_is_warned_about_and_still_read():
    x, y = data()

    class Bare(keras.utils.PyDataset):
        def __init__(self):   # forgets super().__init__()
            pass

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[index * BATCH:(index + 1) * BATCH], y[index * BATCH:(index + 1) * BATCH]

    with pytest.warns(UserWarning, match=r"should call `super\(\).__init__\(\*\*kwargs\)`"):
        model().fit(Bare(), epochs=1, verbose=0)


@pytest.mark.parametrize("call, message", [
    (lambda net, ds: net.fit(ds, np.zeros(24), verbose=0),
     "When providing `x` as a PyDataset, `y` should not be passed"),
    (lambda net, ds: net.fit(ds, validation_split=0.2, verbose=0),
     "`validation_split` is only supported for NumPy arrays, not for a PyDataset"),
    (lambda net, ds: net.fit(iter([(1, 2, 3, 4)]), verbose=0),
     "must be a tuple or a dict"),
])
def test_misuse_gets_one_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(model(), Batches(*data()))
