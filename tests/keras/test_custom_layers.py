"""Tensors being traced behave like tensors, custom layers and Lambdas are traced into IR, save
and load, and what cannot be traced says where (issue 14, items 2, 3, 6 and 7). Expected values
are numpy computed here."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops
from nncompile.keras.tracing import TracingError

RNG = np.random.default_rng(14)
A = RNG.uniform(-2, 2, (4, 3)).astype("float32")
B = RNG.uniform(1, 2, (4, 3)).astype("float32")   # positive: divisors
W = RNG.standard_normal((3, 2)).astype("float32")


@pytest.fixture(autouse=True)
def reference_backend(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def operators(a, b):
    """Every Python operator of Keras's tensors, on whatever tensors `a` and `b` are."""
    floats = [a + b, a - b, a * b, a / b, a // b, a % b, a ** 2, -a, abs(a), a @ W, 2.0 - a,
              1.0 / b, a[:, 1:], a[:, 0], a[::-1]]
    truth = [a < b, a <= b, a > b, a >= b, a == a, a != b, (a > 0) & (b > 1.5), (a > 0) | (b > 1.5),
             (a > 0) ^ (b > 1.5), ~(a > 0)]
    return floats + [ops.cast(t, "float32") for t in truth]


def test_operators_on_keras_tensors_build_ops_as_numpy_computes():
    a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(3,), name="b")
    model = keras.Model([a, b], operators(a, b))
    got = model.predict([A, B], verbose=0)
    for g, want in zip(got, operators(A, B)):
        np.testing.assert_allclose(g, np.asarray(want, "float32"), rtol=1e-6, atol=1e-6)


def test_augmented_assignment_on_keras_tensors_adds_a_node():
    x = keras.Input(shape=(3,))
    y = layers.Dense(3, kernel_initializer="ones")(x)
    before = y
    y += x
    y *= 2.0
    assert y is not before and y.shape == (None, 3) and y.dtype == "float32" and y.ndim == 2
    out = keras.Model(x, y).predict(A, verbose=0)
    np.testing.assert_allclose(out, (A.sum(axis=1, keepdims=True) + A) * 2.0, rtol=1e-6)


def test_op_calls_are_operations_not_layers_as_in_keras():
    x = keras.Input(shape=(3,))
    model = keras.Model(x, (x + x) * 2.0)
    # what real Keras 3.15 lists for this model
    assert [type(op).__name__ for op in model.operations] == ["InputLayer", "Add", "Multiply"]
    assert model.layers == model.operations[:1]
    lines = []
    model.summary(line_length=120, print_fn=lines.append)
    add, multiply = model.operations[1:]
    assert f"{add.name} (Add)" in "\n".join(lines) and f"{multiply.name} (Multiply)" in "\n".join(lines)


class Operators(layers.Layer):
    """A layer whose call uses every operator and the tensor's shape, dtype and rank."""

    def call(self, inputs):
        a, b = inputs
        assert a.shape == (None, 3) and a.dtype == "float32" and a.ndim == 2
        return operators(a, b)


def test_operators_on_traced_tensors_inside_call():
    a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
    model = keras.Model([a, b], Operators()([a, b]))
    for g, want in zip(model.predict([A, B], verbose=0), operators(A, B)):
        np.testing.assert_allclose(g, np.asarray(want, "float32"), rtol=1e-6, atol=1e-6)


