"""`layer.input` / `layer.output`: the tensors of a layer's first call on symbolic tensors, as in
Keras 3 (`Operation.input` / `output`, `_get_node_attribute_at_index(0, ...)`), so that the
feature extractor of the keras.io Functional API guide works:
`keras.Model(model.inputs, [layer.output for layer in model.layers])`.

The extractors' predictions are checked against numpy written here from the layers' weights.
Keras 3 (3.15) facts matched, checked against it:
- one tensor is returned bare, several (a merge layer's inputs, an RNN's states) as a flat list,
  an InputLayer's (absent) inputs as [];
- a layer called several times answers for its first call (Keras 3 has no "multiple inbound
  nodes" error and no `get_output_at`);
- a layer never called on symbolic tensors (not at all, on arrays, or inside a subclassed
  model's `call`) raises AttributeError "The layer NAME has never been called and thus has no
  defined output." (or "input");
- layers have no `input_shape` / `output_shape` (models do).
"""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers


def _relu(x):
    return np.maximum(x, 0.0)


def _dense(layer, x):
    kernel, bias = layer.get_weights()
    return x.astype(np.float64) @ kernel + bias


def _data(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _guide_model():
    inp = keras.Input((3,))
    h = layers.Dense(4, activation="relu", name="d")(inp)
    g = layers.Dense(5, activation="tanh", name="g")(h)
    return inp, keras.Model(inp, layers.Dense(1, name="head")(g))


def test_output_of_one_layer_is_its_call_tensor():
    inp = keras.Input((3,))
    dense = layers.Dense(4, name="d")
    h = dense(inp)
    keras.Model(inp, layers.Dense(1)(h))
    assert dense.output is h
    assert dense.input is inp
    assert dense.output.shape == (None, 4)


def test_feature_extractor_of_one_layer_predicts_its_activations():
    inp, model = _guide_model()
    extractor = keras.Model(model.inputs, model.get_layer("d").output)
    assert extractor.output_shape == (None, 4)
    x = _data((7, 3))
    expected = _relu(_dense(model.get_layer("d"), x))
    np.testing.assert_allclose(extractor.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_feature_extractor_of_every_layer():
    inp, model = _guide_model()
    extractor = keras.Model(model.inputs, [layer.output for layer in model.layers])
    assert [t.shape for t in extractor.outputs] == [(None, 3), (None, 4), (None, 5), (None, 1)]
    x = _data((6, 3), seed=1)
    d, g, head = (model.get_layer(n) for n in ("d", "g", "head"))
    h = _relu(_dense(d, x))
    t = np.tanh(_dense(g, h))
    expected = [x, h, t, _dense(head, t)]
    got = extractor.predict(x, verbose=0)
    assert len(got) == 4
    for out, ref in zip(got, expected):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # The full model still predicts its own output.
    np.testing.assert_allclose(model.predict(x, verbose=0), expected[-1], rtol=1e-5, atol=1e-6)


def test_input_layer_has_its_tensor_as_output_and_no_inputs():
    inp, model = _guide_model()
    input_layer = model.layers[0]
    assert input_layer.output is inp
    assert input_layer.input == []


def test_model_input_and_output():
    inp, model = _guide_model()
    assert model.input is inp
    assert model.output is model.get_layer("head").output
    assert model.input_shape == (None, 3) and model.output_shape == (None, 1)


def _sequential_reference(model, x):
    first, second, third = model.layers
    h = _relu(_dense(first, x))
    t = np.tanh(_dense(second, h))
    return [h, t, _dense(third, t)]


def _sequential_layers():
    return [layers.Dense(4, activation="relu", name="s1"),
            layers.Dense(3, activation="tanh", name="s2"),
            layers.Dense(2, name="s3")]


@pytest.mark.parametrize("how", ["input", "input_shape", "build"])
def test_sequential_feature_extractor(how):
    if how == "input":
        model = keras.Sequential([keras.Input((5,)), *_sequential_layers()])
    elif how == "input_shape":
        first, *rest = _sequential_layers()
        first = layers.Dense(4, activation="relu", name="s1", input_shape=(5,))
        model = keras.Sequential([first, *rest])
    else:
        model = keras.Sequential(_sequential_layers())
        model.build((None, 5))
    assert [layer.output.shape for layer in model.layers] == [(None, 4), (None, 3), (None, 2)]
    assert model.layers[0].input is model.inputs[0]
    assert model.layers[1].input is model.layers[0].output
    extractor = keras.Model(model.inputs, [layer.output for layer in model.layers])
    x = _data((4, 5), seed=2)
    for out, ref in zip(extractor.predict(x, verbose=0), _sequential_reference(model, x)):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    middle = keras.Model(inputs=model.inputs, outputs=model.get_layer("s2").output)
    np.testing.assert_allclose(middle.predict(x, verbose=0),
                               _sequential_reference(model, x)[1], rtol=1e-5, atol=1e-6)


def test_layers_of_unbuilt_sequential_were_never_called():
    model = keras.Sequential(_sequential_layers())
    with pytest.raises(AttributeError, match=r"^The layer s1 has never been called and thus has "
                                             r"no defined output\.$"):
        model.layers[0].output


def test_several_inputs_and_outputs_are_flat_lists():
    a, b = keras.Input((3,)), keras.Input((3,))
    add = layers.Add(name="add")
    add([a, b])
    assert isinstance(add.input, list) and add.input[0] is a and add.input[1] is b
    single = layers.Concatenate(name="cat")
    single([a])
    assert single.input is a   # a list of one tensor is returned bare, as in Keras

    x, h, c = keras.Input((5, 3)), keras.Input((2,)), keras.Input((2,))
    lstm = layers.LSTM(2, return_state=True, name="lstm")
    outs = lstm(x, initial_state=[h, c])
    assert len(lstm.input) == 3 and all(t is u for t, u in zip(lstm.input, [x, h, c]))
    assert len(lstm.output) == 3 and all(t is u for t, u in zip(lstm.output, outs))


def test_shared_layer_answers_for_its_first_call():
    # Keras 3 returns the first call's tensors (tf.keras 2 raised "multiple inbound nodes").
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    shared = layers.Dense(2, name="shared")
    first, second = shared(a), shared(b)
    assert shared.output is first and shared.output is not second
    assert shared.input is a
    model = keras.Model([a, b], layers.Add()([first, second]))
    extractor = keras.Model(model.inputs, shared.output)
    xa, xb = _data((3, 3), seed=3), _data((3, 3), seed=4)
    np.testing.assert_allclose(extractor.predict([xa, xb], verbose=0), _dense(shared, xa),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attr", ["output", "input"])
def test_layer_never_called(attr):
    layer = layers.Dense(2, name="never")
    with pytest.raises(AttributeError, match=rf"^The layer never has never been called and thus "
                                             rf"has no defined {attr}\.$"):
        getattr(layer, attr)
    assert not hasattr(layer, attr)


@pytest.mark.parametrize("attr", ["output", "input"])
def test_layer_called_on_arrays_has_no_symbolic_call(attr):
    # Keras makes no node for an eager call.
    layer = layers.Dense(2, name="eager")
    layer(np.ones((1, 3), "float32"))
    with pytest.raises(AttributeError, match=rf"^The layer eager has never been called and thus "
                                             rf"has no defined {attr}\.$"):
        getattr(layer, attr)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = layers.Dense(4, name="hidden")
        self.head = layers.Dense(1, name="sub_head")

    def call(self, x):
        return self.head(self.hidden(x))


@pytest.mark.parametrize("attr", ["output", "input"])
def test_layers_of_subclassed_model_have_no_symbolic_call(attr):
    model = _Subclassed()
    model(np.ones((2, 3), "float32"))
    with pytest.raises(AttributeError, match=rf"^The layer hidden has never been called and thus "
                                             rf"has no defined {attr}\.$"):
        getattr(model.hidden, attr)
    # Called on a symbolic tensor, the model itself gets a call; its layers still do not.
    model(keras.Input((3,)))
    with pytest.raises(AttributeError, match="The layer sub_head has never been called"):
        getattr(model.head, attr)


def test_layers_have_no_input_or_output_shape():
    # As in Keras 3: those are the models' (and MultiHeadAttention's `output_shape` argument).
    dense = layers.Dense(2)
    dense(keras.Input((3,)))
    assert not hasattr(dense, "input_shape") and not hasattr(dense, "output_shape")
