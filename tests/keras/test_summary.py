"""model.summary() against the tables Keras 3 prints.

Expected tables are written out as Keras 3 prints them (rich's heavy-head box, column widths
from positions [0.45, 0.80, 1.0] or [0.3, 0.56, 0.74, 1.0] of the line, shrunk evenly by the
padding and borders; long cells wrapped at spaces or cut with "…"), with the parameter counts
worked out by hand. The 80-column terminal gives Keras's 76-character line.
"""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.keras import backend
from nncompile.keras.layers import Concatenate, Dense
from nncompile.keras.models import Input, Model, Sequential
from nncompile.keras.summary import readable_size


@pytest.fixture(autouse=True)
def terminal(monkeypatch):
    backend.clear_session()
    monkeypatch.setenv("COLUMNS", "80")


def printed(model, capsys, **kwargs) -> list[str]:
    model.summary(**kwargs)
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return out[:-1].split("\n")


def mlp():
    # 100*64 + 64 = 6,464; 64*10 + 10 = 650; 7,114 float32 = 28,456 B = 27.79 KB
    return Sequential([Input(shape=(100,)), Dense(64, activation="relu"),
                       Dense(10, activation="softmax")])


MLP_TABLE = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 64)             │         6,464 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │           650 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 7,114 (27.79 KB)
 Trainable params: 7,114 (27.79 KB)
 Non-trainable params: 0 (0.00 B)"""


def test_sequential_mlp(capsys):
    assert printed(mlp(), capsys) == MLP_TABLE.split("\n")


def test_print_fn_receives_the_whole_text_once():
    calls = []
    mlp().summary(print_fn=calls.append)
    assert calls == [MLP_TABLE + "\n"]


UNBUILT_TABLE = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ ?                      │   0 (unbuilt) │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ ?                      │   0 (unbuilt) │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_2 (Dense)                 │ ?                      │   0 (unbuilt) │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 0 (0.00 B)
 Trainable params: 0 (0.00 B)
 Non-trainable params: 0 (0.00 B)"""


def test_unbuilt_sequential(capsys):
    model = Sequential([Dense(64, activation="relu"), Dense(64, activation="relu"), Dense(1)])
    assert printed(model, capsys) == UNBUILT_TABLE.split("\n")


def two_input_model():
    # left 16*4+4 = 68; right 8*4+4 = 36; score 8*1+1 = 9; 113 float32 = 452 B
    left, right = Input(shape=(16,), name="left"), Input(shape=(8,), name="right")
    merged = Concatenate(name="concatenate")([Dense(4, name="dense_left")(left),
                                              Dense(4, name="right_projection_layer")(right)])
    return Model([left, right], Dense(1, name="score")(merged), name="two_inputs")


FOOTER_113 = """\
 Total params: 113 (452.00 B)
 Trainable params: 113 (452.00 B)
 Non-trainable params: 0 (0.00 B)"""

FUNCTIONAL_TABLE_76 = """\
Model: "two_inputs"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ left (InputLayer)   │ (None, 16)        │          0 │ -                 │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ right (InputLayer)  │ (None, 8)         │          0 │ -                 │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ dense_left (Dense)  │ (None, 4)         │         68 │ left[0][0]        │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ right_projection_l… │ (None, 4)         │         36 │ right[0][0]       │
│ (Dense)             │                   │            │                   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ concatenate         │ (None, 8)         │          0 │ dense_left[0][0], │
│ (Concatenate)       │                   │            │ right_projection… │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ score (Dense)       │ (None, 1)         │          9 │ concatenate[0][0] │
└─────────────────────┴───────────────────┴────────────┴───────────────────┘
""" + FOOTER_113

FUNCTIONAL_TABLE_108 = """\
Model: "two_inputs"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)                  ┃ Output Shape              ┃         Param # ┃ Connected to               ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ left (InputLayer)             │ (None, 16)                │               0 │ -                          │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ right (InputLayer)            │ (None, 8)                 │               0 │ -                          │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ dense_left (Dense)            │ (None, 4)                 │              68 │ left[0][0]                 │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ right_projection_layer        │ (None, 4)                 │              36 │ right[0][0]                │
│ (Dense)                       │                           │                 │                            │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ concatenate (Concatenate)     │ (None, 8)                 │               0 │ dense_left[0][0],          │
│                               │                           │                 │ right_projection_layer[0]… │
├───────────────────────────────┼───────────────────────────┼─────────────────┼────────────────────────────┤
│ score (Dense)                 │ (None, 1)                 │               9 │ concatenate[0][0]          │
└───────────────────────────────┴───────────────────────────┴─────────────────┴────────────────────────────┘
""" + FOOTER_113


