"""Legacy HDF5 model files (`.h5`), as Keras 3 writes them and as tf.keras 2 and Keras 2.2 did.

Root attributes `model_config` and `training_config` (JSON), `keras_version` and `backend`;
`model_weights/<layer name>` groups listed by the `layer_names` attribute, each with the
`weight_names` of its weights (trainable first; `dense/kernel` in Keras 3, `dense/kernel:0` in
tf.keras 2, nested models as `<model>/<layer>/kernel`); `optimizer_weights` with its own
`weight_names`. Weights load by position among the layers that have weights, as Keras does.
"""
from __future__ import annotations

import json
import warnings

import h5py
import numpy as np

from nncompile.keras.saving import configs, optimizer_state
from nncompile.keras.saving.files import fail
from nncompile.keras.saving.weights import assign_all, legacy_weights, read_array

# The Keras release whose layout these files follow (Keras reads it but does not act on it).
KERAS_VERSION = "3.15.1"
BACKEND = "jax"


def _strings(names) -> np.ndarray:
    return np.asarray([n.encode("utf8") for n in names]) if names else np.asarray([])


def write_model(f: h5py.File, model, include_optimizer: bool = True) -> None:
    """The whole model (config, weights, compile config and optimizer state) into `f`."""
    from nncompile.keras.functional import serialize_layer

    if model.has_call():
        raise ValueError(f"Model '{model.name}' ({type(model).__name__}) defines its own `call`: a "
                         f"legacy '.h5' file has no place for the input shape it is built for, so "
                         f"its weights could not be loaded back (Keras 3's fail the same way). Save "
                         f"it as a '.keras' file, or its weights with save_weights('....weights.h5')")
    layer = serialize_layer(model)
    f.attrs["keras_version"] = KERAS_VERSION
    f.attrs["backend"] = BACKEND
    f.attrs["model_config"] = json.dumps({"class_name": layer["class_name"],
                                          "config": layer["config"]}).encode("utf8")
    compiled = configs.compile_config(model)
    if compiled is not None:
        optimizer = compiled.pop("optimizer")
        compiled["optimizer_config"] = {"class_name": optimizer["class_name"],
                                        "config": optimizer["config"]}
        f.attrs["training_config"] = json.dumps(compiled).encode("utf8")
    write_weights(f.create_group("model_weights"), model)
    if include_optimizer and compiled is not None:
        variables = optimizer_state.optimizer_variables(model.optimizer)
        group = f.create_group("optimizer_weights")
        group.attrs["weight_names"] = _strings([name for name, _ in variables])
        for name, value in variables:
            group.create_dataset(name, data=value)


def write_weights(group: h5py.Group, model) -> None:
    """`model_weights`: one group per layer, its weights named `<layer>/<weight>` (a nested
    model's as `<model>/<layer>/<weight>`)."""
    group.attrs["layer_names"] = _strings([layer.name for layer in model.layers])
    group.attrs["backend"] = BACKEND
    group.attrs["keras_version"] = KERAS_VERSION
    for layer in sorted(model.layers, key=lambda x: x.name):
        sub = group.create_group(layer.name)
        variables = legacy_weights(layer)
        names = [_weight_name(layer, v) for v in variables]
        sub.attrs["weight_names"] = _strings(names)
        for name, var in zip(names, variables):
            sub.create_dataset(name, data=var.numpy())
    group.create_group("top_level_model_weights").attrs["weight_names"] = _strings([])


def _weight_name(layer, var) -> str:
    from nncompile.keras.models import Model

    return f"{layer.name}/{var.path}" if isinstance(layer, Model) else var.path


# --- reading ------------------------------------------------------------------------------------

def read_attr_strings(file: str, group: h5py.Group, name: str) -> list[str]:
    """A list-of-strings attribute, possibly split by Keras into `<name>0`, `<name>1` ..."""
    if name in group.attrs:
        raw = [group.attrs[name]]
    else:
        raw, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            raw.append(group.attrs[f"{name}{chunk}"])
            chunk += 1
    out = []
    for value in raw:
        for item in np.atleast_1d(np.asarray(value)).ravel():
            if isinstance(item, bytes):
                item = item.decode("utf8")
            if not isinstance(item, str):
                raise fail(file, f"attribute '{name}' of '{group.name}' holds {item!r}, not names")
            out.append(item)
    return out


