"""keras.models.clone_model: Keras 3's semantics (keras/src/models/cloning.py) for Sequential,
functional and subclassed models. The clone has new layers and new, freshly initialized weights;
with the original's weights it predicts the same, and training it leaves the original alone.

Where a test states what Keras does (the order clone_function sees the layers, the layers
call_function gives, the errors), it was run on real Keras 3.15.1 (JAX backend) with the same
model."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops


def _normal(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _as_list(y) -> list:
    if isinstance(y, dict):
        return [y[k] for k in sorted(y)]
    return list(y) if isinstance(y, list) else [y]


def _predicts_the_same(model, clone, x) -> None:
    for got, want in zip(_as_list(clone.predict(x, verbose=0)),
                         _as_list(model.predict(x, verbose=0)), strict=True):
        np.testing.assert_array_equal(got, want)


def _check_clone(model, x, **kwargs):
    """clone_model: the same layers by class and name, new weight variables of the same shapes,
    fresh values (not copies); with set_weights, the same predictions."""
    clone = keras.models.clone_model(model, **kwargs)
    assert type(clone) is type(model) and clone.name == model.name
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert not {id(l) for l in clone.layers} & {id(l) for l in model.layers}
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    assert not {id(w.value) for w in clone.weights} & {id(w.value) for w in model.weights}
    clone.set_weights(model.get_weights())
    _predicts_the_same(model, clone, x)
    return clone


# --- Sequential ---------------------------------------------------------------------------------

def _sequential(**kwargs):
    return keras.Sequential([keras.Input((4,), name="features"),
                             layers.Dense(8, activation="relu", name="hidden"),
                             layers.Dropout(0.2, name="drop"), layers.Dense(3, name="out")],
                            name="seq", **kwargs)


def test_sequential_clone_has_fresh_weights_and_predicts_the_same_with_the_originals():
    model = _sequential()
    clone = keras.models.clone_model(model)
    assert isinstance(clone, keras.Sequential) and clone.built
    assert clone._layers[0].name == "features" and clone.input_shape == (None, 4)
    # new weights, initialized afresh (glorot_uniform draws other kernels)
    assert not np.allclose(clone.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())
    clone.set_weights(model.get_weights())
    _predicts_the_same(model, clone, _normal((5, 4)))


def test_training_the_clone_leaves_the_original_alone():
    model = _sequential()
    model.compile(optimizer="sgd", loss="mse")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    before = model.get_weights()
    x, y = _normal((16, 4), 1), _normal((16, 3), 2)
    clone.compile(optimizer=keras.optimizers.Adam(0.05), loss="mae")
    clone.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(clone.get_weights()[0], before[0])
    # and the other way round
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    trained = clone.get_weights()
    clone.predict(x, verbose=0)
    assert not np.allclose(model.get_weights()[0], trained[0])


def test_sequential_variants_of_the_input():
    unbuilt = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    clone = keras.models.clone_model(unbuilt)
    assert not clone.built and [l.name for l in clone.layers] == [l.name for l in unbuilt.layers]
    assert clone.predict(_normal((2, 5)), verbose=0).shape == (2, 2)   # built by its data
    unbuilt.build((None, 5))
    clone = keras.models.clone_model(unbuilt)
    assert clone.built and clone.input_shape == (None, 5)
    assert clone._layers[0].name == unbuilt._layers[0].name
    shaped = keras.Sequential([layers.Dense(3, input_shape=(7,)), layers.Dense(1)])
    _check_clone(shaped, _normal((2, 7)))
    ints = keras.Sequential([keras.Input((3,), dtype="int32"), layers.Embedding(5, 2)])
    assert keras.models.clone_model(ints).inputs[0].dtype == "int32"


def test_sequential_input_tensors():
    model = _sequential()
    given = keras.Input((4,), batch_size=8, name="given")
    for tensors in (given, [given]):
        clone = keras.models.clone_model(model, input_tensors=tensors)
        assert clone.inputs[0] is given and clone.input_shape == (8, 4)
    # another feature size: the layers are built for it (Keras too)
    wider = keras.models.clone_model(model, input_tensors=keras.Input((6,)))
    assert [w.shape for w in wider.weights][0] == (6, 8)
    # a tensor a layer made: a new input of its shape (Keras's clone does not continue its graph)
    made = layers.Dense(4)(keras.Input((2,)))
    clone = keras.models.clone_model(model, input_tensors=made)
    assert clone.inputs[0] is not made and clone.input_shape == (None, 4)
    with pytest.raises(ValueError, match="must contain a single tensor"):
        keras.models.clone_model(model, input_tensors=[given, given])
    with pytest.raises(ValueError, match="must be a KerasTensor"):
        keras.models.clone_model(model, input_tensors=np.ones((1, 4)))
    with pytest.raises(ValueError, match="`call_function` argument is not supported with "
                                         "Sequential models"):
        keras.models.clone_model(model, call_function=lambda layer, *a, **k: layer(*a, **k))


def test_trainable_and_compile_carry_over():
    model = _sequential(trainable=False)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse", metrics=["mae"])
    model.fit(_normal((8, 4)), _normal((8, 3)), verbose=0)
    clone = keras.models.clone_model(model)
    assert clone.trainable is False and clone.trainable_weights == []
    # compiled as the original (Keras: compile_from_config(get_compile_config())), with a new
    # optimizer of the same configuration and no state
    assert clone.optimizer is not model.optimizer
    assert type(clone.optimizer) is keras.optimizers.Adam
    assert clone.optimizer.get_config() == model.optimizer.get_config()
    clone.trainable = True
    history = clone.fit(_normal((8, 4)), _normal((8, 3)), verbose=0).history
    assert sorted(history) == ["loss", "mae"]
    assert keras.models.clone_model(_sequential()).__dict__.get("_compiled") is None


# --- functional ---------------------------------------------------------------------------------

def _multi():
    """Two inputs, two outputs, a Dense shared by both branches, a nested Sequential and a
    nested functional model (the model of the Keras comparisons)."""
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    shared = layers.Dense(5, name="shared")
    inner = keras.Sequential([keras.Input((5,)), layers.Dense(5, name="in_d")], name="inner")
    ia = keras.Input((5,), name="ia")
    inner_f = keras.Model(ia, layers.Dense(2, name="if_d")(ia), name="inner_f")
    ha = shared(a)
    hb = shared(layers.Dense(4, name="pre")(b))
    h = layers.Concatenate(name="cat")([inner(ha), hb])
    return keras.Model([a, b], [layers.Dense(1, name="o1")(h), inner_f(ha)], name="multi")


def _multi_x():
    return [_normal((3, 4), 3), _normal((3, 3), 4)]


def test_functional_multi_input_output_shared_and_nested():
    model = _multi()
    clone = _check_clone(model, _multi_x())
    assert [l.name for l in clone.layers] == ["a", "b", "shared", "pre", "inner", "cat", "o1",
                                              "inner_f"]   # Keras's list for this model
    assert [t.name for t in clone.inputs] == ["a", "b"]
    # the shared layer stays one layer, called twice (5 * 5 + 5 weights once)
    assert len(clone.weights) == len(model.weights) == 10
    assert len(clone.get_layer("shared")._inbound_nodes) == 2
    inner = clone.get_layer("inner")
    assert isinstance(inner, keras.Sequential) and inner is not model.get_layer("inner")
    assert isinstance(clone.get_layer("inner_f"), keras.models.Functional)


def test_training_a_functional_clone_leaves_the_original_alone():
    model = _multi()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    before = model.get_weights()
    clone.compile(optimizer=keras.optimizers.SGD(0.1), loss=["mse", "mse"])
    clone.fit(_multi_x(), [_normal((3, 1), 5), _normal((3, 2), 6)], epochs=2, verbose=0)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert any(not np.allclose(c, w) for c, w in zip(clone.get_weights(), before))


def test_clone_function_sees_each_layer_once_in_keras_s_order():
    seen = []

    def clone_function(layer):
        seen.append(layer.name)
        return layer.__class__.from_config(layer.get_config())

    _check_clone(_multi(), _multi_x(), clone_function=clone_function)
    assert seen == ["shared", "pre", "inner", "cat", "inner_f", "o1"]   # as Keras 3.15
    seen.clear()
    keras.models.clone_model(_multi(), clone_function=clone_function, recursive=True)
    assert seen == ["shared", "pre", "in_d", "cat", "if_d", "o1"]       # as Keras 3.15


def test_recursive_keeps_a_layer_shared_between_a_model_and_its_nested_model():
    """Without `recursive`, the nested model is re-created from its config, so a layer it shares
    with the outer model becomes two (4 weights, not 2); with it, one: both as in Keras."""
    shared = layers.Dense(3, name="sh")
    ia, ib = keras.Input((3,), name="ia"), keras.Input((3,), name="ib")
    inner = keras.Model([ia, ib], layers.Add(name="ad")([shared(ia), ib]), name="inner")
    p, q = keras.Input((3,), name="p"), keras.Input((3,), name="q")
    model = keras.Model([p, q], layers.Concatenate(name="cat")([inner([p, q]),
                                                                  inner([q, shared(p)])]))
    x = [_normal((2, 3), 7), _normal((2, 3), 8)]
    flat = keras.models.clone_model(model)
    assert len(flat.weights) == 4 and len(model.weights) == 2
    deep = _check_clone(model, x, recursive=True)
    assert deep.get_layer("sh") is deep.get_layer("inner").get_layer("sh")


def test_clone_function_that_changes_or_shares_layers():
    model = _sequential()

    def wider(layer):
        config = layer.get_config()
        if layer.name == "hidden":
            config["units"] = 5
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=wider)
    assert [w.shape for w in clone.weights] == [(4, 5), (5,), (5, 3), (3,)]
    # returning the layer itself shares it, and its weights, with the original (as in Keras)
    same = keras.models.clone_model(model, clone_function=lambda layer: layer)
    assert same.layers[0] is model.layers[0]
    assert same.weights[0] is model.weights[0]
    # the common form of the default
    _check_clone(_multi(), _multi_x(),
                 clone_function=lambda layer: layer.__class__.from_config(layer.get_config()))


def test_call_function_inserts_layers():
    x = keras.Input((3,), name="x")
    model = keras.Model(x, layers.Dense(2, name="d")(layers.Dense(4, name="c")(x)), name="m2")

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if isinstance(layer, layers.Dense):
            out = layers.Dropout(0.5, name=f"drop_after_{layer.name}")(out)
        return out

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                     call_function=call_function)
    assert [l.name for l in clone.layers] == ["x", "c", "drop_after_c", "d", "drop_after_d"]
    data = _normal((4, 3))
    _predicts_the_same(model, clone, data)   # Dropout passes through at inference


def test_ops_dicts_and_fixed_training_calls():
    """keras.ops on tensors (their nodes cloned as Keras clones its operations), dict inputs and
    outputs, and a call fixed at training=False; call_function gets Keras's arguments."""
    keras.utils.clear_session()   # the op layers' names count from the session's start
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    h = layers.BatchNormalization(name="bn")(a, training=False)
    h = ops.mean(h + b * 2.0, axis=-1, keepdims=True)
    model = keras.Model({"a": a, "b": b}, {"y": layers.Dense(2, name="y")(h), "z": h})
    calls = []

    def call_function(layer, *args, **kwargs):
        calls.append((layer.name, [type(x).__name__ for x in args], kwargs))
        return layer(*args, **kwargs)

    x = {"a": _normal((3, 4), 9), "b": _normal((3, 4), 10)}
    clone = _check_clone(model, x, call_function=call_function)
    assert calls == [("bn", ["KerasTensor"], {"training": False}),   # as Keras 3.15
                     ("multiply", ["KerasTensor", "float"], {}),
                     ("add", ["KerasTensor", "KerasTensor"], {}),
                     ("mean", ["KerasTensor"], {}), ("y", ["KerasTensor"], {})]
    assert sorted(clone.input) == ["a", "b"] and sorted(clone.output) == ["y", "z"]
    assert [node.training for node in clone.get_layer("bn")._inbound_nodes] == [False]
    # ops given back by clone_function itself still work
    _check_clone(model, x, clone_function=lambda layer: (
        layer if not isinstance(layer, layers.Layer) or not layer.weights
        else layer.__class__.from_config(layer.get_config())))


