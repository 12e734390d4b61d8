"""Training resumed from a saved model follows the uninterrupted trajectory: the weights, the
optimizer's slots and its iteration count all come back from the file."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers

EPOCHS = 4


def _model(optimizer):
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(8, activation="relu", name="h"),
                             layers.BatchNormalization(name="bn"), layers.Dense(1, name="out")])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def _data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 5)).astype("float32")
    return x, (x @ rng.standard_normal((5, 1))).astype("float32")


@pytest.mark.parametrize("suffix,optimizer", [
    (".keras", lambda: keras.optimizers.Adam(learning_rate=0.01)),
    (".h5", lambda: keras.optimizers.Adam(learning_rate=0.01)),
    (".keras", lambda: keras.optimizers.RMSprop(learning_rate=0.005, momentum=0.5, centered=True)),
])
def test_resume_continues_the_same_trajectory(tmp_path, suffix, optimizer):
    x, y = _data()
    uninterrupted = _model(optimizer())
    start = [w.numpy() for w in uninterrupted.weights]
    uninterrupted.fit(x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0)

    first = _model(optimizer())
    first.set_weights(start)
    first.fit(x, y, batch_size=8, epochs=EPOCHS // 2, shuffle=False, verbose=0)
    first.save(tmp_path / f"half{suffix}")
    resumed = keras.models.load_model(tmp_path / f"half{suffix}")
    assert resumed.optimizer.iterations == first.optimizer.iterations == EPOCHS // 2 * 4
    resumed.fit(x, y, batch_size=8, epochs=EPOCHS // 2, shuffle=False, verbose=0)

    for want, got in zip(uninterrupted.weights, resumed.weights):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6, err_msg=want.path)


def test_fresh_optimizer_would_diverge(tmp_path):
    """The check above can fail: dropping the optimizer state changes the trajectory."""
    x, y = _data()
    model = _model(keras.optimizers.Adam(learning_rate=0.01))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    with_state = keras.models.load_model(tmp_path / "m.keras")
    without = keras.models.load_model(tmp_path / "m.keras", compile=False)
    without.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    for m in (with_state, without):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(with_state.weights[0].numpy(), without.weights[0].numpy(), atol=1e-6)
