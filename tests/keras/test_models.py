"""Models: Input, functional Model, Sequential, trace, predict, weights and configs, checked
against numpy forward passes written here from the layers' weights."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile import keras
from nncompile.ir import verify
from nncompile.keras import backend
from nncompile.keras.layers import Add, Concatenate, Dense, Embedding, Subtract
from nncompile.keras.models import Input, InputLayer, Model, Sequential, trace


@pytest.fixture(autouse=True)
def fresh_names():
    backend.clear_session()


def np_dense(x, layer, activation=None):
    kernel, bias = layer.get_weights()
    y = x.astype(np.float64) @ kernel + bias
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-y))
    return y


def randomize(model, seed=0):
    """Weights of a useful scale (biases too), so every term shows in the outputs."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32) for w in model.get_weights()])


def data(*shape, seed=1):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)


def two_input_model():
    """Two inputs merged, two outputs."""
    a, b = Input(shape=(4,), name="a"), Input(shape=(3,), name="b")
    ha = Dense(5, activation="relu", name="dense_a")(a)
    hb = Dense(5, name="dense_b")(b)
    merged = Concatenate(name="merge")([ha, hb])
    out1 = Dense(2, name="out1")(merged)
    out2 = Dense(1, activation="sigmoid", name="out2")(merged)
    model = Model([a, b], [out1, out2], name="two_in_two_out")
    randomize(model)
    return model


def two_input_numpy(model, xa, xb):
    get = model.get_layer
    merged = np.concatenate([np_dense(xa, get("dense_a"), "relu"), np_dense(xb, get("dense_b"))], 1)
    return np_dense(merged, get("out1")), np_dense(merged, get("out2"), "sigmoid")


# --- Input --------------------------------------------------------------------------------------

def test_input_names_shapes_and_dtypes():
    x, y = Input(shape=(8,)), Input(shape=(3, 2), dtype="int32")
    assert (x.shape, x.dtype, x.history.layer.name) == ((None, 8), "float32", "input_layer")
    assert (y.shape, y.dtype, y.history.layer.name) == ((None, 3, 2), "int32", "input_layer_1")
    assert isinstance(x.history.layer, InputLayer)
    assert Input(batch_shape=(4, 5)).shape == (4, 5)
    assert Input(shape=(5,), batch_size=2).shape == (2, 5)


@pytest.mark.parametrize("kwargs, words", [
    ({}, ["`shape`"]),
    ({"shape": (3, -1)}, ["(3, -1)", "-1"]),
    ({"shape": (3,), "dtype": "complex64"}, ["complex64"]),
])
def test_input_rejects_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as info:
        Input(name="bad", **kwargs)
    assert "'bad'" in str(info.value) and all(w in str(info.value) for w in words)


# --- functional models --------------------------------------------------------------------------

def test_two_inputs_two_outputs_predict_like_numpy():
    model = two_input_model()
    xa, xb = data(7, 4), data(7, 3, seed=2)
    out1, out2 = model.predict([xa, xb])
    want1, want2 = two_input_numpy(model, xa, xb)
    assert out1.shape == (7, 2) and out2.shape == (7, 1)
    np.testing.assert_allclose(out1, want1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2, want2, rtol=1e-5, atol=1e-5)
    assert type(model).__name__ == "Functional" and isinstance(model, Model)
    assert [layer.name for layer in model.layers] == ["a", "b", "dense_a", "dense_b", "merge",
                                                      "out1", "out2"]
    assert model.input_shape == [(None, 4), (None, 3)]
    assert model.output_shape == [(None, 2), (None, 1)]
    assert model.output_names == ["out1", "out2"]


def test_dict_inputs_and_dict_outputs():
    model = two_input_model()
    xa, xb = data(5, 4), data(5, 3, seed=3)
    by_list = model.predict([xa, xb])
    by_dict = model.predict({"b": xb, "a": xa})
    for got, want in zip(by_dict, by_list):
        np.testing.assert_array_equal(got, want)
    a, b = model.inputs
    named = Model({"a": a, "b": b}, {"score": model.outputs[1], "logits": model.outputs[0]})
    result = named.predict({"a": xa, "b": xb})
    assert sorted(result) == ["logits", "score"]
    np.testing.assert_array_equal(result["score"], by_list[1])
    np.testing.assert_array_equal(result["logits"], by_list[0])
    assert trace(named).output_names == ["logits", "score"]


