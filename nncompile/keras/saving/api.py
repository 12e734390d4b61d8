"""The public saving functions: `load_model` / `save_model` (chosen by the file's signature when
reading, by the extension when writing), `save_weights` / `load_weights`, and JSON configs."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import h5py

from nncompile.keras.saving import configs, keras_zip, legacy_h5, weights
from nncompile.keras.saving.files import (atomic_write, check_overwrite, fail, reading,
                                          require_file)
from nncompile.keras.saving.registry import scope_adding

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"


def _signature(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_ZIP):
        return "zip"
    if head == _HDF5:
        return "h5"
    raise fail(path, f"File format not supported: Keras 3 only supports V3 `.keras` files (zip) "
                     f"and legacy H5 format files (`.h5`); the file starts with {head!r}")


def load_model(filepath, custom_objects: Mapping[str, Any] | None = None, compile: bool = True,
               safe_mode: bool = True):
    """The model saved at `filepath` (.keras zip or legacy .h5, recognized by content).

    With `compile=True` a model saved compiled comes back compiled, with its optimizer state.
    Nothing in the file is ever executed: Lambda layers are refused under `safe_mode` (and always
    need a class in `custom_objects`), unknown classes name `custom_objects`.
    """
    path = os.fspath(filepath)
    require_file(path, "'.keras' zip or '.h5'")
    kind = _signature(path)
    with reading(path, "Keras model"), scope_adding(custom_objects):
        if kind == "zip":
            return keras_zip.read_model(path, custom_objects, compile, safe_mode)
        with h5py.File(path, "r") as f:
            return legacy_h5.read_model(path, f, custom_objects, compile, safe_mode)


def save_model(model, filepath, overwrite: bool = True, zipped: bool | None = None,
               include_optimizer: bool = True) -> None:
    """Save `model` as a Keras 3 `.keras` zip or a legacy `.h5` file, atomically."""
    path = os.fspath(filepath)
    if zipped is False:
        raise ValueError("zipped=False (an unzipped .keras folder) is not supported; save a "
                         "`.keras` zip or an `.h5` file")
    if path.endswith(".keras"):
        check_overwrite(path, overwrite)
        atomic_write(path, lambda temp: keras_zip.write_model(temp, model))
    elif path.endswith((".h5", ".hdf5")):
        check_overwrite(path, overwrite)

        def write(temp: str) -> None:
            with h5py.File(temp, "w") as f:
                legacy_h5.write_model(f, model, include_optimizer)
        atomic_write(path, write)
    else:
        raise ValueError("Invalid filepath extension for saving. Please add either a `.keras` "
                         "extension for the native Keras format (recommended) or a `.h5` "
                         "extension. Use `model.export(filepath)` if you want to export a "
                         f"SavedModel for use with TFLite/TFServing/etc. Received: filepath={path}.")


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Keras 3's weights file (`.weights.h5`: the `.keras` weights layout), atomically."""
    path = os.fspath(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    check_overwrite(path, overwrite)

    def write(temp: str) -> None:
        with open(temp, "wb") as f:
            f.write(keras_zip.weights_bytes(model))
    atomic_write(path, write)


def load_weights(model, filepath, skip_mismatch: bool = False, by_name: bool = False) -> None:
    """Load weights from a `.weights.h5`, a `.keras` zip, or a legacy `.h5` (model or weights
    only; those by position among the layers with weights, or `by_name`)."""
    path = os.fspath(filepath)
    require_file(path, "'.weights.h5', '.keras' or '.h5'")
    kind = _signature(path)
    with reading(path, "Keras weights"):
        if kind == "zip":
            _refuse_by_name(path, by_name)
            keras_zip.read_weights(path, model, skip_mismatch)
            return
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                group = f["model_weights"] if "model_weights" in f else f
                legacy_h5.read_weights(path, group, model, by_name, skip_mismatch)
            else:
                _refuse_by_name(path, by_name)
                weights.read_state(path, f, model, skip_mismatch)


def _refuse_by_name(path: str, by_name: bool) -> None:
    """Keras 3 files address layers by class and position, so there are no names to match."""
    if by_name:
        raise fail(path, "`by_name=True` only supports legacy '.h5' files (layers saved by name); "
                         "this is a Keras 3 '.keras' / '.weights.h5' file: load it without by_name")


def model_to_json(model, **kwargs) -> str:
    """Keras 3's `to_json`: the serialized model config as JSON (`kwargs` go to json.dumps)."""
    from nncompile.keras.functional import serialize_layer

    return json.dumps(serialize_layer(model), **kwargs)


def model_from_json(json_string: str, custom_objects: Mapping[str, Any] | None = None):
    """A new (untrained) model from the JSON of `to_json` (or of Keras's)."""
    if not isinstance(json_string, (str, bytes)):
        raise ValueError(f"model_from_json: expected the JSON text of a model config. "
                         f"Received: {type(json_string).__name__}")
    config = configs.parse_json(json_string, "model_from_json: the model config")
    with scope_adding(custom_objects):
        return configs.model_from_config(config, custom_objects, safe_mode=True)