class Block(layers.Layer):
    """A custom layer holding layers (tracked: their weights are its weights) and a weight of
    its own, used in call with training passed down."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = layers.Dense(units, activation="relu")
        self.dropout = layers.Dropout(0.5)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, inputs, training=None):
        return self.dropout(self.dense(inputs), training=training) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_holds_its_sublayers_weights_and_passes_training_down():
    block = Block(4, name="block")
    x = keras.Input(shape=(3,))
    model = keras.Model(x, block(x))
    inner = block.dense.name
    assert [w.path for w in block.weights] == ["block/scale", f"block/{inner}/kernel",
                                               f"block/{inner}/bias"]
    assert len(model.trainable_weights) == 3
    kernel, bias = block.dense.get_weights()
    block.scale.assign(np.array([1.0, 2.0, 3.0, 4.0]))
    want = np.maximum(A @ kernel + bias, 0) * np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(model.predict(A, verbose=0), want, rtol=1e-6)
    trained = model(A, training=True)   # dropout: each entry zeroed or doubled
    assert np.all(np.isclose(trained, 0) | np.isclose(trained, 2 * want))
    assert np.isclose(trained, 0).any()


def test_layer_called_on_arrays_runs_its_call():
    block = Block(2)
    out = block(A)
    kernel, bias = block.dense.get_weights()
    np.testing.assert_allclose(out, np.maximum(A @ kernel + bias, 0), rtol=1e-6)


def test_weights_read_outside_a_trace_are_their_arrays():
    block = Block(2)
    block(A)
    np.testing.assert_allclose(block.scale * 3.0 + 1.0, np.full(2, 4.0))
    np.testing.assert_allclose(ops.matmul(A, block.dense.kernel), A @ block.dense.kernel.numpy())


class Noise(layers.Layer):
    """keras.random inside call: Gaussian noise in training only (as GaussianNoise)."""

    def __init__(self, stddev, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.seed_generator = keras.random.SeedGenerator(3)

    def call(self, inputs, training=False):
        if training:
            return inputs + keras.random.normal(ops.shape(inputs), stddev=self.stddev,
                                                seed=self.seed_generator)
        return inputs


def test_keras_random_inside_call():
    x = keras.Input(shape=(2000,))
    model = keras.Model(x, Noise(0.5)(x))
    ones = np.ones((2, 2000), "float32")
    np.testing.assert_array_equal(model.predict(ones, verbose=0), ones)
    noise = model(ones, training=True) - ones
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 0.5) < 0.05


class Sampling(layers.Layer):
    """keras.io's VAE sampling layer: the batch size read from the traced shape."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch, dim = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def test_random_draws_of_the_traced_batch_size():
    mean, log_var = keras.Input(shape=(500,)), keras.Input(shape=(500,))
    model = keras.Model([mean, log_var], Sampling()([mean, log_var]))
    out = model.predict([np.full((3, 500), 5.0, "float32"), np.full((3, 500), np.log(4.0), "float32")],
                        verbose=0)
    assert out.shape == (3, 500)
    assert abs(out.mean() - 5.0) < 0.2 and abs(out.std() - 2.0) < 0.2


def test_ops_giving_several_tensors_on_keras_tensors():
    x = keras.Input(shape=(4,))
    left, right = ops.split(x, 2, axis=-1)
    model = keras.Model(x, [left * 2.0, ops.concatenate([right, left], axis=-1)])
    data = np.arange(8, dtype="float32").reshape(2, 4)
    doubled, swapped = model.predict(data, verbose=0)
    np.testing.assert_array_equal(doubled, data[:, :2] * 2)
    np.testing.assert_array_equal(swapped, np.concatenate([data[:, 2:], data[:, :2]], axis=-1))