def test_sliced_ops_recurrent_states_attention_and_masks():
    x = keras.Input((4, 3), name="x")
    y = ops.concatenate([x[:, 0], x[:, -1] * np.array([1.0, 2.0, 3.0], "float32")], axis=-1)
    dense = layers.Dense(2, name="d")
    sliced = keras.Model(x, [dense(y + y), ops.sum(y, axis=-1, keepdims=True)])
    _check_clone(sliced, _normal((3, 4, 3), 11))

    enc, dec = keras.Input((5, 3), name="enc"), keras.Input((4, 2), name="dec")
    _, h, c = layers.LSTM(4, return_state=True, name="el")(enc)
    out = layers.LSTM(4, return_sequences=True, name="dl")(dec, initial_state=[h, c])
    seq2seq = keras.Model([enc, dec], layers.TimeDistributed(layers.Dense(2), name="td")(out))
    _check_clone(seq2seq, [_normal((2, 5, 3), 12), _normal((2, 4, 2), 13)])

    tokens = keras.Input((6,), dtype="int32", name="tokens")
    e = layers.Embedding(10, 8, mask_zero=True, name="emb")(tokens)
    attended = layers.MultiHeadAttention(2, 4, name="mha")(e, e)
    attention = keras.Model(tokens, layers.Bidirectional(layers.GRU(3), name="bi")(attended))
    _check_clone(attention, np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]]))