def test_shared_layer_called_twice_is_one_set_of_parameters():
    x = Input(shape=(3,), name="x")
    shared = Dense(3, activation="relu", name="shared")
    model = Model(x, shared(shared(x)))
    randomize(model)
    xs = data(4, 3)
    want = np_dense(np_dense(xs, shared, "relu"), shared, "relu")
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-5, atol=1e-5)
    graph = trace(model)
    assert [v.name for v in graph.param_inputs] == ["shared/kernel", "shared/bias"]
    assert sum(node.op == "matmul" for node in graph.nodes) == 2
    assert model.count_params() == 12 and len(model.weights) == 2


def test_siamese_shared_layer_on_two_inputs():
    a, b = Input(shape=(4,), name="left"), Input(shape=(4,), name="right")
    tower = Dense(2, name="tower")
    model = Model([a, b], Subtract(name="diff")([tower(a), tower(b)]))
    randomize(model)
    xa, xb = data(3, 4), data(3, 4, seed=5)
    want = np_dense(xa, tower) - np_dense(xb, tower)
    np.testing.assert_allclose(model.predict([xa, xb]), want, rtol=1e-5, atol=1e-5)


def test_nested_model_emits_its_calls_inside_the_outer_graph():
    inner = Sequential([Input(shape=(3,)), Dense(4, activation="relu", name="inner_dense")],
                       name="inner")
    a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    out = Dense(1, name="head")(Add(name="sum")([inner(a), inner(b)]))
    model = Model([a, b], out, name="outer")
    randomize(model)
    assert [layer.name for layer in model.layers] == ["a", "b", "inner", "sum", "head"]
    assert model.count_params() == 16 + 5
    assert [w.path for w in model.weights] == ["inner_dense/kernel", "inner_dense/bias",
                                               "head/kernel", "head/bias"]
    xa, xb = data(6, 3), data(6, 3, seed=7)
    dense = inner.get_layer("inner_dense")
    hidden = np_dense(xa, dense, "relu") + np_dense(xb, dense, "relu")
    want = np_dense(hidden, model.get_layer("head"))
    np.testing.assert_allclose(model.predict([xa, xb]), want, rtol=1e-5, atol=1e-5)
    graph = trace(model)
    verify(graph)
    assert {node.loc for node in graph.nodes} == {"inner_dense", "sum", "head"}