def test_functional_two_inputs_in_an_80_column_terminal(capsys):
    assert printed(two_input_model(), capsys) == FUNCTIONAL_TABLE_76.split("\n")


def test_functional_two_inputs_at_keras_default_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert printed(two_input_model(), capsys) == FUNCTIONAL_TABLE_108.split("\n")
    monkeypatch.setenv("COLUMNS", "80")
    assert printed(two_input_model(), capsys, line_length=108) == FUNCTIONAL_TABLE_108.split("\n")


CHAIN_TABLE = """\
Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ input_layer (InputLayer)        │ (None, 100)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 64)             │         6,464 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │           650 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 7,114 (27.79 KB)
 Trainable params: 7,114 (27.79 KB)
 Non-trainable params: 0 (0.00 B)"""


def test_functional_chain_prints_like_a_stack_with_its_input_row(capsys):
    x = Input(shape=(100,))
    hidden = Dense(64, activation="relu")(x)
    model = Model(x, Dense(10)(hidden))
    assert printed(model, capsys) == CHAIN_TABLE.split("\n")


NESTED_TABLE = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓
┃ Layer (type)                ┃ Output Shape          ┃    Param # ┃ Trai… ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩
│ block (Sequential)          │ (None, 3)             │         15 │   Y   │
├─────────────────────────────┼───────────────────────┼────────────┼───────┤
│    └ hidden (Dense)         │ (None, 3)             │         15 │   Y   │
├─────────────────────────────┼───────────────────────┼────────────┼───────┤
│ head (Dense)                │ (None, 1)             │          4 │   N   │
└─────────────────────────────┴───────────────────────┴────────────┴───────┘
 Total params: 19 (76.00 B)
 Trainable params: 15 (60.00 B)
 Non-trainable params: 4 (16.00 B)"""


def test_nested_model_expanded_with_trainable_column(capsys):
    # block: 4*3+3 = 15 trainable; head: 3*1+1 = 4 frozen
    head = Dense(1, name="head")
    block = Sequential([Dense(3, name="hidden")], name="block")
    model = Sequential([Input(shape=(4,)), block, head])
    head.trainable = False
    expanded = printed(model, capsys, expand_nested=True, show_trainable=True)
    assert expanded == NESTED_TABLE.split("\n")
    collapsed = printed(model, capsys)
    assert not any("hidden" in line for line in collapsed)
    assert "│ block (Sequential)              │ (None, 3)              │            15 │" in collapsed


def test_too_narrow_a_line_is_refused(capsys):
    with pytest.raises(ValueError, match="Insufficient console width"):
        mlp().summary(line_length=10)


@pytest.mark.parametrize("size, text", [
    (0, "0.00 B"), (140, "140.00 B"), (1023, "1023.00 B"), (1024, "1.00 KB"),
    (28_456, "27.79 KB"), (3.5 * 1024 ** 2, "3.50 MB"), (5 * 1024 ** 4, "5.00 TB"),
])
def test_readable_sizes(size, text):
    assert readable_size(size) == text


def test_after_fit_the_optimizers_variables_are_counted_as_keras_3_does():
    """Keras 3 adds "Optimizer params" once the optimizer is built, and counts them in the total
    (real Keras 3.15.1 printed Total 1,189 and Optimizer params 772 for this model after fit:
    Adam's two slots per trainable weight, its iteration and its learning rate)."""
    from nncompile import keras
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    lines = []
    model.summary(print_fn=lines.append)
    assert not any("Optimizer params" in line for line in "\n".join(lines).splitlines())
    model.fit(np.ones((8, 20), np.float32), np.zeros((8, 1), np.float32), verbose=0)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert " Total params: 1,189 (4.65 KB)" in text and " Optimizer params: 772 (3.02 KB)" in text
    assert " Trainable params: 385 (1.50 KB)" in text and " Non-trainable params: 32 (128.00 B)" in text
