"""keras.tree, keras.backend's dtypes, split_dataset, pack/unpack and get_source_inputs against
real Keras 3 (tests/fixtures/keras/utils_extra, made by make_utils_extra.py), and
timeseries_dataset_from_array against windows cut here with numpy from Keras's definition
(the side venv has no TensorFlow to run Keras's)."""
import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import backend, tree, utils
from tests.keras.keras_files import fixture_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "utils_extra"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
cases = fixture_module(FIXTURES / "cases.py")
NAMESPACE = {**vars(cases), "tree": tree, "backend": backend, "utils": utils, "keras": keras,
             "np": np, "data": cases.split_arrays()}


def outcome(expression: str):
    try:
        return repr(eval(expression, NAMESPACE))
    except Exception as e:  # noqa: BLE001 - the error is the result compared
        return [type(e).__name__, str(e)]


def _comparable(result):
    # Class reprs name the module that defined Foo, which differs between the two runs.
    if isinstance(result, list) and "<class" in result[1]:
        return [result[0], re.sub(r"<class '[\w.]+\.(\w+)'>", r"<class \1>", result[1])]
    return result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("index", range(len(cases.TREE)))
def test_tree_and_data_tuples_match_keras(index):
    assert _comparable(outcome(cases.TREE[index])) == _comparable(EXPECTED["tree"][index])


@pytest.mark.parametrize("index", range(len(cases.DTYPES)))
def test_dtypes_match_keras_with_its_tensorflow_64_bit_table(index):
    assert outcome(cases.DTYPES[index]) == EXPECTED["dtypes_tf_table"][index]


def test_result_type_differs_from_keras_on_jax_only_by_keeping_64_bits():
    for ours, jax in zip(EXPECTED["dtypes_tf_table"], EXPECTED["dtypes_jax"]):
        if ours != jax:
            assert {ours, jax} in ({"'int64'", "'int32'"}, {"'float64'", "'float32'"})


def test_assert_same_structure_check_types_warns_as_keras():
    with pytest.warns(DeprecationWarning, match="no longer has any effect, please remove"):
        tree.assert_same_structure([1], [2], check_types=True)
    with pytest.warns(DeprecationWarning, match="assert_same_paths"):
        tree.assert_same_structure([1], [2], check_types=False)


def test_tree_rebuilds_namedtuples_and_dicts_in_their_own_order():
    Point = collections.namedtuple("Point", ["y", "x"])
    out = tree.map_structure(lambda v: v + 1, {"z": Point(1, 2), "a": [3]})
    assert list(out) == ["z", "a"] and out["z"] == Point(2, 3) and out["a"] == [4]
    flat = tree.flatten({"z": Point(1, 2), "a": [3]})
    assert tree.pack_sequence_as({"z": Point(0, 0), "a": [0]}, flat) == {"z": Point(1, 2), "a": [3]}


@pytest.mark.parametrize("index", range(len(cases.SPLITS)))
def test_split_dataset_matches_keras(index):
    name, kwargs = cases.SPLITS[index]
    expected = EXPECTED["splits"][index]
    try:
        left, right = eval(f"utils.split_dataset(data[{name!r}], {kwargs})", NAMESPACE)
    except Exception as e:  # noqa: BLE001
        assert [type(e).__name__, str(e)] == expected
        return
    assert isinstance(expected, dict), f"Keras raised {expected}"
    assert isinstance(left, tuple) == expected["tuples"]
    for ours, theirs in zip((left, right), expected["arrays"]):
        parts = zip(ours, theirs) if isinstance(ours, tuple) else [(ours, theirs)]
        for array, values in parts:
            np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize("index", range(len(cases.SPLIT_ERRORS)))
def test_split_dataset_errors_match_keras(index):
    assert outcome(cases.SPLIT_ERRORS[index]) == EXPECTED["split_errors"][index]


