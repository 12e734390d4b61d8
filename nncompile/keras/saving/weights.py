"""Where each weight lives in a file, for both formats, and the `.weights.h5` file itself.

Keras 3 (`.keras`, `.weights.h5`) addresses a layer by its class, not its name: the layers of a
model are `layers/<snake_case class>[_<n>]`, each with `vars/0..n` (trainable variables first),
nested models recurse (`layers/sequential/layers/dense/vars`), the model's own `vars` group and the
optimizer's `optimizer/vars` sit beside. Legacy `.h5` addresses layers by name, in `layer_names`
order, each with its `weight_names` (trainable weights first).
"""
from __future__ import annotations

import warnings
from typing import Iterator

import h5py
import numpy as np

from nncompile.keras import backend
from nncompile.keras.saving.configs import keras_class_name
from nncompile.keras.saving.files import fail


def own_variables(layer) -> list:
    """A layer's variables in Keras's saving order: trainable ones, then the others. Models have
    none of their own (their layers hold them)."""
    from nncompile.keras.models import Model

    if isinstance(layer, Model):
        return []
    own = layer.own_weights
    return [v for v in own if v.trainable] + [v for v in own if not v.trainable]


def legacy_weights(layer) -> list:
    """Keras's `_legacy_weights`: trainable weights, then non-trainable ones (models included)."""
    trainable = {id(v) for v in layer.trainable_weights}
    return layer.trainable_weights + [v for v in layer.weights if id(v) not in trainable]