def test_functional_input_tensors():
    model = _multi()
    na, nb = keras.Input((4,), name="na"), keras.Input((3,), name="nb")
    clone = keras.models.clone_model(model, input_tensors=[na, nb])
    assert clone.inputs[0] is na and clone.inputs[1] is nb
    assert [l.name for l in clone.layers][:3] == ["na", "nb", "shared"]
    for wrong in ([na], na, (na, nb)):   # Keras compares the structures, list vs tuple included
        with pytest.raises(ValueError, match="must have the same structure as model.input"):
            keras.models.clone_model(model, input_tensors=wrong)
    with pytest.raises(ValueError, match="All entries in `input_tensors` must be KerasTensors"):
        keras.models.clone_model(model, input_tensors=[np.ones(3), nb])
    # tensors some layer made: new inputs of their shapes (a standalone model, as Keras's)
    source = keras.Input((2,))
    made = keras.models.clone_model(model, input_tensors=[layers.Dense(4)(source),
                                                          layers.Dense(3)(source)])
    assert made.input_shape == [(None, 4), (None, 3)]
    made.set_weights(model.get_weights())
    _predicts_the_same(model, made, _multi_x())
    with pytest.raises(ValueError, match="Graph disconnected"):
        keras.Model(source, made.outputs)


def test_functional_trainable_and_compile_carry_over():
    model = _multi()
    model.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss=["mse", "mae"],
                  metrics=[[keras.metrics.MeanAbsoluteError(name="err")], ["mse"]])
    model.fit(_multi_x(), [_normal((3, 1)), _normal((3, 2))], verbose=0)
    clone = keras.models.clone_model(model)
    # Keras's setter froze every layer, so its clone trains nothing either
    assert clone.trainable_weights == []
    assert clone.optimizer is not model.optimizer and clone.optimizer.iterations == 0
    clone.trainable = True
    history = clone.fit(_multi_x(), [_normal((3, 1)), _normal((3, 2))], verbose=0).history
    # the Metric object is a new one, named as given (compile names it after its output)
    assert sorted(history) == ["inner_f_loss", "inner_f_mse", "loss", "o1_err", "o1_loss"]
    original = model._compile_args["metrics"][0][0]
    assert clone._compile_args["metrics"][0][0] is not original


