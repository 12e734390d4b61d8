"""Malformed model configs are refused with one ValueError naming the layer (or model) and the
key, what was found and what was expected: never a Python internal (KeyError, "missing 1 required
positional argument", "unhashable type", RecursionError), and never loaded silently."""
from __future__ import annotations

import copy
import json

import h5py
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.models import load_model, model_from_json
from nncompile.keras.saving import SavingError

INTERNALS = ("KeyError", "required positional argument", "unhashable", "Recursion", "not subscriptable",
             "object is not", "after ** must be")


def _sequential():
    return keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, name="d1"),
                             layers.BatchNormalization(name="bn"), layers.Dropout(0.5, name="drop")],
                            name="m")


def _functional():
    x = keras.Input(shape=(4,), name="inp")
    return keras.Model(x, layers.Dense(2, name="fd")(x), name="f")


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _layer(i):
    return lambda c: c["config"]["layers"][i]


def _set(where, key, value):
    def edit(config):
        where(config)[key] = value
    return edit


def _drop(where, key):
    def edit(config):
        del where(config)[key]
    return edit


def _inner(i):
    return lambda c: c["config"]["layers"][i]["config"]


def _model(c):
    return c["config"]


def _first_arg(c):
    return c["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"]


# (id, model, edit of its config, words the message must hold)
CASES = [
    ("no-layers", _sequential, _drop(_model, "layers"), ["'m'", "`layers`", "None"]),
    ("layers-a-string", _sequential, _set(_model, "layers", "dense"), ["'m'", "`layers`", "'dense'"]),
    ("layer-a-string", _sequential, lambda c: c["config"]["layers"].__setitem__(1, "Dense"),
     ["class_name", "'Dense'"]),
    ("class-name-a-list", _sequential, _set(_layer(1), "class_name", ["Dense"]),
     ["'d1'", "class_name", "['Dense']"]),
    ("unknown-class", _sequential, _set(_layer(1), "class_name", "Densest"),
     ["'d1'", "'Densest'", "custom_objects"]),
    ("layer-config-a-list", _sequential, _set(_layer(1), "config", [1]), ["'config'", "[1]"]),
    ("missing-units", _sequential, _drop(_inner(1), "units"), ["'d1' (Dense)", "`units`"]),
    ("units-a-string", _sequential, _set(_inner(1), "units", "3"),
     ["'d1' (Dense)", "`units`", "'3'", "positive integer"]),
    ("units-a-list", _sequential, _set(_inner(1), "units", [3]), ["'d1' (Dense)", "`units`", "[3]"]),
    ("use-bias-yes", _sequential, _set(_inner(1), "use_bias", "yes"),
     ["'d1' (Dense)", "`use_bias`", "'yes'", "True or False"]),
    ("center-no", _sequential, _set(_inner(2), "center", "no"),
     ["'bn' (BatchNormalization)", "`center`", "'no'", "True or False"]),
    ("negative-epsilon", _sequential, _set(_inner(2), "epsilon", -0.001),
     ["'bn' (BatchNormalization)", "`epsilon`", "-0.001", ">= 0"]),
    ("momentum-a-list", _sequential, _set(_inner(2), "momentum", [0.9]),
     ["'bn' (BatchNormalization)", "`momentum`", "[0.9]"]),
    ("axis-a-string", _sequential, _set(_inner(2), "axis", "last"),
     ["'bn' (BatchNormalization)", "`axis`", "'last'"]),
    ("trainable-a-string", _sequential, _set(_inner(1), "trainable", "no"),
     ["'d1' (Dense)", "`trainable`", "'no'"]),
    ("name-a-list", _sequential, _set(_inner(1), "name", ["d"]), ["Dense", "`name`", "['d']"]),
    ("activation-a-list", _sequential, _set(_inner(1), "activation", ["relu"]),
     ["'d1' (Dense)", "`activation`", "['relu']"]),
    ("initializer-class-a-list", _sequential,
     _set(_inner(1), "kernel_initializer", {"class_name": ["Zeros"], "config": {}}),
     ["'d1' (Dense)", "`kernel_initializer`", "['Zeros']"]),
    ("initializer-config-a-list", _sequential,
     _set(_inner(1), "kernel_initializer", {"class_name": "RandomNormal", "config": [1]}),
     ["'d1' (Dense)", "`kernel_initializer`", "'config'"]),
    ("seed-a-string", _sequential, _set(_inner(3), "seed", "abc"), ["'drop' (Dropout)", "`seed`", "'abc'"]),
    ("batch-shape-a-string", _sequential, _set(_inner(0), "batch_shape", "4"),
     ["(InputLayer)", "`batch_shape`", "'4'"]),
    ("deeply-nested-json", _sequential, _set(_inner(1), "kernel_initializer", _nested(300)),
     ["nests", "200 levels"]),
    ("no-output-layers", _functional, _drop(_model, "output_layers"), ["'f'", "`output_layers`"]),
    ("history-too-short", _functional, _set(_first_arg, "keras_history", ["inp"]),
     ["'f'", "[layer name, node index, tensor index]", "['inp']"]),
    ("history-index-a-string", _functional, _set(_model, "output_layers", [["fd", "0", 0]]),
     ["'f'", "['fd', '0', 0]"]),
    ("inbound-nodes-a-string", _functional, _set(_layer(1), "inbound_nodes", "x"),
     ["'fd'", "`inbound_nodes`", "'x'"]),
    ("call-kwargs-a-list", _functional,
     lambda c: c["config"]["layers"][1]["inbound_nodes"][0].__setitem__("kwargs", [1]),
     ["'fd'", "`training`", "kwargs=[1]"]),
    ("layer-defined-twice", _functional,
     lambda c: c["config"]["layers"].append(copy.deepcopy(c["config"]["layers"][1])),
     ["'f'", "'fd' twice"]),
]


@pytest.mark.parametrize("make, edit, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_is_one_value_error_naming_layer_and_key(make, edit, words):
    config = json.loads(make().to_json())
    edit(config)
    with pytest.raises(ValueError) as info:
        model_from_json(json.dumps(config))
    message = str(info.value)
    assert all(w in message for w in words), message
    assert not any(w in message for w in INTERNALS), message


def test_json_nested_beyond_the_decoders_recursion_is_a_value_error():
    text = '{"class_name": "Sequential", "config": {"layers": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    with pytest.raises(ValueError, match="nests lists and dicts deeper than 200 levels"):
        model_from_json(text)


def test_deep_json_in_an_h5_attribute_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "deep.h5"
    _sequential().save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SavingError, match=r"deep\.h5.*attribute 'model_config' nests"):
        load_model(path)
