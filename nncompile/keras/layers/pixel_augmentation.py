"""Keras 3's image layers that filter or rewrite pixels: RandomSharpness, RandomGaussianBlur,
RandomErasing (random, training only, drawn as augmentation.py describes) and AutoContrast,
Equalization (deterministic). Channels last.

    >>> x = np.array([[[[10.0], [20.0]], [[30.0], [50.0]]]], "float32")
    >>> AutoContrast()(x)[0, :, :, 0].tolist()
    [[0.0, 63.75], [127.5, 255.0]]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras.layers.arguments import check_data_format, integer, owner_of
from nncompile.keras.layers.augmentation import _Augmentation, _factor, value_range_pair
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.color_augmentation import FULL_RANGE, _Chance, channel, clip, to_range
from nncompile.keras.layers.noise import normal_draws
from nncompile.keras.ops.convolution import depthwise_conv
from nncompile.keras.ops.image_filters import _each_channel

SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0   # RandomSharpness's (PIL's SMOOTH)


def _batch(b: Builder, x: Value, fn) -> Value:
    """fn of channels-last images, run on one image (rank 3) as a batch of one."""
    if x.type.rank == 4:
        return fn(x)
    return b.reshape(fn(b.reshape(x, shape=[1, *x.type.shape])), shape=list(x.type.shape))


class RandomSharpness(_Augmentation):
    """Sharpens or blurs each image in training, as Keras 3: x + (1 - 2f) (smooth(x) - x) with
    f ~ U[lower, upper) per image (`factor` a number f in [0, 1] is (0, f)) and smooth the 3 x 3
    kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (zero-padded), clipped to `value_range`: f = 0.5
    keeps the image, 0 blurs, 1 sharpens. Images are cast to the layer's dtype, also at
    inference, where nothing else is done.

    >>> x = np.full((1, 3, 3, 1), 13.0, "float32")
    >>> RandomSharpness(factor=(0.0, 0.0))(x)[0, 1, 1, 0].tolist()    # the centre: all 13s smoothed
    13.0
    """

    def __init__(self, factor, value_range=FULL_RANGE, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        kernel = SMOOTH.astype(x.type.dtype.numpy)
        smooth = _batch(b, x, lambda v: _each_channel(b, v, kernel, "same"))
        weight = b.sub(b.scalar(1.0, x), b.mul(self._between(b, x, *self.factor), b.scalar(2.0, x)))
        return clip(b, b.add(x, b.mul(weight, b.sub(smooth, x))), *self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


def _kernel_size(value) -> tuple[int, int]:
    """RandomGaussianBlur's `_set_kernel_size`: an odd number n is (n, n); a pair of odd numbers."""
    message = f"kernel_size must be an odd number. Received: kernel_size={value}"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"The `kernel_size` argument should be a number (or a list of two numbers) "
                             f"Received: kernel_size={value}")
        if value[0] % 2 == 0 or value[1] % 2 == 0:
            raise ValueError(message)
        return int(value[0]), int(value[1])
    if isinstance(value, (int, float)) and value % 2 == 1:
        return int(value), int(value)
    raise ValueError(message)


def _named_factor(value, name: str) -> tuple:
    """Keras's `_set_factor_by_name` over [0, 1] (a number f is (0, f)); its message names
    `name` but reports the value as `factor`, as Keras's does."""
    message = (f"The `{name}` argument should be a number (or a list of two numbers) in the range "
               f"[0, 1]. Received: factor={value}")
    try:
        return _factor(None, value, (0, 1))
    except ValueError:
        raise ValueError(message) from None


def _gaussian_taps(b: Builder, size: int, sigma: Value) -> Value:
    """Keras's normalized 1-D Gaussian of `size` taps for a traced scalar-shaped `sigma` (1,)."""
    offsets = b.constant(np.arange(size, dtype=sigma.type.dtype.numpy) - np.asarray((size - 1) / 2, sigma.type.dtype.numpy))
    taps = b.exp(b.mul(b.scalar(-0.5, sigma), b.square(b.div(offsets, sigma))))
    return b.div(taps, b.reduce_sum(taps, axes=[0], keepdims=True))