def test_split_dataset_parts_train_a_model():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    train, test = utils.split_dataset((x, y), left_size=0.75, shuffle=True, seed=1)
    assert len(train[0]) == 15 and len(test[1]) == 5
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(*train, batch_size=5, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_get_source_inputs_and_uids_match_keras():
    assert cases.graph_case(keras) == EXPECTED["graph"]


# --- timeseries_dataset_from_array ----------------------------------------------------------

def windows(data, targets, length, stride, rate, start, end):
    """Keras's definition: a window starts every `stride` steps of data[start:end], holds
    `length` steps `rate` apart, and must fit (targets[s] must exist too)."""
    span, steps = data[start:end], []
    s = 0
    while s + (length - 1) * rate < len(span) and (targets is None or s < len(targets)):
        steps.append(s)
        s += stride
    xs = [np.stack([span[s + k * rate] for k in range(length)]) for s in steps]
    ys = None if targets is None else [targets[start:end][s] for s in steps]
    return xs, ys


@pytest.mark.parametrize("length, stride, rate, batch, start, end, with_targets", [
    (3, 1, 1, 4, None, None, True), (10, 3, 2, 5, None, None, False), (4, 2, 3, 128, 5, 40, True),
    (1, 1, 1, 7, 0, None, True), (5, 4, 1, None, 3, None, True), (6, 1, 2, 3, None, 30, False),
    (3, 1, 1, 4, None, None, 15),
])
def test_timeseries_windows_and_batches_follow_keras_definition(length, stride, rate, batch,
                                                                start, end, with_targets):
    data = np.arange(45 * 2, dtype="float32").reshape(45, 2)
    # An int `with_targets` gives that many targets: fewer than windows, which they then limit.
    targets = np.arange(45 if with_targets is True else with_targets) * 10 if with_targets else None
    ds = utils.timeseries_dataset_from_array(data, targets, length, sequence_stride=stride,
                                             sampling_rate=rate, batch_size=batch,
                                             start_index=start, end_index=end)
    xs, ys = windows(data, targets, length, stride, rate, start or 0, end or len(data))
    batches = list(ds)
    assert len(batches) == len(ds) == (len(xs) if batch is None else -(-len(xs) // batch))
    got_x = [b[0] if with_targets else b for b in batches]
    if batch is None:
        np.testing.assert_array_equal(np.stack(got_x), np.stack(xs))
    else:
        assert all(len(b) <= batch for b in got_x)
        np.testing.assert_array_equal(np.concatenate(got_x), np.stack(xs))
    if with_targets:
        got_y = [b[1] for b in batches]
        np.testing.assert_array_equal(np.stack(got_y) if batch is None else np.concatenate(got_y), ys)


def test_timeseries_keras_docstring_example():
    ds = keras.preprocessing.timeseries_dataset_from_array(np.arange(99), None, sequence_length=10,
                                                           sequence_stride=3, sampling_rate=2)
    (batch,) = list(ds)
    assert batch[0].tolist() == list(range(0, 20, 2)) and batch[1].tolist() == list(range(3, 23, 2))
    assert batch[-1].tolist() == list(range(78, 98, 2)) and len(batch) == 27


def test_timeseries_shuffle_is_deterministic_and_keeps_the_windows():
    data, targets = np.arange(50), np.arange(50) + 100
    kwargs = dict(sequence_length=4, batch_size=8, shuffle=True, seed=7)
    first = list(utils.timeseries_dataset_from_array(data, targets, **kwargs))
    again = list(utils.timeseries_dataset_from_array(data, targets, **kwargs))
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    x = np.concatenate([b[0] for b in first])
    y = np.concatenate([b[1] for b in first])
    # Keras's first shuffle: the start positions permuted by RandomState(seed).
    starts = np.arange(47, dtype="int32")
    np.random.RandomState(7).shuffle(starts)
    np.testing.assert_array_equal(x[:, 0], starts)
    assert sorted(x[:, 0].tolist()) == list(range(47))
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(4))
    np.testing.assert_array_equal(y, x[:, 0] + 100)


@pytest.mark.parametrize("kwargs, message", [
    (dict(start_index=-1), "`start_index` must be 0 or greater. Received: start_index=-1"),
    (dict(start_index=20), "`start_index` must be lower than the length of the data. Received: "
                           "start_index=20, for data of length 20"),
    (dict(start_index=5, end_index=5), "`end_index` must be higher than `start_index`. Received: "
                                       "start_index=5, and end_index=5 "),
    (dict(end_index=20), "`end_index` must be lower than the length of the data. Received: "
                         "end_index=20, for data of length 20"),
    (dict(end_index=-2), "`end_index` must be higher than 0. Received: end_index=-2"),
    (dict(sampling_rate=0), "`sampling_rate` must be higher than 0. Received: sampling_rate=0"),
    (dict(sampling_rate=20), "`sampling_rate` must be lower than the length of the data. "
                             "Received: sampling_rate=20, for data of length 20"),
    (dict(sequence_stride=-1), "`sequence_stride` must be higher than 0. Received: sequence_stride=-1"),
    (dict(sequence_stride=25), "`sequence_stride` must be lower than the length of the data. "
                               "Received: sequence_stride=25, for data of length 20"),
    (dict(format="torch"), '`format` should be either "tf" or "grain". Received: format=torch'),
])
def test_timeseries_errors_are_keras_messages(kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        utils.timeseries_dataset_from_array(np.arange(20), None, 3, **kwargs)


def test_fit_and_evaluate_on_a_timeseries_dataset():
    series = np.sin(np.arange(120) * 0.3).astype("float32")
    length = 5
    ds = utils.timeseries_dataset_from_array(series[:-length], series[length:], length, batch_size=16)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((length,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    kernel, bias = model.get_weights()
    # Windows must fit in series[:-length]: they start at 0 .. len(series) - 2 * length.
    starts = range(len(series) - 2 * length + 1)
    x = np.stack([series[s:s + length] for s in starts])
    y = series[[s + length for s in starts]]
    expected = np.mean(((x @ kernel)[:, 0] + bias[0] - y) ** 2)
    np.testing.assert_allclose(model.evaluate(ds, verbose=0), expected, rtol=1e-5)
    history = model.fit(ds, epochs=8, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert model.predict(ds, verbose=0).shape == (len(y), 1)