class TokenAndPositionEmbedding(layers.Layer):
    """keras.io's transformer example: a layer called on an array (the positions) inside call."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = layers.Embedding(maxlen, embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
        return self.token_emb(x) + positions


def test_layers_called_on_arrays_inside_call_join_the_graph_and_train():
    tokens = keras.Input(shape=(5,), dtype="int32")
    embedding = TokenAndPositionEmbedding(5, 10, 4)
    pooled = layers.GlobalAveragePooling1D()(embedding(tokens))
    model = keras.Model(tokens, layers.Dense(1)(pooled))
    data = RNG.integers(0, 10, (3, 5)).astype("int32")
    words, places = embedding.token_emb.get_weights()[0], embedding.pos_emb.get_weights()[0]
    kernel, bias = model.layers[-1].get_weights()
    want = (words[data] + places[None]).mean(axis=1) @ kernel + bias
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-5, atol=1e-6)
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(data, np.ones((3, 1), "float32"))
    assert not np.allclose(embedding.pos_emb.get_weights()[0], places)   # a parameter, trained


def test_lambda_traces_its_function_with_arguments():
    x = keras.Input(shape=(3,))
    scaled = layers.Lambda(lambda t, factor: ops.tanh(t) * factor, arguments={"factor": 3.0})(x)
    np.testing.assert_allclose(keras.Model(x, scaled).predict(A, verbose=0), np.tanh(A) * 3.0,
                               rtol=1e-6)


@keras.saving.register_keras_serializable(package="Tests")
class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_custom_layers_save_and_load(tmp_path):
    x = keras.Input(shape=(3,))
    model = keras.Model(x, Scale(3.0)(Block(4)(x)))
    want = model.predict(A, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Unknown layer class 'Block'.*custom_objects"):
        keras.models.load_model(path)
    again = keras.models.load_model(path, custom_objects={"Block": Block})
    np.testing.assert_allclose(again.predict(A, verbose=0), want, rtol=1e-6)
    scale = again.layers[-1]
    assert type(scale) is Scale and scale.factor == 3.0   # found by its registered name
    assert keras.saving.get_registered_name(Scale) == "Tests>Scale"


def test_lambda_saves_but_refuses_to_load_under_safe_mode(tmp_path):
    x = keras.Input(shape=(3,))
    path = tmp_path / "lambda.keras"
    keras.Model(x, layers.Lambda(lambda t: t * 2.0, name="double")(x)).save(path)
    with pytest.raises(ValueError, match="Layer 'double' is a Lambda layer.*safe_mode=True"):
        keras.models.load_model(path)


def test_models_with_ops_on_keras_tensors_save_and_load(tmp_path):
    a, b = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    left, right = ops.split(a, 2, axis=-1)
    outputs = [a + b, 2.0 - a * 0.5, a[:, 1:3], ops.mean(a, axis=-1, keepdims=True),
               ops.concatenate([right, left], axis=-1), ops.reshape(a, newshape=(-1, 2, 2)),
               ops.softmax(layers.Dense(4)(a), axis=-1), ops.matmul(a, np.ones((4, 2), "float32"))]
    model = keras.Model([a, b], outputs)
    data = [RNG.standard_normal((3, 4)).astype("float32") for _ in range(2)]
    want = model.predict(data, verbose=0)
    path = tmp_path / "ops.keras"
    model.save(path)
    again = keras.models.load_model(path)
    assert [type(op).__name__ for op in again.operations] == [type(op).__name__ for op in model.operations]
    for got, expected in zip(again.predict(data, verbose=0), want):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_loads_the_op_nodes_real_keras_writes():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "custom"
    model = keras.models.load_model(folder / "ops.keras")
    fixture = np.load(folder / "ops.npz")
    outs = model.predict([fixture["a"], fixture["b"]], verbose=0)
    assert len(outs) == 12
    for i, got in enumerate(outs):
        np.testing.assert_allclose(got, fixture[f"out_{i}"], rtol=1e-5, atol=1e-6)


# --- what cannot be traced ---------------------------------------------------------------------

class Branchy(layers.Layer):
    def call(self, inputs):
        if ops.sum(inputs) > 0:
            return inputs
        return -inputs


class Looping(layers.Layer):
    def call(self, inputs):
        return ops.stack([row * 2 for row in inputs])


class Converting(layers.Layer):
    def call(self, inputs):
        return inputs * float(ops.max(inputs))


@pytest.mark.parametrize("cls, line", [
    (Branchy, "if ops.sum(inputs) > 0:"), (Looping, "for row in inputs"),
    (Converting, "inputs * float(ops.max(inputs))")])
def test_python_control_flow_on_tensor_values_names_layer_and_line(cls, line):
    x = keras.Input(shape=(3,))
    with pytest.raises(TracingError) as error:
        cls(name="culprit")(x)
    message = str(error.value)
    assert f"Layer 'culprit' ({cls.__name__})" in message and "test_custom_layers.py" in message
    assert line in message and "ops.where" in message and "ops.scan" in message


def test_an_op_the_ir_cannot_express_names_the_op_and_the_layer():
    class Lower(layers.Layer):
        def call(self, inputs):
            return ops.tril(inputs)

    with pytest.raises(NotImplementedError, match=r"Layer 'lower' \(Lower\): ops.tril"):
        Lower(name="lower")(keras.Input(shape=(3,)))


def test_a_layer_without_call_or_emit_says_so():
    class Empty(layers.Layer):
        pass

    with pytest.raises(TypeError, match="Layer Empty defines neither `call` nor `emit`"):
        Empty()(keras.Input(shape=(3,)))


def test_several_positional_inputs_and_add_loss_are_refused_clearly():
    class Pair(layers.Layer):
        def call(self, x, y):
            return x + y

    class Penalized(layers.Layer):
        def call(self, inputs):
            self.add_loss(ops.sum(inputs))
            return inputs

    x = keras.Input(shape=(3,))
    with pytest.raises(TypeError, match=r"Layer 'pair' was given a second positional.*layer\(\[x, y\]\)"):
        Pair(name="pair")(x, x)
    with pytest.raises(NotImplementedError, match=r"Layer 'penalized' \(Penalized\) calls add_loss"):
        Penalized(name="penalized")(x)


def test_weights_cannot_be_assigned_inside_call():
    class Counter(layers.Layer):
        def build(self, input_shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False)

        def call(self, inputs):
            self.count.assign(ops.sum(inputs))
            return inputs

    with pytest.raises(TracingError, match=r"Layer 'counter' \(Counter\).*assign.*running sums"):
        Counter(name="counter")(keras.Input(shape=(3,)))