class RandomGaussianBlur(_Chance):
    """Blurs each image in training with a probability drawn per image from U[factor] (a number f:
    [0, f); default 1.0), by `ops.image.gaussian_blur` with `kernel_size` (odd; a number or a
    pair) and one pair of sigmas drawn for the whole batch from U[sigma] (a number s in [0, 1]:
    [0, s)) plus 1e-6, as Keras 3 draws them; then every image is clipped to `value_range`.
    Images are cast to the layer's dtype, also at inference, where nothing else is done.

    >>> x = np.full((1, 3, 3, 1), 9.0, "float32")
    >>> RandomGaussianBlur(factor=(1.0, 1.0), sigma=(0.0, 0.0))(x)[0, 1, 1, 0].tolist()   # sigma 1e-6
    9.0
    """

    spare_streams = 2

    def __init__(self, factor=1.0, kernel_size=3, sigma=1.0, value_range=FULL_RANGE, data_format=None, seed=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.kernel_size = _kernel_size(kernel_size)
        self.sigma = _named_factor(sigma, "sigma")
        self.value_range = value_range_pair(value_range, sort=False)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        low, high = self.sigma
        sigmas = self._draw(b, (2,), x.type.dtype, stream=2)
        sigmas = b.add(b.add(b.mul(sigmas, b.scalar(float(high - low), x)), b.scalar(float(low), x)),
                       b.scalar(1e-6, x))
        blurred = _batch(b, x, lambda v: self._blur(b, v, sigmas))
        return clip(b, b.select(self._applies(b, x), blurred, x), *self.value_range)

    def _blur(self, b: Builder, x: Value, sigmas: Value) -> Value:
        """x convolved with the outer product of the row and column Gaussians (rows: kernel_size[1]
        and sigma[1], as Keras's JAX backend pairs them)."""
        sigma = [b.slice(sigmas, starts=[i], ends=[i + 1], axes=[0], steps=[1]) for i in range(2)]
        rows = _gaussian_taps(b, self.kernel_size[1], sigma[1])
        columns = _gaussian_taps(b, self.kernel_size[0], sigma[0])
        kernel = b.mul(b.reshape(rows, shape=[self.kernel_size[1], 1]), b.reshape(columns, shape=[1, self.kernel_size[0]]))
        channels = x.type.shape[-1]
        tiled = b.broadcast(b.reshape(kernel, shape=[*kernel.type.shape, 1, 1]),
                            shape=[*kernel.type.shape, channels, 1])
        return depthwise_conv.__wrapped__(b, x, tiled, padding="same", data_format="channels_last")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "kernel_size": self.kernel_size,
                "sigma": self.sigma, "value_range": self.value_range}