def test_lambda_layers_need_a_clone_function():
    x = keras.Input((3,), name="x")
    model = keras.Model(x, layers.Dense(2)(layers.Lambda(lambda t: t * 2.0, name="lam")(x)))
    # Keras fails here too (its Lambda config holds the function as code)
    with pytest.raises(ValueError, match="cannot re-create layer 'lam' \\(Lambda\\)"):
        keras.models.clone_model(model)

    def clone_function(layer):
        if isinstance(layer, layers.Lambda):
            return layer
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=clone_function)
    clone.set_weights(model.get_weights())
    _predicts_the_same(model, clone, _normal((2, 3)))


def test_clone_save_and_load(tmp_path):
    model = _multi()
    clone = keras.models.clone_model(model)
    clone.save(tmp_path / "clone.keras")
    again = keras.models.load_model(tmp_path / "clone.keras")
    _predicts_the_same(clone, again, _multi_x())


# --- subclassed models and errors ---------------------------------------------------------------

class _Configured(keras.Model):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = layers.Dense(units)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {"units": self.units, "name": self.name}


class _Unconfigured(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(2)

    def call(self, x):
        return self.dense(x)


class _Holding(keras.Model):
    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, x):
        return self.layer(x)


def test_subclassed_model_without_get_config_is_re_created_from_its_arguments():
    # Keras 3 records the constructor's plain arguments as the config of a class without
    # get_config (here: none at all); the clone is a new model of the class, built alike.
    model = _Unconfigured()
    x = _normal((2, 3))
    model(x)
    clone = keras.models.clone_model(model)
    assert type(clone) is _Unconfigured and clone.built and clone.dense is not model.dense
    clone.set_weights(model.get_weights())
    _predicts_the_same(model, clone, x)


