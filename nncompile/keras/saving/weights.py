"""Where each weight lives in a file, for both formats, and the `.weights.h5` file itself.

Keras 3 (`.keras`, `.weights.h5`) addresses a layer by its class, not its name: the layers of a
model are `layers/<snake_case class>[_<n>]`, each with `vars/0..n` (trainable variables first),
nested models recurse (`layers/sequential/layers/dense/vars`), the model's own `vars` group and the
optimizer's `optimizer/vars` sit beside. A layer held by another layer's attribute sits under the
attribute (`layers/lstm/cell/vars`), a model held so recurses there too
(`layers/transformer_block/ffn/layers/dense/vars`), and a subclassed model's attributes start at
the file's root (`ffn/layers/dense/vars`): see `saveables`. Legacy `.h5` addresses layers by name, in `layer_names`
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


def saveables(model) -> Iterator[tuple[str, object]]:
    """(group path, layer) for every layer of `model` and every layer those hold, depth first,
    each once, named as Keras 3's saving walk (`saving_lib._save_state`) names them.

    Keras walks an object's children in order: a Sequential's or Functional model's `layers`
    list first, then its attributes sorted by name, a subclassed model's `layers` list among
    them (as the attribute `layers`). A layer held by an attribute sits under the attribute's
    name (`lstm/cell`, `block/ffn`), a list's items under their snake_case class
    (`cell/cells/lstm_cell_1`, `layers/dense_1`), and a model held anywhere recurses the same
    way (`layers/block/ffn/layers/dense`). A layer met a second time is skipped: its weights
    sit where it was met first."""
    yield from _children(model, "", {id(model)})


def _children(layer, path: str, visited: set[int]) -> Iterator[tuple[str, object]]:
    """The saveables under `layer`'s group `path` ('' for the file's root)."""
    from nncompile.keras.models import Model

    prefix = f"{path}/" if path else ""
    attributes = sorted(layer.sublayers(), key=lambda pair: pair[0])
    if isinstance(layer, Model):
        if layer.has_call():   # a subclassed model's `layers` property is walked in name order
            attributes = sorted(attributes + [("layers", layer.layers)], key=lambda pair: pair[0])
        else:                  # Keras walks a Sequential's or Functional's layers first
            attributes = [("layers", layer.layers)] + attributes
    for attr, item in attributes:
        if not isinstance(item, list):
            yield from _saveable(item, f"{prefix}{attr}", visited)
            continue
        used: dict[str, int] = {}
        for sub in item:   # numbered in the list, layers met before included (as Keras does)
            name = backend.to_snake_case(keras_class_name(sub))
            used[name] = used.get(name, -1) + 1
            yield from _saveable(sub, f"{prefix}{attr}/{name}" + (f"_{used[name]}" if used[name] else ""),
                                 visited)


def _saveable(layer, path: str, visited: set[int]) -> Iterator[tuple[str, object]]:
    if id(layer) in visited:
        return
    visited.add(id(layer))
    yield path, layer
    yield from _children(layer, path, visited)


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
        # A layer of the model's own list is named as before; a held one with its group too.
        where = f"layer '{layer.name}'" + ("" if path.count("/") <= 1 else f" (group '{path}')")
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
    """The groups of `f` whose `vars` hold arrays and whose path is not in `read`, at any depth
    (`layers/block/ffn/layers/dense`, a subclassed model's `dense`), the optimizer's aside.
    Only hard links are followed, each group once (a file may link a group into itself)."""
    unread, stack, seen = [], [("", f)], {f.id}
    while stack:   # a loop, not recursion: the file decides how deep the groups nest
        parent_path, parent = stack.pop()
        for name in parent:
            path = f"{parent_path}{name}"
            if (name == "vars" or path == "optimizer"
                    or not isinstance(parent.get(name, getlink=True), h5py.HardLink)):
                continue
            group = parent.get(name)
            if not isinstance(group, h5py.Group) or group.id in seen:
                continue
            seen.add(group.id)
            variables = group.get("vars")
            if path not in read and isinstance(variables, h5py.Group) and len(variables):
                unread.append(path)
            stack.append((f"{path}/", group))
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