def _fill_value(value):
    """RandomErasing's `fill_value`: None (normal noise), a number or three numbers."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return value
    # Keras 3 raises this at the first call; said at once here.
    raise ValueError("The `fill_value` argument should be a number (or a list of three numbers) ")


class RandomErasing(_Chance):
    """Erases a rectangle of each image in training with a probability drawn per image from
    U[factor] (a number f: [0, f); default 1.0), as Keras 3: its sides are sqrt(s) of the
    image's width and height, s ~ U[scale] drawn per image and side, placed uniformly inside the
    image; the rectangle gets `fill_value` (a number, three per channel, or None: normal noise
    times value_range[1]), clipped to `value_range`. Images are cast to the layer's dtype, also at
    inference, where nothing else is done.

    >>> x = np.ones((1, 4, 4, 1), "float32")
    >>> float(RandomErasing((1.0, 1.0), scale=(1.0, 1.0), fill_value=0.0)(x).sum())     # the whole image
    0.0
    """

    spare_streams = 6

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=FULL_RANGE, seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.scale = _named_factor(scale, "scale")
        self.fill_value = _fill_value(fill_value)
        self.value_range = value_range_pair(value_range, sort=False)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        height, width = x.type.shape[-3:-1]
        inside = b.logical_and(self._span(b, x, width, stream=2, axis=-2),
                               self._span(b, x, height, stream=3, axis=-3))
        erase = b.logical_and(inside, self._applies(b, x))
        return b.select(erase, self._fill(b, x), x)

    def _span(self, b: Builder, x: Value, length: int, stream: int, axis: int) -> Value:
        """Whether each pixel's index along `axis` lies in the image's drawn interval [start, start
        + sqrt(s) * length), its start drawn uniformly in [0, length - that)."""
        size = b.mul(b.sqrt(self._between(b, x, *self.scale, stream=stream + 2)), b.scalar(float(length), x))
        start = b.mul(self._draws(b, x, stream), b.sub(b.scalar(float(length), x), size))
        shape = [1] * x.type.rank
        shape[axis] = length
        grid = b.constant(np.arange(length, dtype=x.type.dtype.numpy).reshape(shape))
        return b.logical_and(b.greater_equal(grid, start), b.less(grid, b.add(start, size)))

    def _fill(self, b: Builder, x: Value) -> Value:
        low, high = self.value_range
        if self.fill_value is None:
            fill = b.mul(normal_draws(b, x, self._key + 6), b.scalar(float(high), x))
        else:
            values = np.broadcast_to(np.asarray(self.fill_value, x.type.dtype.numpy), (x.type.shape[-1],))
            fill = b.constant(np.ascontiguousarray(values))
        return clip(b, fill, low, high)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "scale": self.scale, "fill_value": self.fill_value,
                "value_range": self.value_range}


class AutoContrast(Layer):
    """Stretches each channel of each image to the full `value_range`, as Keras 3: (x - low) /
    (high - low), low and high the channel's minimum and maximum over the image; a constant
    channel is left as it is. Deterministic: applied in training and at inference alike. The
    output is in the layer's dtype."""

    def __init__(self, value_range=FULL_RANGE, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.value_range = value_range_pair(value_range)
        self.data_format = check_data_format(data_format, owner_of(self))

    def compute_output_shape(self, input_shape):
        return input_shape

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        dtype = DType.from_numpy(self.dtype)
        x = inputs if inputs.type.dtype == dtype else b.cast(inputs, dtype=dtype)
        scaled = to_range(b, x, self.value_range, FULL_RANGE)
        axes = [x.type.rank - 3, x.type.rank - 2]
        low = b.reduce_min(scaled, axes=axes, keepdims=True)
        high = b.reduce_max(scaled, axes=axes, keepdims=True)
        # Keras's arithmetic: a constant channel divides by zero, giving NaN, kept as the input
        scale = b.div(b.scalar(255.0, x), b.sub(high, low))
        out = b.add(b.mul(scaled, scale), b.mul(b.neg(low), scale))
        out = to_range(b, clip(b, out, *FULL_RANGE), FULL_RANGE, self.value_range)
        return b.select(b.not_equal(out, out), x, out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value_range": self.value_range, "data_format": self.data_format}


class Equalization(_Augmentation):
    """Equalizes the histogram of each channel in training, as Keras 3 does: over the whole batch
    (one histogram of `bins` bins a channel, of the values scaled to [0, 255]), each value is
    replaced by round(255 (cdf - cdf_min) / (total - cdf_min)) at its bin and scaled back to
    `value_range`; a channel whose values fill at most one bin is left as it is. The identity at
    inference (Keras's layer equalizes only in training).

    >>> x = np.array([[[[0.0], [0.0]], [[0.0], [255.0]]]], "float32")
    >>> Equalization()(x)[0, :, :, 0].tolist()
    [[0.0, 0.0], [0.0, 255.0]]
    """

    def __init__(self, value_range=FULL_RANGE, bins=256, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.bins = integer(bins, "bins", owner_of(self))
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        channels = [self._equalized(b, channel(b, x, c)) for c in range(x.type.shape[-1])]
        return b.concat(*(b.reshape(p, shape=[*p.type.shape, 1]) for p in channels), axis=x.type.rank - 1)

    def _equalized(self, b: Builder, plane: Value) -> Value:
        bins = self.bins
        plane = to_range(b, plane, self.value_range, FULL_RANGE)
        # the bin of each value as Keras's histogram takes it, then as its lookup takes it
        counted = b.mul(plane, b.scalar(float(bins - 1), plane))
        counted = self._bin(b, b.div(counted, b.scalar(255.0, plane)))
        looked_up = self._bin(b, b.mul(b.div(plane, b.scalar(255.0, plane)), b.scalar(float(bins - 1), plane)))
        hits = b.cast(b.equal(b.reshape(counted, shape=[*counted.type.shape, 1]),
                              b.constant(np.arange(bins, dtype=np.int32))), dtype=plane.type.dtype)
        histogram = b.reduce_sum(hits, axes=list(range(counted.type.rank)), keepdims=False)
        cdf = b.reshape(b.matmul(b.reshape(histogram, shape=[1, bins]),
                                 b.constant(np.triu(np.ones((bins, bins), plane.type.dtype.numpy)))), shape=[bins])
        table = self._lookup_table(b, cdf)
        equalized = b.gather(table, looked_up, axis=0)
        filled = b.reduce_sum(b.cast(b.greater(histogram, b.scalar(0.0, histogram)), dtype=plane.type.dtype),
                              axes=[0], keepdims=False)
        out = b.select(b.less_equal(filled, b.scalar(1.0, filled)), plane, equalized)
        return to_range(b, out, FULL_RANGE, self.value_range)

    def _bin(self, b: Builder, scaled: Value) -> Value:
        """Keras's int32 cast (towards zero) clipped to [0, bins - 1]."""
        whole = b.cast(scaled, dtype=DType.i32)
        return b.minimum(b.maximum(whole, b.scalar(0, whole)), b.scalar(self.bins - 1, whole))

    def _lookup_table(self, b: Builder, cdf: Value) -> Value:
        """round(255 (cdf - cdf_min) / (total - cdf_min)) clipped to [0, 255], cdf_min the first
        positive count (a denominator of 0 taken as 1), as Keras computes it."""
        total = b.slice(cdf, starts=[self.bins - 1], ends=[self.bins], axes=[0], steps=[1])
        big = b.scalar(float(np.finfo(np.float32).max), cdf)
        first = b.reduce_min(b.select(b.greater(cdf, b.scalar(0.0, cdf)), cdf, big), axes=[0], keepdims=True)
        denominator = b.sub(total, first)
        denominator = b.select(b.equal(denominator, b.scalar(0.0, cdf)), b.scalar(1.0, cdf), denominator)
        table = b.div(b.mul(b.sub(cdf, first), b.scalar(255.0, cdf)), denominator)
        return clip(b, b.round(table), *FULL_RANGE)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "bins": self.bins, "value_range": self.value_range}
        del config["seed"]   # Keras's Equalization draws nothing and has no seed
        return config
