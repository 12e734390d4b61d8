"""The Keras 3 native format (`.keras`): a zip of `metadata.json`, `config.json` and
`model.weights.h5` (layout in `weights.py`)."""
from __future__ import annotations

import datetime
import io
import json
import zipfile

import h5py

from nncompile.keras.saving import configs, optimizer_state, weights
from nncompile.keras.saving.files import fail
from nncompile.keras.saving.legacy_h5 import KERAS_VERSION

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"


def model_config(model) -> dict:
    """config.json: the serialized model with its build and compile configs."""
    from nncompile.keras.functional import serialize_layer

    config = serialize_layer(model)
    if type(model).__name__ == "Functional":
        config["registered_name"] = "Functional"
    config["build_config"] = {"input_shape": _input_shape(model)}
    compiled = configs.compile_config(model)
    if compiled is not None:
        config["compile_config"] = compiled
    return config


def _input_shape(model):
    """build_config's input shape: a Sequential's, or those a subclassed model was built for (a
    list of shapes for several inputs); None for a functional or unbuilt model."""
    from nncompile.keras.models import Sequential

    if not model.built:
        return None
    if isinstance(model, Sequential):
        return list(model._layers[0].batch_shape)
    if not model.has_call():
        return None
    shapes = [list(t.shape) for t in model._inputs]
    return shapes if isinstance(model._inputs_struct, list) else shapes[0]


def build_from_config(model, config: dict) -> None:
    """Build a subclassed model for the input shape its build_config holds, as Keras's
    `build_from_config` does: its layers' weights exist only once it is built."""
    build = config.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if shape is not None and not model.built and model.has_call():
        model.build(shape)


def weights_bytes(model, include_optimizer: bool = True) -> bytes:
    """model.weights.h5 (also the whole of a `.weights.h5` file) as bytes."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        optimizer = getattr(model, "optimizer", None) if include_optimizer else None
        values = None
        if optimizer is not None and getattr(model, "_compiled", None) is not None:
            values = [value for _, value in optimizer_state.optimizer_variables(optimizer)]
        weights.write_state(f, model, values, optimizer.name if optimizer is not None else None)
    return buffer.getvalue()


def write_model(path: str, model) -> None:
    """The .keras zip of `model` at `path`."""
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(METADATA, json.dumps(metadata))
        z.writestr(CONFIG, json.dumps(model_config(model)))
        z.writestr(WEIGHTS, weights_bytes(model))


def _members(path: str, *required: str) -> list[bytes]:
    """The contents of the `required` members of the zip at `path`; a missing one is named."""
    with zipfile.ZipFile(path, "r") as z:
        names = set(z.namelist())
        for name in required:
            if name not in names:
                raise fail(path, f"the archive has no '{name}' (it holds: "
                                 f"{', '.join(sorted(names)) or 'nothing'})")
        return [z.read(name) for name in required]


def read_weights(path: str, model, skip_mismatch: bool) -> None:
    """Load the layer weights of the .keras zip at `path` into `model` (not the optimizer's)."""
    blob, = _members(path, WEIGHTS)
    with h5py.File(io.BytesIO(blob), "r") as f:
        weights.read_state(path, f, model, skip_mismatch)


def read_model(path: str, custom_objects, compile: bool, safe_mode: bool):
    """The model of a .keras zip, compiled (with optimizer state) when it was saved compiled."""
    config_bytes, blob = _members(path, CONFIG, WEIGHTS)
    config = configs.parse_json(config_bytes, f"'{CONFIG}'")
    if not isinstance(config, dict):
        raise fail(path, f"'{CONFIG}' does not hold a model config")
    model = configs.model_from_config(config, custom_objects, safe_mode)
    build_from_config(model, config)
    with h5py.File(io.BytesIO(blob), "r") as f:
        weights.read_state(path, f, model)
        compiled = config.get("compile_config") if compile else None
        if compiled:
            configs.compile_from_config(model, compiled)
            values = weights.read_optimizer_values(path, f)
            if values is not None:
                optimizer_state.restore_optimizer(model.optimizer, model, values, path)
    return model