def test_model_called_on_arrays_is_one_batch_of_predict():
    model = two_input_model()
    xa, xb = data(10, 4), data(10, 3, seed=4)
    for got, want in zip(model([xa, xb]), model.predict([xa, xb], batch_size=4)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_integer_input_feeds_an_embedding():
    ids = Input(shape=(3,), dtype="int32", name="ids")
    embed = Embedding(10, 2, name="embed")
    model = Model(ids, embed(ids))
    tokens = np.array([[1, 2, 9], [0, 0, 4]])
    table = embed.get_weights()[0]
    np.testing.assert_array_equal(model.predict(tokens), table[tokens])
    # Floats are cast to the input's dtype, as Keras converts them.
    np.testing.assert_array_equal(model.predict(tokens.astype(np.float64)), table[tokens])
    assert str(trace(model).data_inputs[0].type) == "i32[?,3]"


def test_variable_length_axis_is_not_tied_to_the_batch():
    seq = Input(shape=(None, 4), name="seq")
    dense = Dense(2, name="proj")
    model = Model(seq, dense(seq))
    xs = data(2, 6, 4)
    np.testing.assert_allclose(model.predict(xs), np_dense(xs, dense), rtol=1e-5, atol=1e-5)
    shape = trace(model).data_inputs[0].type.shape
    assert shape[0] == "?" and isinstance(shape[1], str) and shape[1] != "?" and shape[2] == 4


def test_disconnected_graph_names_the_missing_input():
    a, c = Input(shape=(3,), name="given"), Input(shape=(3,), name="forgotten")
    with pytest.raises(ValueError, match="disconnected.*'forgotten'.*given"):
        Model(a, Add()([a, c]))


def test_model_inputs_must_be_keras_tensors_from_input():
    x = Input(shape=(3,))
    hidden = Dense(2, name="hidden")(x)
    with pytest.raises(ValueError, match="keras.Input.*'hidden'"):
        Model(hidden, Dense(1)(hidden))
    with pytest.raises(ValueError, match="KerasTensors"):
        Model(x, np.zeros(3))


def test_layer_names_must_be_unique():
    x = Input(shape=(3,))
    y = Dense(2, name="twin")(Dense(3, name="twin")(x))
    with pytest.raises(ValueError, match='"twin" is used 2 times'):
        Model(x, y)


# --- Sequential ---------------------------------------------------------------------------------

def test_sequential_with_input_shape_on_first_layer():
    model = Sequential(name="mlp")
    model.add(Dense(8, activation="relu", input_shape=(5,)))
    model.add(Dense(2, activation="sigmoid"))
    assert model.built and model.input_shape == (None, 5) and model.output_shape == (None, 2)
    assert [layer.name for layer in model.layers] == ["dense", "dense_1"]
    assert model.count_params() == 5 * 8 + 8 + 8 * 2 + 2
    randomize(model)
    xs = data(9, 5)
    want = np_dense(np_dense(xs, model.layers[0], "relu"), model.layers[1], "sigmoid")
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-5, atol=1e-5)


def test_sequential_deferred_build_from_the_first_predict():
    model = Sequential([Dense(4, activation="relu"), Dense(3)])
    assert not model.built and model.weights == []
    with pytest.raises(ValueError, match="not yet been built"):
        trace(model)
    xs = data(6, 7)
    out = model.predict(xs)
    assert model.built and model.input_shape == (None, 7) and out.shape == (6, 3)
    want = np_dense(np_dense(xs, model.layers[0], "relu"), model.layers[1])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_sequential_deferred_build_from_a_call_and_from_build():
    called = Sequential([Dense(2)])
    assert called(data(3, 4)).shape == (3, 2) and called.input_shape == (None, 4)
    built = Sequential([Dense(2)])
    built.build((None, 6))
    assert built.count_params() == 14 and built.output_shape == (None, 2)


