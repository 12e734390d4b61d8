"""Functional-call semantics: nested models whose layers share names, `training=` fixed at call time,
and Keras's argument errors."""
import numpy as np
import pytest

import nncompile
from nncompile import keras

L = keras.layers


def _block(name, inputs):
    return keras.Sequential([keras.Input((inputs,)), L.Dense(4, name="fc")], name=name)


def test_nested_models_with_equally_named_layers_keep_their_own_weights():
    a, b = _block("a", 3), _block("b", 4)
    i = keras.Input((3,))
    model = keras.Model(i, b(a(i)))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    (wa, ba), (wb, bb) = a.get_weights(), b.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), (x @ wa + ba) @ wb + bb, rtol=1e-5, atol=1e-6)
    names = [v.name for v in nncompile.trace(model).param_inputs]
    assert len(set(names)) == 4 and names[:2] == ["fc/kernel", "fc/bias"]


def test_models_mode_overrides_the_one_given_at_a_call():
    """As Keras 3.15's functional call (checked there): `training=False` given at a call holds
    when the model is called without a mode (moving statistics), and a mode given to the model
    wins over it (the batch's statistics)."""
    i = keras.Input((4,))
    frozen = L.BatchNormalization()
    model = keras.Model(i, frozen(i, training=False))
    frozen.set_weights([np.ones(4), np.zeros(4), np.full(4, 5.0), np.full(4, 4.0)])
    x = np.random.default_rng(1).random((8, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x), (x - 5.0) / np.sqrt(4.0 + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(model(x, training=True), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3),
                               rtol=1e-4, atol=1e-4)


def test_keras_files_augmentation_calls_do_not_augment_predictions(tmp_path):
    """Keras records an augmentation layer's call with its `training=True` default; predict and
    evaluate run the model in inference mode, which wins, and a call without a mode augments."""
    i = keras.Input((6, 6, 1))
    model = keras.Model(i, L.Flatten()(L.RandomRotation(0.2)(L.RandomFlip()(i))))
    assert [n.training for layer in model.layers[1:3] for n in layer._inbound_nodes] == [True, True]
    x = np.random.default_rng(3).random((4, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x.reshape(4, -1))
    model.save(tmp_path / "aug.keras")
    again = keras.models.load_model(tmp_path / "aug.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), x.reshape(4, -1))
    np.testing.assert_array_equal(again(x, training=False), x.reshape(4, -1))
    assert not np.array_equal(again(x), x.reshape(4, -1))


def test_training_none_at_call_time_follows_the_model():
    i = keras.Input((4,))
    model = keras.Model(i, L.BatchNormalization(epsilon=0.0)(i))
    x = np.random.default_rng(2).random((16, 4)).astype(np.float32)
    batch_normalized = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(model(x), x, rtol=1e-6)
    np.testing.assert_allclose(model(x, training=True), batch_normalized, rtol=1e-4, atol=1e-4)
    # As in Keras, the training call moved the moving statistics (momentum 0.99) one step.
    moving = (x - 0.01 * x.mean(0)) / np.sqrt(0.99 + 0.01 * x.var(0))
    np.testing.assert_allclose(model(x), moving, rtol=1e-4, atol=1e-5)


def test_unknown_layer_argument_is_a_value_error_listing_valid_ones():
    with pytest.raises(ValueError, match=r"Unrecognized keyword arguments passed to Dense: \{'unit': 3\}.*units"):
        L.Dense(2, unit=3)


def test_activity_regularizer_is_accepted_and_round_trips():
    layer = L.Dense(2, activity_regularizer="l2")
    clone = L.Dense.from_config(layer.get_config())
    assert clone.activity_regularizer.get_config() == {"l2": 0.01}


class Linear(L.Layer):
    """A custom layer written as the Keras 3 guide writes one, with `emit` for its computation."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal",
                                 trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

    def emit(self, b, x, training=False):
        return b.add(b.matmul(x, self.param(b, self.w)), self.param(b, self.b))


def test_custom_layer_with_keras3_add_weight_keywords():
    layer = Linear(3)
    x = np.random.default_rng(3).random((2, 5)).astype(np.float32)
    y = layer(x)
    w, bias = layer.get_weights()
    assert w.shape == (5, 3) and 0 < np.std(w) < 0.2 and not bias.any()
    np.testing.assert_allclose(y, x @ w + bias, rtol=1e-6, atol=1e-7)   # sums in another order
    assert [v.path for v in layer.weights] == ["linear/variable", "linear/variable_1"]


def test_a_frozen_base_model_keeps_its_batchnorm_in_inference_mode():
    """Keras's transfer-learning recipe: `base.trainable = False` sets every layer of the base,
    so its BatchNormalization runs on its moving statistics inside fit (whose mode wins over the
    call's training=False) and keeps them; the head trains as a numpy SGD loop on the frozen
    features says. Setting the base trainable again sets its layers again."""
    rng = np.random.default_rng(5)
    x, y = rng.random((8, 4)).astype(np.float32), rng.random((8, 1)).astype(np.float32)
    inner_i = keras.Input((4,))
    dense, bn = L.Dense(4), L.BatchNormalization()
    base = keras.Model(inner_i, bn(dense(inner_i)))
    base.trainable = False
    assert [layer.trainable for layer in base.layers[1:]] == [False, False] and base.trainable_weights == []
    i = keras.Input((4,))
    head = L.Dense(1)
    model = keras.Model(i, head(base(i, training=False)))
    dense.set_weights([np.eye(4, dtype=np.float32), np.zeros(4, np.float32)])
    bn.set_weights([np.ones(4), np.zeros(4), np.full(4, 0.5), np.full(4, 0.1)])
    head.set_weights([np.ones((4, 1), np.float32), np.zeros(1, np.float32)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(bn.get_weights()[2:], np.array([[0.5] * 4, [0.1] * 4], np.float32))
    features = (x.astype(np.float64) - 0.5) / np.sqrt(0.1 + 1e-3)
    w, b = np.ones((4, 1)), np.zeros(1)
    for rows in (slice(0, 4), slice(4, 8)):
        error = features[rows] @ w + b - y[rows]
        w, b = w - 0.1 * 2 * features[rows].T @ error / 4, b - 0.1 * 2 * error.mean(0)
    np.testing.assert_allclose(head.get_weights()[0], w, rtol=1e-5, atol=1e-6)
    base.trainable = True
    assert [layer.trainable for layer in base.layers[1:]] == [True, True] and len(base.trainable_weights) == 4


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_training_given_at_a_call_is_saved(tmp_path, suffix):
    """`Dropout(0.5)(x, training=True)` is recorded in the file, as Keras records it: the loaded
    model drops without a mode and not in predict."""
    i = keras.Input((1000,))
    model = keras.Model(i, L.Dropout(0.5)(i, training=True))
    assert model.get_config()["layers"][1]["inbound_nodes"][0]["kwargs"] == {"training": True}
    model.save(tmp_path / f"m{suffix}")
    again = keras.models.load_model(tmp_path / f"m{suffix}")
    x = np.ones((2, 1000), np.float32)
    assert 0.3 < (again(x) == 0).mean() < 0.7
    np.testing.assert_array_equal(again.predict(x, verbose=0), x)


def test_a_layer_called_with_no_mode_anywhere_takes_its_keras_default():
    """In a subclassed model called without a mode, RandomFlip augments (its Keras `call`
    defaults to training=True) and Dropout does not (False); predict runs neither."""
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flip, self.drop, self.flat = L.RandomFlip("horizontal"), L.Dropout(0.5), L.Flatten()

        def call(self, x):
            return self.drop(self.flat(self.flip(x)))

    images = np.random.default_rng(3).random((32, 4, 4, 1)).astype(np.float32)
    net, flat = Net(), images.reshape(32, -1)
    out = np.asarray(net(images))
    flipped = images[:, :, ::-1].reshape(32, -1)
    assert all(np.array_equal(o, a) or np.array_equal(o, f) for o, a, f in zip(out, flat, flipped))
    assert not np.array_equal(out, flat)
    np.testing.assert_array_equal(net.predict(images, verbose=0), flat)
    np.testing.assert_array_equal(net(images, training=False), flat)


def test_a_layer_frozen_inside_a_wrapper_is_not_trained():
    """As Keras (whose setter sets each variable's flag): a weight trains only if every layer from
    the model down to the one that made it is trainable; the order is `weights`' order, which
    legacy .h5 files follow (Keras writes a Bidirectional's frozen forward layer after the other)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 3, 4)).astype(np.float32), rng.random((8, 3, 2)).astype(np.float32)
    td = L.TimeDistributed(L.Dense(2))
    model = keras.Sequential([keras.Input((3, 4)), td])
    td.layer.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 2
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    bi = L.Bidirectional(L.SimpleRNN(2))
    bi(keras.Input((3, 4)))
    bi.forward_layer.trainable = False
    backward = [w.path for w in bi.backward_layer.weights]
    assert [w.path for w in bi.trainable_weights] == backward
    assert [w.path for w in bi.non_trainable_weights] == [w.path for w in bi.forward_layer.weights]