def read_json_attr(file: str, f: h5py.Group, name: str):
    value = f.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if not isinstance(value, str):
        raise fail(file, f"attribute '{name}' is not a JSON string")
    try:
        return configs.parse_json(value, f"attribute '{name}'")
    except ValueError as e:
        raise fail(file, str(e)) from None


def read_weights(file: str, group: h5py.Group, model, by_name: bool = False,
                 skip_mismatch: bool = False) -> None:
    """Load `model_weights` (or a weights-only legacy file's root) into `model`: by position
    among the layers with weights, or by layer name."""
    names = read_attr_strings(file, group, "layer_names")
    saved = {}
    for name in names:
        sub = group.get(name)
        if not isinstance(sub, h5py.Group):
            raise fail(file, f"layer '{name}' is listed in 'layer_names' but has no group")
        weight_names = read_attr_strings(file, sub, "weight_names")
        saved[name] = [read_array(file, sub, w, f"layer '{name}'") for w in weight_names]
    if by_name:
        pairs = _by_name(file, model, saved, skip_mismatch)
    else:
        pairs = _by_position(file, model, saved)
    assign_all(file, pairs, skip_mismatch)


def _by_position(file: str, model, saved: dict[str, list[np.ndarray]]) -> list:
    layers = [layer for layer in model.layers if legacy_weights(layer)]
    stored = [name for name, values in saved.items() if values]
    if len(stored) != len(layers):
        raise fail(file, f"layer count mismatch: the model has {len(layers)} layers with weights "
                         f"({', '.join(l.name for l in layers)}), the file has {len(stored)} "
                         f"({', '.join(stored)})")
    pairs = []
    for layer, name in zip(layers, stored):
        variables, values = legacy_weights(layer), saved[name]
        where = f"layer '{layer.name}' (saved as '{name}')"
        if len(values) != len(variables):
            raise fail(file, f"{where} expects {len(variables)} weights "
                             f"({', '.join(v.path for v in variables)}), the file has {len(values)}")
        pairs += [(var, value, where) for var, value in zip(variables, values)]
    return pairs


def _by_name(file: str, model, saved: dict[str, list[np.ndarray]], skip_mismatch: bool) -> list:
    pairs = []
    for layer in model.layers:
        if layer.name not in saved:
            continue
        variables, values = legacy_weights(layer), saved[layer.name]
        where = f"layer '{layer.name}'"
        if len(values) != len(variables):
            message = f"{where} expects {len(variables)} weights, the file has {len(values)}"
            if skip_mismatch:
                warnings.warn(f"Skipping loading of weights for {message}", stacklevel=3)
                continue
            raise fail(file, message)
        pairs += [(var, value, where) for var, value in zip(variables, values)]
    return pairs


def read_model(file: str, f: h5py.File, custom_objects, compile: bool, safe_mode: bool):
    """The model a legacy .h5 file holds, compiled (with optimizer state) when it was."""
    config = read_json_attr(file, f, "model_config")
    if config is None:
        raise fail(file, "no model config found in the file (attribute 'model_config'); a "
                         "weights-only file loads with `model.load_weights`")
    model = configs.model_from_config(config, custom_objects, safe_mode)
    weights = f.get("model_weights")
    if not isinstance(weights, h5py.Group):
        raise fail(file, "no 'model_weights' group")
    read_weights(file, weights, model)
    training = read_json_attr(file, f, "training_config") if compile else None
    if training is not None:
        configs.compile_from_config(model, training)
        _read_optimizer(file, f, model)
    elif compile:
        warnings.warn("No training configuration found in the save file, so the model was *not* "
                      "compiled. Compile it manually.", stacklevel=3)
    return model


def _read_optimizer(file: str, f: h5py.File, model) -> None:
    group = f.get("optimizer_weights")
    if not isinstance(group, h5py.Group):
        return
    names = read_attr_strings(file, group, "weight_names")
    values = [read_array(file, group, name, "optimizer") for name in names]
    optimizer_state.restore_optimizer(model.optimizer, model, values, file)
