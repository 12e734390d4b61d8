"""Noise layers, active only in training: GaussianNoise (additive), GaussianDropout
(multiplicative), drawn like Dropout's mask from the graph's `seed` input, which the training
step sets anew for every batch, and SpatialDropout1D/2D/3D (Dropout of whole channels). At
inference they are the identity and emit nothing."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras.layers.arguments import (check_data_format, check_input_rank, integer, number,
                                              owner_of)
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.core import Dropout, seed_input, stream_key

# The second uniform stream of a layer's normal draws: its key moved by this odd constant.
_SECOND_STREAM = 0x5BD1E995


def normal_draws(b: Builder, like: Value, key: int) -> Value:
    """Standard normal values of `like`'s shape and dtype (Box-Muller on two uniform streams
    keyed by `key`), drawn from the graph's seed input."""
    shape = like.type.shape
    first = b.op("random_uniform", seed_input(b), shape=shape, key=key)
    second = b.op("random_uniform", seed_input(b), shape=shape, key=(key + _SECOND_STREAM) % 2**31)
    one = b.scalar(1.0, first)
    radius = b.sqrt(b.mul(b.scalar(-2.0, first), b.log(b.sub(one, first))))
    z = b.mul(radius, b.cos(b.mul(second, b.scalar(2 * np.pi, second))))
    return z if z.type.dtype == like.type.dtype else b.cast(z, dtype=like.type.dtype)


class _Noise(Layer):
    """What the noise layers share: a seed (else a draw from numpy's generator) for the stream."""

    supports_masking = True   # as in Keras: the mask passes on
    acts_per_step = True      # draws are elementwise, so independent per step

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = None if seed is None else integer(seed, "seed", owner_of(self))
        self._key = stream_key(self.seed)


class GaussianNoise(_Noise):
    """Adds zero-centred normal noise of standard deviation `stddev` in training.

    >>> x = np.ones((2, 3), "float32")
    >>> bool((GaussianNoise(0.5)(x) == x).all())
    True
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = number(stddev, "stddev", owner_of(self), "a float value >= 0", lambda v: v >= 0)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training or self.stddev == 0:
            return inputs
        noise = normal_draws(b, inputs, self._key)
        return b.add(inputs, b.mul(noise, b.scalar(self.stddev, noise)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_Noise):
    """Multiplies by normal noise of mean 1 and standard deviation sqrt(rate / (1 - rate)) in
    training: the variance of Dropout(rate) without its zeros.

    >>> x = np.ones((2, 3), "float32")
    >>> bool((GaussianDropout(0.2)(x) == x).all())
    True
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = number(rate, "rate", owner_of(self), "a float value between 0 and 1",
                           lambda v: 0 <= v <= 1)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training or not 0 < self.rate < 1:
            return inputs
        noise = normal_draws(b, inputs, self._key)
        scale = b.add(b.mul(noise, b.scalar(math.sqrt(self.rate / (1 - self.rate)), noise)),
                      b.scalar(1.0, noise))
        return b.mul(inputs, scale)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one draw per sample and channel (channels last), shared by
    every step or pixel, since neighbouring ones are strongly correlated."""

    spatial_rank = 1

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(rate, noise_shape=(None, *[1] * self.spatial_rank, None), seed=seed, **kwargs)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        check_input_rank(self, inputs.type.shape, self.spatial_rank + 2)
        return super().emit(b, inputs, training)

    def get_config(self) -> dict[str, Any]:
        # As Keras 3 writes it: the noise shape is implied, and its constructor takes no
        # `trainable` (a config with one fails to load there).
        config = super().get_config()
        del config["noise_shape"], config["trainable"]
        return config


class SpatialDropout1D(_SpatialDropout):
    """Drops whole channels of (batch, steps, channels) inputs with probability `rate`.

    >>> x = np.ones((2, 5, 3), "float32")
    >>> kept = SpatialDropout1D(0.5, seed=1)(x, training=True)
    >>> bool((kept == kept[:, :1]).all())
    True
    """


class _SpatialDropoutND(_SpatialDropout):
    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None,
                 **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = check_data_format(data_format, owner_of(self))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class SpatialDropout2D(_SpatialDropoutND):
    """Drops whole channels of (batch, rows, cols, channels) inputs with probability `rate`."""

    spatial_rank = 2


class SpatialDropout3D(_SpatialDropoutND):
    """Drops whole channels of (batch, dim1, dim2, dim3, channels) inputs with probability `rate`."""

    spatial_rank = 3


class AlphaDropout(Dropout):
    """Dropout that keeps the mean and variance of its inputs (for SELU networks): in training a
    fraction `rate` of inputs is set to SELU's negative saturation -alpha * scale, then all are
    moved by the affine map a * x + b that restores zero mean and unit variance, as Keras 3's.

    >>> x = np.ones((2, 3), "float32")
    >>> bool((AlphaDropout(0.2)(x) == x).all())
    True
    """

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training or self.rate == 0:
            return inputs
        alpha_p = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946
        with np.errstate(divide="ignore", invalid="ignore"):     # rate 1: NaN, as Keras's
            a = np.float64((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        shift = -a * alpha_p * self.rate
        keep = self.kept(b, inputs)
        dropped = b.sub(b.scalar(1.0, keep), keep)
        x = b.add(b.mul(inputs, keep), b.mul(dropped, b.scalar(alpha_p, keep)))
        return b.add(b.mul(x, b.scalar(float(a), x)), b.scalar(float(shift), x))