def test_sequential_compiled_before_it_is_built_trains_once_built_by_its_data():
    """Sequential() + add() + compile() with no Input, as the oldest tutorials write it: compile
    waits for the first data's shape; one SGD step then moves the weights as numpy's gradient."""
    model = Sequential()
    model.add(Dense(1))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    xs, ys = data(8, 3), data(8, 1)
    with pytest.raises(ValueError, match="not built yet.*`model.build"):
        model.fit(iter([(xs, ys)]), steps_per_epoch=1, verbose=0)
    model.build((None, 3))
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    error = xs @ kernel + bias - ys
    history = model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], np.mean(error ** 2), rtol=1e-5)
    np.testing.assert_allclose(history.history["mae"][0], np.mean(np.abs(error)), rtol=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.1 * 2 / 8 * xs.T @ error, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_weights()[1], bias - 0.1 * 2 / 8 * error.sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first", ["fit", "evaluate", "train_on_batch"])
def test_sequential_compiled_before_it_is_built_is_built_by_the_first_arrays(first):
    model = Sequential([Dense(4, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    xs, ys = data(6, 5), data(6, 1)
    if first == "fit":
        model.fit(xs, ys, epochs=1, verbose=0)
    else:
        getattr(model, first)(xs, ys)
    assert model.built and model.input_shape == (None, 5)
    want = np_dense(np_dense(xs, model.layers[0], "relu"), model.layers[1])
    np.testing.assert_allclose(model.evaluate(xs, ys, verbose=0), np.mean((want - ys) ** 2), rtol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_sequential_compiled_before_it_is_built_is_saved_with_its_compile(suffix, tmp_path):
    model = Sequential([Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mae")
    path = str(tmp_path / f"unbuilt{suffix}")
    model.save(path)
    again = keras.models.load_model(path)
    xs, ys = data(4, 3), data(4, 1)
    got = again.evaluate(xs, ys, verbose=0)   # builds it, then compiles it as saved
    np.testing.assert_allclose(got, np.mean(np.abs(again.predict(xs, verbose=0) - ys)), rtol=1e-5)
    assert again.optimizer.learning_rate == pytest.approx(0.1)


def test_sequential_compiled_before_it_is_built_refuses_a_bad_loss_at_compile():
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 'nosuchloss'"):
        Sequential([Dense(1)]).compile(optimizer="sgd", loss="nosuchloss")
    with pytest.raises(ValueError, match="needs a `loss`"):
        Sequential([Dense(1)]).compile(optimizer="sgd")


def test_sequential_add_checks_the_new_layer_against_the_stack():
    model = Sequential([Input(shape=(8,)), Dense(4, name="hidden")])
    for late in [keras.layers.Reshape((3,), name="late"), keras.layers.Conv2D(2, 3, name="late")]:
        with pytest.raises(ValueError) as info:
            model.add(late)
        message = str(info.value)
        assert "'sequential'" in message and "'late'" in message and "'hidden'" in message
        assert "(None, 4)" in message
        assert [layer.name for layer in model.layers] == ["hidden"]
    with pytest.raises(ValueError, match="unique names"):
        model.add(Dense(2, name="hidden"))
    with pytest.raises(ValueError, match="Only instances of `keras.Layer`"):
        model.add("dense")


def test_sequential_pop_and_add_change_predictions():
    model = Sequential([Input(shape=(3,)), Dense(4, name="first"), Dense(2, name="second")])
    randomize(model)
    xs = data(5, 3)
    assert model.predict(xs).shape == (5, 2)
    popped = model.pop()
    assert popped.name == "second" and model.output_shape == (None, 4)
    want = np_dense(xs, model.layers[0])
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-5, atol=1e-5)
    model.add(Dense(1, name="third"))
    want = np_dense(np_dense(xs, model.layers[0]), model.layers[1])
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-5, atol=1e-5)
    model.pop(), model.pop()
    with pytest.raises(TypeError, match="no layers"):
        model.pop()


# --- predict ------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(samples=st.integers(0, 12), batch_size=st.integers(1, 5))
def test_predict_batches_agree_with_one_batch(samples, batch_size):
    backend.clear_session()
    model = Sequential([Input(shape=(3,)), Dense(2, activation="relu")])
    randomize(model)
    xs = data(samples, 3)
    out = model.predict(xs, batch_size=batch_size)
    assert out.shape == (samples, 2)
    np.testing.assert_allclose(out, np_dense(xs, model.layers[0], "relu"), rtol=1e-5, atol=1e-5)


def test_predict_batch_size_3_on_10_samples():
    model = two_input_model()
    xa, xb = data(10, 4), data(10, 3, seed=8)
    whole = model.predict([xa, xb], batch_size=10)
    for small, one in zip(model.predict([xa, xb], batch_size=3), whole):
        np.testing.assert_allclose(small, one, rtol=1e-6, atol=1e-6)


def test_predict_casts_and_reshapes_like_keras():
    model = Sequential([Input(shape=(1,)), Dense(2, name="d")])
    xs = np.arange(4)  # int64, rank 1: cast to float32 and given its trailing axis
    want = np_dense(xs[:, None].astype(np.float32), model.layers[0])
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-6)
    np.testing.assert_allclose(model.predict(xs.tolist()), want, rtol=1e-6)


def expect_error(model, x, *fragments):
    with pytest.raises(ValueError) as info:
        model.predict(x)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_predict_names_the_input_and_shapes_on_a_bad_shape():
    model = Sequential([Input(shape=(8,)), Dense(2)])
    expect_error(model, np.zeros((32, 7)), 'Input 0 of model "sequential" (input "input_layer") is '
                 "incompatible: expected shape (None, 8), received shape (32, 7)")
    expect_error(model, np.zeros((32, 2, 8)), "expected shape (None, 8), received shape (32, 2, 8)")
    expect_error(model, np.float32(3), "received shape ()")


def test_predict_errors_on_several_inputs():
    model = two_input_model()
    xa, xb = data(4, 4), data(4, 3)
    expect_error(model, [xa], '"two_in_two_out" expects 2 input(s) (a, b)', "received 1")
    expect_error(model, [xa, xb[:3]], "cardinality", '4 samples for input "a"',
                 '3 samples for input "b"')
    expect_error(model, [xa, np.array([["x", "y", "z"]] * 4)], 'Input 1 of model "two_in_two_out"',
                 '(input "b")', "numeric")
    expect_error(model, {"a": xa}, 'Missing data for input "b"', "['a', 'b']")
    expect_error(model, [xa, None], "'b'", "not optional")
    expect_error(model, [xa, xb[:, :2]], 'Input 1 of model "two_in_two_out" (input "b")',
                 "expected shape (None, 3), received shape (4, 2)")
    with pytest.raises(ValueError, match="batch_size"):
        model.predict([xa, xb], batch_size=0)


# --- weights ------------------------------------------------------------------------------------

def test_set_weights_changes_predictions_without_retracing():
    model = two_input_model()
    xa, xb = data(3, 4), data(3, 3, seed=9)
    first = model.predict([xa, xb])
    graph = model._graph(False)
    randomize(model, seed=11)
    second = model.predict([xa, xb])
    assert model._graph(False) is graph
    assert not np.allclose(first[0], second[0])
    for got, want in zip(second, two_input_numpy(model, xa, xb)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_get_set_weights_round_trip_and_checks():
    model = two_input_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 5), (5,), (3, 5), (5,), (10, 2), (2,), (10, 1), (1,)]
    doubled = [2 * w for w in weights]
    model.set_weights(doubled)
    for got, want in zip(model.get_weights(), doubled):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="length 7.*expecting 8"):
        model.set_weights(doubled[:-1])
    with pytest.raises(ValueError, match="'dense_b/kernel' has shape \\(3, 5\\).*\\(5, 3\\)"):
        model.set_weights(doubled[:2] + [doubled[2].T] + doubled[3:])


def test_trainable_flags_split_the_weights():
    x = Input(shape=(2,))
    frozen, live = Dense(3, name="frozen"), Dense(1, name="live")
    model = Model(x, live(frozen(x)))
    frozen.trainable = False
    assert [w.path for w in model.trainable_weights] == ["live/kernel", "live/bias"]
    assert [w.path for w in model.non_trainable_weights] == ["frozen/kernel", "frozen/bias"]
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4


def test_get_layer_by_name_and_index():
    model = two_input_model()
    assert model.get_layer("merge").name == "merge"
    assert model.get_layer(index=2).name == "dense_a" and model.get_layer(index=-1).name == "out2"
    with pytest.raises(ValueError, match="No such layer: nope.*'dense_a'"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index 9.*7 layers"):
        model.get_layer(index=9)
    with pytest.raises(ValueError, match="only a layer name or a layer index"):
        model.get_layer("merge", 1)


# --- trace --------------------------------------------------------------------------------------

def test_trace_names_inputs_params_outputs_and_locs():
    model = two_input_model()
    graph = nncompile.trace(model)
    verify(graph)
    text = str(graph)
    assert graph.name == "main"
    inputs = [(v.name, str(v.type)) for v in graph.data_inputs]
    assert inputs == [("a", "f32[?,4]"), ("b", "f32[?,3]")]
    for path in ["dense_a/kernel", "dense_a/bias", "out2/kernel"]:
        assert f"%{path}:" in text
    assert 'loc("dense_a")' in text and 'loc("merge")' in text
    assert graph.output_names == ["out1", "out2"]
    # Parameters are bound to the live weight arrays.
    kernel = model.get_layer("dense_a").kernel
    assert graph.params["dense_a/kernel"] is kernel.value


def test_trace_of_a_model_whose_output_is_repeated():
    x = Input(shape=(2,), name="x")
    y = Dense(2, name="d")(x)
    graph = trace(Model(x, [y, y]))
    verify(graph)
    assert graph.output_names == ["d", "d_1"]


def test_training_flag_reaches_the_layers():
    seen = []

    class Probe(keras.layers.Layer):
        def emit(self, b, inputs, training=False):
            seen.append(training)
            return inputs

    x = Input(shape=(2,))
    model = Model(x, Probe()(x))
    trace(model, training=True)
    trace(model)
    assert seen[-2:] == [True, False]


# --- configs ------------------------------------------------------------------------------------

def test_sequential_config_round_trip_predicts_the_same():
    model = Sequential([Input(shape=(4,)), Dense(3, activation="relu"), Dense(2)], name="stack")
    randomize(model)
    config = model.get_config()
    assert config["name"] == "stack"
    assert [layer["class_name"] for layer in config["layers"]] == ["InputLayer", "Dense", "Dense"]
    assert config["layers"][0]["config"]["batch_shape"] == [None, 4]
    copy = Sequential.from_config(config)
    assert copy is not model and [layer.name for layer in copy.layers] == ["dense", "dense_1"]
    copy.set_weights(model.get_weights())
    xs = data(5, 4)
    np.testing.assert_allclose(copy.predict(xs), model.predict(xs), rtol=1e-6)


def test_functional_config_round_trip_with_a_shared_layer():
    a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    shared = Dense(2, name="shared")
    out = Dense(1, name="head")(Concatenate(name="cat")([shared(a), shared(b)]))
    model = Model([a, b], out, name="siamese")
    randomize(model)
    config = model.get_config()
    layers = {layer["name"]: layer for layer in config["layers"]}
    assert config["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    assert config["output_layers"] == ["head", 0, 0]
    histories = [arg["config"]["keras_history"] for node in layers["cat"]["inbound_nodes"]
                 for arg in node["args"][0]]
    assert histories == [["shared", 0, 0], ["shared", 1, 0]]
    assert len(layers["shared"]["inbound_nodes"]) == 2
    copy = Model.from_config(config)
    copy.set_weights(model.get_weights())
    xa, xb = data(4, 3), data(4, 3, seed=12)
    np.testing.assert_allclose(copy.predict([xa, xb]), model.predict([xa, xb]), rtol=1e-6)
    assert copy.name == "siamese" and len(copy.weights) == 4


def test_nested_model_config_round_trip():
    inner = Sequential([Input(shape=(3,)), Dense(2, name="inner_dense")], name="inner")
    x = Input(shape=(3,), name="x")
    model = Model(x, Dense(1, name="head")(inner(x)), name="outer")
    randomize(model)
    copy = Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    xs = data(3, 3)
    np.testing.assert_allclose(copy.predict(xs), model.predict(xs), rtol=1e-6)
    assert type(copy.get_layer("inner")).__name__ == "Sequential"


def test_config_with_unknown_class_lists_the_known_ones():
    config = Sequential([Input(shape=(2,)), Dense(1)]).get_config()
    config["layers"][1]["class_name"] = "Dence"
    with pytest.raises(ValueError, match="'Dence'.*Dense.*InputLayer"):
        Sequential.from_config(config)


def test_keras2_functional_config_is_read():
    config = {
        "name": "legacy",
        "layers": [
            {"class_name": "InputLayer", "name": "in",
             "config": {"batch_input_shape": [None, 2], "dtype": "float32", "sparse": False,
                        "ragged": False, "name": "in"}, "inbound_nodes": []},
            {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 3},
             "inbound_nodes": [[["in", 0, 0, {}]]]},
        ],
        "input_layers": [["in", 0, 0]],
        "output_layers": [["d", 0, 0]],
    }
    model = Model.from_config(config)
    assert model.output_shape == (None, 3) and model.input_names == ["in"]


def test_public_imports():
    assert keras.Sequential is Sequential and keras.models.Model is Model
    assert keras.layers.Dense is Dense and nncompile.trace is trace
    assert nncompile.__version__ == "0.1.0"
