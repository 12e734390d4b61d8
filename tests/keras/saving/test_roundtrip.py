"""save -> load -> predict is exact for both formats; configs and JSON round-trip; writes are
atomic; ModelCheckpoint writes files that load."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.saving import keras_zip


def _functional():
    a, b = keras.Input(shape=(5,), name="a"), keras.Input(shape=(3,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    inner = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(4, name="in1"),
                              layers.BatchNormalization(name="in_bn")], name="inner")
    h = layers.Concatenate(name="cat")([shared(a), shared(layers.Dense(5, name="lift")(b))])
    out1 = layers.Dense(2, activation="softmax", name="out1")(h)
    out2 = inner(layers.Dense(4, kernel_regularizer="l2", name="mid")(h))
    return keras.Model([a, b], [out1, out2], name="two")


def _sequential():
    return keras.Sequential([keras.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3, activation="relu", name="conv"),
                             layers.MaxPooling2D(name="pool"), layers.Flatten(name="flat"),
                             layers.Dropout(0.2, name="drop"), layers.Dense(2, name="dense")], name="seq")


def _inputs(model, rng):
    arrays = [rng.standard_normal((7,) + t.shape[1:]).astype("float32") for t in model.inputs]
    return arrays if len(arrays) > 1 else arrays[0]


def _outputs(model, x):
    y = model.predict(x, verbose=0)
    return y if isinstance(y, list) else [y]


@pytest.mark.parametrize("build", [_functional, _sequential])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_predict_is_exact(tmp_path, build, suffix):
    rng = np.random.default_rng(0)
    model = build()
    for var in model.weights:   # non-trivial values everywhere, moving statistics included
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype(var.dtype))
    x = _inputs(model, rng)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    again = keras.models.load_model(path)
    assert type(again).__name__ == type(model).__name__
    assert [l.name for l in again.layers] == [l.name for l in model.layers]
    for want, got in zip(_outputs(model, x), _outputs(again, x)):
        np.testing.assert_array_equal(got, want)


def test_models_module_saves_and_loads_as_keras_does(tmp_path):
    model = _sequential()
    x = _inputs(model, np.random.default_rng(1))
    keras.models.save_model(model, tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(_outputs(again, x)[0], _outputs(model, x)[0])


def test_json_and_config_round_trip():
    model = _functional()
    again = keras.models.model_from_json(model.to_json())
    assert again.get_config() == model.get_config()
    assert keras.Model.from_config(model.get_config()).get_config() == model.get_config()


def test_compile_config_is_restored(tmp_path):
    model = _sequential()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.5),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert type(again.optimizer).__name__ == "SGD"
    assert again.optimizer.momentum == 0.5 and again.optimizer.learning_rate == pytest.approx(0.05)
    assert keras.models.load_model(tmp_path / "m.keras", compile=False).__dict__.get("_compiled") is None


def test_unknown_extension_and_overwrite_false(tmp_path):
    model = _sequential()
    with pytest.raises(ValueError, match="Invalid filepath extension"):
        model.save(tmp_path / "m.bin")
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(tmp_path / "m.keras", overwrite=False)


def test_an_uncompiled_h5_file_loads_with_keras_warning(tmp_path):
    _sequential().save(tmp_path / "m.h5")
    with pytest.warns(UserWarning, match=r"model was \*not\* compiled"):
        model = keras.models.load_model(tmp_path / "m.h5")
    assert getattr(model, "_compiled", None) is None


def test_a_path_that_cannot_hold_a_file_is_named(tmp_path):
    model = _sequential()
    (tmp_path / "afile").write_text("")
    (tmp_path / "d.keras").mkdir()
    with pytest.raises(NotADirectoryError, match=r"Cannot save to '.*afile/m.keras': .*afile' is a file"):
        model.save(tmp_path / "afile" / "m.keras")
    with pytest.raises(IsADirectoryError, match=r"Cannot save to '.*d.keras': it is a directory"):
        model.save(tmp_path / "d.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "d.keras"]   # no temporary left


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m.weights.h5"])
def test_saved_file_permissions_follow_the_umask(tmp_path, name):
    model = _sequential()
    save = model.save_weights if name.endswith(".weights.h5") else model.save
    previous = os.umask(0o027)
    try:
        save(tmp_path / "new" / name)
    finally:
        os.umask(previous)
    assert (tmp_path / "new" / name).stat().st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "new" / name, 0o604)
    save(tmp_path / "new" / name)   # replacing a file keeps its permissions
    assert (tmp_path / "new" / name).stat().st_mode & 0o777 == 0o604


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch, suffix):
    model = _sequential()
    path = tmp_path / f"m{suffix}"
    model.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        target = next(a for a in args if isinstance(a, (str, os.PathLike)) or hasattr(a, "attrs"))
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as f:
                f.write(b"PK\x03\x04half")
        raise OSError("disk full")

    from nncompile.keras.saving import legacy_h5
    monkeypatch.setattr(keras_zip, "write_model", broken)
    monkeypatch.setattr(legacy_h5, "write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]


@pytest.mark.parametrize("weights_only,name", [(False, "ckpt.keras"), (True, "ckpt.weights.h5")])
def test_model_checkpoint_writes_a_loadable_file(tmp_path, weights_only, name):
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2, name="d")])
    model.compile(optimizer="adam", loss="mse")
    path = tmp_path / name
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=weights_only)
    model.fit(rng.standard_normal((8, 3)), rng.standard_normal((8, 2)), epochs=2, verbose=0,
              callbacks=[checkpoint])
    x = rng.standard_normal((4, 3)).astype("float32")
    if weights_only:
        again = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2, name="d")])
        again.load_weights(path)
    else:
        again = keras.models.load_model(path)
        assert again.optimizer.iterations == 2
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_input_shape_on_a_layer_is_written_once_in_the_input_layer_as_keras_3_writes_it():
    """With the layer's own `batch_input_shape` as well, Keras 3 builds a second input and
    fails ("could not be deserialized properly"); tests/fixtures/keras/check_nncompile_files.py
    loads such files in real Keras."""
    sequential = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dense(1)])
    x = keras.Input(shape=(3,))
    functional = keras.Model(x, keras.layers.Dense(2, input_shape=(3,))(x))
    for model in (sequential, functional):
        entries = model.get_config()["layers"]
        assert entries[0]["class_name"] == "InputLayer"
        assert not any("batch_input_shape" in entry["config"] for entry in entries)
        assert type(model).from_config(model.get_config()).input_shape == (None, 3)
