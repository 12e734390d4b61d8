"""The seed tutorials' models build, summarize and predict like a numpy forward pass written here."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from nncompile.keras.layers import (Activation, Conv2D, Convolution2D, Dense, Dropout, Flatten,
                                    MaxPooling2D)
from nncompile.keras.models import Sequential

BATCH = 4


# --- numpy forward pass ---------------------------------------------------------------------------

def np_relu(x):
    return np.maximum(x, 0)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_conv(x, kernel, bias, padding):
    """Stride-1 NHWC convolution, summed over kernel taps; 'same' pads (k-1)//2 before."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = sum(x[:, p:p + oh, q:q + ow] @ kernel[p, q] for p in range(kh) for q in range(kw))
    return out + bias


def np_max_pool_2x2(x):
    n, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def randomize(model, seed):
    """Random weights of a useful scale, so every unit contributes to the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.get_weights():
            fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
            values.append((rng.uniform(-1, 1, w.shape) / np.sqrt(fan_in)).astype(np.float32))
        layer.set_weights(values)
    return [w.astype(np.float64) for layer in model.layers for w in layer.get_weights()]


def summary_text(model, capsys) -> str:
    model.summary()
    return capsys.readouterr().out


# --- the models -----------------------------------------------------------------------------------

def pima_mlp():
    model = Sequential()
    model.add(Dense(12, input_dim=8, init="uniform", activation="relu"))
    model.add(Dense(8, init="uniform", activation="relu"))
    model.add(Dense(1, init="uniform", activation="sigmoid"))
    return model


def mnist_mlp():
    model = Sequential()
    model.add(Dense(512, activation="relu", input_shape=(784,)))
    model.add(Dropout(0.2))
    model.add(Dense(512, activation="relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10, activation="softmax"))
    return model


def cifar10_cnn():
    model = Sequential()
    model.add(Conv2D(32, (3, 3), padding="same", input_shape=(32, 32, 3)))
    model.add(Activation("relu"))
    model.add(Conv2D(32, (3, 3)))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Conv2D(64, (3, 3), padding="same"))
    model.add(Activation("relu"))
    model.add(Conv2D(64, (3, 3)))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(512))
    model.add(Activation("relu"))
    model.add(Dropout(0.5))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    return model


def cifar10_cnn_keras1():
    model = Sequential()
    model.add(Convolution2D(32, 3, 3, border_mode="same", input_shape=(32, 32, 3)))
    model.add(Activation("relu"))
    model.add(Convolution2D(32, 3, 3))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Convolution2D(64, 3, 3, border_mode="same"))
    model.add(Activation("relu"))
    model.add(Convolution2D(64, 3, 3))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(512))
    model.add(Activation("relu"))
    model.add(Dropout(0.5))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    return model


def cifar_forward(x, weights):
    k1, b1, k2, b2, k3, b3, k4, b4, w5, b5, w6, b6 = weights
    h = np_relu(np_conv(x, k1, b1, "same"))
    h = np_max_pool_2x2(np_relu(np_conv(h, k2, b2, "valid")))
    h = np_relu(np_conv(h, k3, b3, "same"))
    h = np_max_pool_2x2(np_relu(np_conv(h, k4, b4, "valid")))
    h = np_relu(h.reshape(len(h), -1) @ w5 + b5)
    return np_softmax(h @ w6 + b6)


# --- tests ----------------------------------------------------------------------------------------

def test_pima_mlp_with_keras1_arguments(capsys):
    with pytest.warns(DeprecationWarning) as record:
        model = pima_mlp()
    messages = " ".join(str(w.message) for w in record)
    assert "`input_shape`" in messages and "`kernel_initializer`" in messages
    # 8*12+12, 12*8+8, 8*1+1
    assert model.count_params() == 108 + 104 + 9 == 221
    assert "Total params: 221 " in summary_text(model, capsys)
    w1, b1, w2, b2, w3, b3 = randomize(model, seed=0)
    x = np.random.default_rng(1).uniform(0, 5, (BATCH, 8)).astype(np.float32)
    expected = np_sigmoid(np_relu(np_relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3)
    y = model.predict(x)
    assert y.shape == (BATCH, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_mnist_mlp(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = mnist_mlp()
    # 784*512+512, 512*512+512, 512*10+10
    assert model.count_params() == 401_920 + 262_656 + 5_130 == 669_706
    assert "Total params: 669,706 " in summary_text(model, capsys)
    w1, b1, w2, b2, w3, b3 = randomize(model, seed=2)
    x = np.random.default_rng(3).uniform(0, 1, (BATCH, 784)).astype(np.float32)
    expected = np_softmax(np_relu(np_relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3)
    y = model.predict(x)
    assert y.shape == (BATCH, 10)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-6)


# Per layer, kernel + bias: a k*k conv from c_in to c_out channels has k*k*c_in*c_out + c_out, a
# dense layer n_in*n_out + n_out. 32x32 inputs: same conv 32, valid conv 30, pool 15, same conv 15,
# valid conv 13, pool 6, so the first dense layer sees 6*6*64 features.
CIFAR_PARAMS = ((3 * 3 * 3 * 32 + 32) + (3 * 3 * 32 * 32 + 32) + (3 * 3 * 32 * 64 + 64)
                + (3 * 3 * 64 * 64 + 64) + (6 * 6 * 64 * 512 + 512) + (512 * 10 + 10))


@pytest.mark.parametrize("build", [cifar10_cnn, cifar10_cnn_keras1])
def test_cifar10_cnn(build, capsys):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = build()
    assert bool(record) == (build is cifar10_cnn_keras1)
    assert model.count_params() == CIFAR_PARAMS
    assert [layer.get_weights()[0].shape for layer in model.layers if layer.get_weights()] == [
        (3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 64), (2304, 512), (512, 10)]
    assert f"Total params: {CIFAR_PARAMS:,} " in summary_text(model, capsys)
    weights = randomize(model, seed=4)
    x = np.random.default_rng(5).uniform(0, 1, (BATCH, 32, 32, 3)).astype(np.float32)
    y = model.predict(x)
    assert y.shape == (BATCH, 10)
    np.testing.assert_allclose(y, cifar_forward(x.astype(np.float64), weights), rtol=1e-4, atol=1e-6)


def test_keras1_warnings_point_at_the_users_line():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Sequential([Dense(12, input_dim=8, init="uniform", activation="relu")])
        Sequential([Convolution2D(32, 3, 3, border_mode="same", input_shape=(8, 8, 3))])
    messages = [str(w.message) for w in record if w.category is DeprecationWarning]
    assert any("`input_dim`" in m for m in messages) and any("`border_mode`" in m for m in messages)
    assert {w.filename for w in record if w.category is DeprecationWarning} == {__file__}