def test_subclassed_model_is_re_created_from_its_config():
    model = _Configured(4, name="mine")
    clone = keras.models.clone_model(model)
    assert type(clone) is _Configured and clone.units == 4 and clone.name == "mine"
    assert not clone.built
    x = _normal((2, 3))
    model(x)
    model.compile(optimizer="adam", loss="mse")
    clone = keras.models.clone_model(model)
    # built and compiled as the original (Keras's build_config and compile_config)
    assert clone.built and clone.input_shape == (None, 3) and clone.optimizer is not None
    assert clone.dense is not model.dense
    clone.set_weights(model.get_weights())
    _predicts_the_same(model, clone, x)
    clone.fit(x, _normal((2, 4)), verbose=0)


def test_subclassed_model_errors_are_keras_s():
    model = _Configured(4)
    with pytest.raises(ValueError, match="Arguments `clone_function` and `input_tensors` are "
                                         "only supported for Sequential models or Functional"):
        keras.models.clone_model(model, clone_function=lambda layer: layer)
    with pytest.raises(ValueError, match="Arguments `clone_function` and `input_tensors`"):
        keras.models.clone_model(model, input_tensors=[keras.Input((3,))])
    with pytest.raises(ValueError, match="Argument `call_function` is only supported for "
                                         "Functional models"):
        keras.models.clone_model(model, call_function=lambda layer, *a, **k: layer(*a, **k))
    with pytest.raises(NotImplementedError, match="_Holding was created by passing non-serializable "
                                                  "argument values in `__init__\\(\\)`"):
        keras.models.clone_model(_Holding(layers.Dense(2)))

    class Incomplete(_Configured):
        def get_config(self):
            return {"name": self.name}

    with pytest.raises(TypeError, match="Unable to revive model from config"):
        keras.models.clone_model(Incomplete(3))


def test_argument_errors():
    model = _sequential()
    with pytest.raises(ValueError, match=r"Unexpected keyword argument\(s\): \('foo',\)"):
        keras.models.clone_model(model, foo=1)
    with pytest.raises(ValueError, match="Expected `clone_function` argument to be a callable"):
        keras.models.clone_model(model, clone_function=3)
    with pytest.raises(ValueError, match="Expected `model` argument to be a `Model` instance"):
        keras.models.clone_model("model")
    # a lone layer: re-created from its config (Keras's serialization round trip)
    dense = layers.Dense(3, name="lone")
    dense(keras.Input((4,)))
    again = keras.models.clone_model(dense)
    assert again is not dense and again.name == "lone" and again.kernel.shape == (4, 3)


def test_clone_and_loaded_sequential_flags_are_keras():
    """As Keras 3.15 (checked there): a clone's own flag and a loaded Sequential's are True, their
    layers keep the flags the freezing set, so the same weights train."""
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="sa")], name="inner")
    i = keras.Input((4,))
    model = keras.Model(i, layers.Dense(1, name="head")(inner(i)))
    inner.trainable = False
    clone = keras.models.clone_model(model)
    assert [layer.trainable for layer in clone.get_layer("inner").layers] == [False]
    assert [w.path for w in clone.trainable_weights] == ["head/kernel", "head/bias"]
    model.trainable = False
    clone = keras.models.clone_model(model)
    assert clone.trainable and clone.trainable_weights == [] and not clone.get_layer("head").trainable
    reloaded = keras.Sequential.from_config(inner.get_config())
    assert reloaded.trainable and [layer.trainable for layer in reloaded.layers] == [False]
