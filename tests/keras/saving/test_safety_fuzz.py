"""Loading never runs code from a file, and every damaged file gets one clear error naming it:
Lambda layers and unknown classes are refused; truncated, bit-flipped and edited files (a seeded
loop of mutations) either load or raise the loader's ValueError, never another exception or a hang."""
from __future__ import annotations

import io
import json
import signal
import zipfile

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.saving import SavingError, load_model

SECONDS_PER_CASE = 20
pytestmark = pytest.mark.filterwarnings("ignore:Error in loading the saved optimizer state")


def _saved(tmp_path, suffix: str):
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, activation="relu", name="d1"),
                              layers.BatchNormalization(name="bn"), layers.Dense(2, name="d2")], name="m")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 4)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / f"good{suffix}"
    model.save(path)
    return path


def _rewrite_config(path, out, edit):
    """A copy of the .keras zip at `path` with config.json edited by `edit(config)`."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def test_lambda_layer_is_refused_by_name(tmp_path):
    def add_lambda(config):
        config["config"]["layers"].append({"module": "keras.layers", "class_name": "Lambda",
                                           "config": {"name": "evil", "function": {
                                               "class_name": "__lambda__", "config": {"code": "..."}}}})
    path = _rewrite_config(_saved(tmp_path, ".keras"), tmp_path / "lambda.keras", add_lambda)
    with pytest.raises(ValueError, match="'evil' is a Lambda layer.*safe_mode=True.*custom_objects"):
        load_model(path)
    with pytest.raises(ValueError, match="'evil' is a Lambda layer.*custom_objects"):
        load_model(path, safe_mode=False)


@pytest.mark.parametrize("policy", ["mixed_float16", "bfloat16"])
def test_dtype_policy_without_a_numpy_dtype_is_refused_by_layer(tmp_path, policy):
    def mixed(config):
        config["config"]["layers"][1]["config"]["dtype"] = {
            "module": "keras", "class_name": "DTypePolicy", "config": {"name": policy}}
    path = _rewrite_config(_saved(tmp_path, ".keras"), tmp_path / "mixed.keras", mixed)
    with pytest.raises(SavingError, match=f"mixed.keras.*layer 'd1' \\(Dense\\): dtype policy '{policy}'"):
        load_model(path)


def test_unknown_class_names_custom_objects(tmp_path):
    def rename(config):
        config["config"]["layers"][1]["class_name"] = "MyDense"
    path = _rewrite_config(_saved(tmp_path, ".keras"), tmp_path / "custom.keras", rename)
    with pytest.raises(ValueError, match=r"Unknown layer class 'MyDense' \(layer 'd1'\).*custom_objects"):
        load_model(path)
    model = load_model(path, custom_objects={"MyDense": layers.Dense})
    assert model.get_layer("d1").units == 3


def _set_in_layer(index: int, key: str, value):
    def edit(config):
        config["config"]["layers"][index]["config"][key] = value
    return edit


@pytest.mark.parametrize("index, key, value, match", [
    (1, "use_bias", "yes", r"Layer 'd1' \(Dense\): the `use_bias` argument must be True or False\. "
                           r"Received: use_bias='yes'"),
    (2, "center", "no", r"Layer 'bn' \(BatchNormalization\): the `center` argument must be True or "
                        r"False"),
    # A negative epsilon loaded and predicted NaN.
    (2, "epsilon", -1.0, r"Layer 'bn' \(BatchNormalization\): the `epsilon` argument must be a "
                         r"float >= 0\. Received: epsilon=-1\.0"),
])
def test_values_of_the_wrong_kind_are_refused_naming_file_layer_and_key(tmp_path, index, key,
                                                                        value, match):
    path = _rewrite_config(_saved(tmp_path, ".keras"), tmp_path / "bad.keras",
                           _set_in_layer(index, key, value))
    with pytest.raises(SavingError, match=rf"bad\.keras.*{match}"):
        load_model(path)


def test_weights_that_no_layer_of_the_config_takes_are_an_error(tmp_path):
    """A config listing only the InputLayer loaded as an identity model, ignoring the weights."""
    def only_input(config):
        del config["config"]["layers"][1:]
    path = _rewrite_config(_saved(tmp_path, ".keras"), tmp_path / "identity.keras", only_input)
    with pytest.raises(SavingError, match=r"identity\.keras.*weights that no layer of the model "
                                          r"takes: layers/batch_normalization, layers/dense, "
                                          r"layers/dense_1 \(the model's layers: none\)"):
        load_model(path)


def test_load_weights_with_skip_mismatch_warns_of_weights_it_does_not_take(tmp_path):
    path = _saved(tmp_path, ".keras")
    smaller = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, activation="relu")])
    with pytest.raises(SavingError, match="no layer of the model takes: layers/batch_normalization"):
        smaller.load_weights(path)
    with pytest.warns(UserWarning, match="no layer of the model takes: layers/batch_normalization"):
        smaller.load_weights(path, skip_mismatch=True)


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(OSError, match="missing.keras"):
        load_model(tmp_path / "missing.keras")


def test_wrong_kind_of_file(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("hello")
    with pytest.raises(SavingError, match="notes.keras.*File format not supported"):
        load_model(path)


def test_missing_weight_names_file_layer_and_weight(tmp_path):
    path = _saved(tmp_path, ".h5")
    with h5py.File(path, "a") as f:
        del f["model_weights/d2/d2/bias"]
    with pytest.raises(SavingError, match=r"good.h5.*layer 'd2'.*weight 'd2/bias' is missing"):
        load_model(path)


def test_shape_mismatch_names_file_layer_and_weight(tmp_path):
    path = _saved(tmp_path, ".h5")
    with h5py.File(path, "a") as f:
        del f["model_weights/d1/d1/kernel"]
        f["model_weights/d1/d1/kernel"] = np.zeros((5, 3), "float32")
    with pytest.raises(SavingError, match=r"good.h5.*layer 'd1'.*'d1/kernel' expects shape \(4, 3\).*\(5, 3\)"):
        load_model(path)


# --- the fuzz loop ----------------------------------------------------------------------------------

def _truncate(data: bytes, rng) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def _flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 8))):
        out[int(rng.integers(0, len(out)))] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _h5_edit(data: bytes, rng) -> bytes:
    """Delete or rename a random attribute or dataset, or replace a dataset's shape."""
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "a") as f:
        items = []
        f.visititems(lambda name, obj: items.append(name))
        target = f[items[int(rng.integers(0, len(items)))]] if items else f
        action = int(rng.integers(0, 4))
        if action == 0 and target.attrs:
            del target.attrs[list(target.attrs)[0]]
        elif action == 1 and f.attrs:
            key = list(f.attrs)[int(rng.integers(0, len(f.attrs)))]
            f.attrs[key] = "{not json" if rng.integers(0, 2) else np.int64(7)
        elif action == 2 and target.name != "/":
            f.move(target.name, target.name + "_renamed")
        elif isinstance(target, h5py.Dataset):
            name = target.name
            del f[name]
            f[name] = np.zeros((int(rng.integers(1, 4)),), "float32")
    return buffer.getvalue()


def _zip_edit(data: bytes, rng) -> bytes:
    """Drop a member or put damaged weights (an h5 edit) into the archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    if rng.integers(0, 3) == 0:
        files.pop(list(files)[int(rng.integers(0, len(files)))])
    else:
        files["model.weights.h5"] = _h5_edit(files["model.weights.h5"], rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, blob in files.items():
            z.writestr(name, blob)
    return out.getvalue()


def _alarm(signum, frame):
    raise TimeoutError("the loader hung on a mutated file")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_mutated_files_load_or_fail_clearly(tmp_path, suffix):
    good = _saved(tmp_path, suffix).read_bytes()
    rng = np.random.default_rng(7)
    mutations = [_truncate, _flip, _zip_edit if suffix == ".keras" else _h5_edit]
    path = tmp_path / f"bad{suffix}"
    outcomes = {"loaded": 0, "refused": 0}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(100):
            path.write_bytes(mutations[case % len(mutations)](good, rng))
            signal.alarm(SECONDS_PER_CASE)
            try:
                load_model(path)
                outcomes["loaded"] += 1
            except ValueError as e:
                message = str(e)
                assert str(path) in message and "\n" not in message, message
                outcomes["refused"] += 1
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert outcomes["refused"] > 50