def saveables(model, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(group path, layer) for every layer of `model`, depth first, named as Keras 3 names them."""
    from nncompile.keras.models import Model

    used: dict[str, int] = {}
    for layer in model.layers:
        name = backend.to_snake_case(keras_class_name(layer))
        used[name] = used.get(name, -1) + 1
        path = f"{prefix}layers/{name}" + (f"_{used[name]}" if used[name] else "")
        yield path, layer
        if isinstance(layer, Model):
            yield from saveables(layer, f"{path}/")
        yield from _held(layer, path)


def _held(layer, path: str) -> Iterator[tuple[str, object]]:
    """The sublayers of `layer` under its group `path`, as Keras 3 walks them: a layer under
    its attribute (`lstm/cell`), a list's items by snake_case class (`cell/cells/lstm_cell_1`)."""
    for attr, item in layer.sublayers():
        if not isinstance(item, list):
            yield f"{path}/{attr}", item
            yield from _held(item, f"{path}/{attr}")
            continue
        used: dict[str, int] = {}
        for sub in item:
            name = backend.to_snake_case(keras_class_name(sub))
            used[name] = used.get(name, -1) + 1
            sub_path = f"{path}/{attr}/{name}" + (f"_{used[name]}" if used[name] else "")
            yield sub_path, sub
            yield from _held(sub, sub_path)


# --- writing ------------------------------------------------------------------------------------

def write_state(f: h5py.Group, model, optimizer_values: list[np.ndarray] | None,
                optimizer_name: str | None) -> None:
    """Keras 3's weights layout of `model` (and optimizer state) into an open h5 file."""
    for path, layer in saveables(model):
        f.create_group(path)
        group = f.create_group(f"{path}/vars")
        group.attrs["name"] = layer.name
        for i, var in enumerate(own_variables(layer)):
            group.create_dataset(str(i), data=var.numpy())
    if optimizer_values is not None:
        group = f.create_group("optimizer/vars")
        group.attrs["name"] = optimizer_name
        for i, value in enumerate(optimizer_values):
            group.create_dataset(str(i), data=value)
    f.create_group("vars").attrs["name"] = model.name


# --- reading ------------------------------------------------------------------------------------

def read_array(file: str, group: h5py.Group, key: str, where: str) -> np.ndarray:
    """The dataset `key` of `group` as an array; a missing or non-array entry is named."""
    item = group.get(key)
    if not isinstance(item, h5py.Dataset):
        raise fail(file, f"{where}: weight '{key}' is missing (no dataset '{group.name}/{key}')")
    try:
        return np.asarray(item[()])
    except Exception as e:
        raise fail(file, f"{where}: weight '{key}' cannot be read ({type(e).__name__}: {e})") from None


def assign_all(file: str, pairs: list[tuple[object, np.ndarray, str]], skip_mismatch: bool,
               whole_layer: bool = False) -> None:
    """Assign every (variable, value, where) after checking them all: a mismatch changes nothing
    (or, with `skip_mismatch`, skips that weight with a warning, as Keras does: Keras 3's files
    skip the whole layer (`whole_layer`), legacy .h5 files only the weight)."""
    skipped = set()
    for var, value, where in pairs:
        if value.shape != var.shape or value.dtype.kind not in "fiub":
            message = (f"{where}: weight '{var.path}' expects shape {var.shape}, the file has "
                       f"shape {value.shape} (dtype {value.dtype})")
            if not skip_mismatch:
                raise fail(file, message)
            warnings.warn(f"Skipping loading weights of {message}", stacklevel=3)
            skipped.add(where if whole_layer else id(var))
    for var, value, where in pairs:
        if (where if whole_layer else id(var)) not in skipped:
            var.assign(value.astype(var.dtype, copy=False))


def read_state(file: str, f: h5py.Group, model, skip_mismatch: bool = False) -> None:
    """Load Keras 3's weights layout (`layers/.../vars/<i>`, `<i>` numeric) into `model`.

    Weights in the file that no layer of the model takes are an error (a warning with
    `skip_mismatch`): the file and the model do not describe the same network."""
    pairs = []
    layers = list(saveables(model))
    unused = _unread_groups(f, {path for path, _ in layers})
    if unused:
        message = (f"the file holds weights that no layer of the model takes: "
                   f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''} (the model's "
                   f"layers: {', '.join(layer.name for _, layer in layers) or 'none'})")
        if not skip_mismatch:
            raise fail(file, message)
        warnings.warn(f"Skipping weights in '{file}': {message}", stacklevel=2)
    for path, layer in layers:
        variables = own_variables(layer)
        where = f"layer '{layer.name}'"
        group = f.get(f"{path}/vars")
        if not isinstance(group, h5py.Group):
            if not variables:
                continue
            if skip_mismatch:
                warnings.warn(f"Skipping {where}: no group '{path}/vars' in '{file}'", stacklevel=2)
                continue
            raise fail(file, f"{where}: its weights are missing (no group '{path}/vars')")
        keys = sorted(group.keys(), key=_numeric(file, group))
        if len(keys) != len(variables):
            message = (f"{where} expects {len(variables)} weights "
                       f"({', '.join(v.path for v in variables) or 'none'}), the file has {len(keys)}")
            if skip_mismatch:
                warnings.warn(f"Skipping {message}", stacklevel=2)
                continue
            raise fail(file, message)
        pairs += [(var, read_array(file, group, key, where), where) for var, key in zip(variables, keys)]
    assign_all(file, pairs, skip_mismatch, whole_layer=True)


def _unread_groups(f: h5py.Group, read: set[str]) -> list[str]:
    """The `layers/...` groups of `f` whose `vars` hold arrays and whose path is not in `read`."""
    unread, stack = [], ["layers"]
    while stack:   # a loop, not recursion: the file decides how deep the groups nest
        parent = f.get(stack.pop())
        if not isinstance(parent, h5py.Group):
            continue
        for name, group in parent.items():
            path = f"{parent.name.lstrip('/')}/{name}"
            variables = group.get("vars") if isinstance(group, h5py.Group) else None
            if path not in read and isinstance(variables, h5py.Group) and len(variables):
                unread.append(path)
            stack.append(f"{path}/layers")
    return sorted(unread)


def _numeric(file: str, group: h5py.Group):
    def key(name: str) -> int:
        if not name.isdigit():
            raise fail(file, f"unexpected entry '{group.name}/{name}': variables are numbered 0..n")
        return int(name)
    return key


def read_optimizer_values(file: str, f: h5py.Group) -> list[np.ndarray] | None:
    """The optimizer variables of a Keras 3 weights file in order, or None when it has none."""
    group = f.get("optimizer/vars")
    if not isinstance(group, h5py.Group):
        return None
    keys = sorted(group.keys(), key=_numeric(file, group))
    return [read_array(file, group, k, "optimizer") for k in keys]
