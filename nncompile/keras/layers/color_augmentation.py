"""Keras 3's colour augmentation layers: RandomGrayscale, RandomInvert, Solarization,
RandomPosterization, RandomSaturation, RandomHue, RandomColorDegeneration and
RandomColorJitter (channels last).

They share augmentation.py's machinery: in training each image draws its own values from the
layer's stream of the counter-based `random_uniform` op (the training step reseeds it every
batch), following Keras 3's formulas (the values differ: another generator); at inference they
are the identity. As in Keras, calling one directly on an array without `training` augments.
A layer that applies with a probability draws, per image, p ~ U[factor] and t ~ U[0, 1) and
applies where t < p, as Keras does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, ShapeError, Value
from nncompile.keras.layers.arguments import owner_of
from nncompile.keras.layers.augmentation import (RandomBrightness, RandomContrast, _Augmentation, _factor,
                                                 value_range_pair)
from nncompile.keras.layers.base import keras_shape
from nncompile.keras.ops import image

EPSILON = 1e-7   # keras.config.epsilon(), which RandomSaturation's factor uses
FULL_RANGE = (0, 255)


def to_range(b: Builder, x: Value, source, target) -> Value:
    """Keras's `_transform_value_range`: x moved linearly from `source` to `target`, the bounds
    cast to x's dtype first (as Keras casts them); unchanged when the ranges are equal."""
    if source[0] == target[0] and source[1] == target[1]:
        return x
    s0, s1, t0, t1 = (np.asarray(v, x.type.dtype.numpy) for v in (*source, *target))
    unit = b.div(b.sub(x, b.scalar(float(s0), x)), b.scalar(float(s1 - s0), x))
    return b.add(b.mul(unit, b.scalar(float(t1 - t0), x)), b.scalar(float(t0), x))


def clip(b: Builder, x: Value, low: float, high: float) -> Value:
    return b.minimum(b.maximum(x, b.scalar(float(low), x)), b.scalar(float(high), x))


def channel(b: Builder, x: Value, c: int) -> Value:
    """Channel `c` of channels-last images, without its axis."""
    axis = x.type.rank - 1
    return b.reshape(b.slice(x, starts=[c], ends=[c + 1], axes=[axis], steps=[1]), shape=list(x.type.shape[:-1]))


def with_channel(b: Builder, x: Value, c: int, plane: Value) -> Value:
    """x with channel `c` replaced by `plane` (x's shape without the channels)."""
    planes = [plane if i == c else channel(b, x, i) for i in range(x.type.shape[-1])]
    return b.concat(*(b.reshape(p, shape=[*p.type.shape, 1]) for p in planes), axis=x.type.rank - 1)


def grayscale(b: Builder, x: Value) -> Value:
    return image.rgb_to_grayscale.__wrapped__(b, x, data_format="channels_last")


class _Chance(_Augmentation):
    """A layer that changes each image with a probability drawn from U[factor] (its streams 0
    and 1: the probability and the threshold it is compared with), as Keras draws it."""

    def _applies(self, b: Builder, x: Value) -> Value:
        """(batch, 1, 1, 1) booleans: t < p, t ~ U[0, 1), p ~ U[factor]."""
        return b.less(self._draws(b, x, 1), self._between(b, x, *self.factor))


class RandomGrayscale(_Augmentation):
    """Turns each image to grayscale (its luma in every channel) with probability `factor` in
    training, as Keras 3: an image is converted where its draw u ~ U[0, 1) is below `factor`.
    RGB images (or one channel, unchanged). The identity at inference.

    >>> x = np.array([[[[255.0, 0.0, 0.0]]]], "float32")
    >>> RandomGrayscale(factor=1.0)(x)[0, 0, 0].astype("float64").round(2).tolist()
    [76.22, 76.22, 76.22]
    """

    def __init__(self, factor=0.5, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if factor < 0 or factor > 1:
            raise ValueError(f"`factor` should be between 0 and 1. Received: factor={factor}")
        self.factor = factor

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        applies = b.less(self._draws(b, x), b.scalar(float(self.factor), x))
        gray = b.broadcast(grayscale(b, x), shape=list(x.type.shape))
        return b.select(applies, gray, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


class RandomInvert(_Chance):
    """Inverts each image (x -> value_range[1] - x) in training with a probability drawn per
    image from U[factor] (a number f: [0, f); default 1.0). The identity at inference.

    >>> x = np.array([[[[10.0]]]], "float32")
    >>> RandomInvert(factor=(1.0, 1.0))(x).ravel().tolist()
    [245.0]
    """

    spare_streams = 1

    def __init__(self, factor=1.0, value_range=FULL_RANGE, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.value_range = value_range_pair(value_range, sort=False)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        inverted = b.sub(b.scalar(float(self.value_range[1]), x), x)
        return b.select(self._applies(b, x), inverted, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


def _solarization_factor(factor, name: str) -> tuple:
    """Solarization's `_set_factor`: a number f in [0, 1] is (0, f), a pair is sorted."""
    message = ("The `addition_factor` and `threshold_factor` arguments should be a number (or a "
               "list of two numbers) in the range [0, 1]. ")
    if isinstance(factor, (tuple, list)) and len(factor) == 2:
        values = list(factor)
    elif isinstance(factor, (int, float)) and not isinstance(factor, bool):
        values = [0, factor]
    else:
        raise ValueError(message + f"Received: {name}={factor}")
    for value in values:
        if value > 1.0 or value < 0:
            raise ValueError(message + f"Received: input_number={value}")
    return tuple(sorted(values))


class Solarization(_Augmentation):
    """Solarizes in training, as Keras 3: on the image scaled to [0, 255], each pixel r (plus
    an addition drawn per image) becomes 255 - r where it is at least a threshold drawn per image,
    then the result is scaled back to `value_range`. Keras draws the addition from
    U[addition_factor[0], addition_factor[1] * 255) and the threshold likewise (its lower bounds
    are not scaled); the defaults solarize every pixel. Images are cast to the layer's dtype,
    also at inference, where nothing else is done.

    >>> x = np.array([[[[0.0], [0.25], [1.0]]]], "float32")
    >>> Solarization(value_range=(0, 1))(x).ravel().tolist()
    [1.0, 0.75, 0.0]
    """

    spare_streams = 1

    def __init__(self, addition_factor=0.0, threshold_factor=0.0, value_range=FULL_RANGE, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.addition_factor = _solarization_factor(addition_factor, "addition_factor")
        self.threshold_factor = _solarization_factor(threshold_factor, "threshold_factor")
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        addition = self._between(b, x, self.addition_factor[0], self.addition_factor[1] * 255)
        threshold = self._between(b, x, self.threshold_factor[0], self.threshold_factor[1] * 255, stream=1)
        r = clip(b, b.add(to_range(b, x, self.value_range, FULL_RANGE), addition), *FULL_RANGE)
        r = b.select(b.less(r, threshold), r, b.sub(b.scalar(255.0, r), r))
        return to_range(b, r, FULL_RANGE, self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value_range": self.value_range, "addition_factor": self.addition_factor,
                "threshold_factor": self.threshold_factor}


class RandomPosterization(_Augmentation):
    """Keeps `bits` of each 8-bit channel in training (the image scaled to [0, 255], truncated to
    integers, its low 8 - bits bits cleared, scaled back): `factor` a number f in [1, 8] keeps a
    number of bits drawn per image from the integers in [1, f), a pair (lo, hi) from [lo, hi)
    (as Keras's randint, whose upper bound is excluded), a pair (n, n) keeps n. Values outside
    the range are clipped to it first (Keras's uint8 cast wraps them). The identity at inference.

    >>> x = np.array([[[[200.0]]]], "float32")
    >>> RandomPosterization(factor=(2, 2))(x).ravel().tolist()
    [192.0]
    """

    def __init__(self, factor, value_range=FULL_RANGE, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (1, 8))
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        step = self._step(b, x)
        levels = b.floor(clip(b, to_range(b, x, self.value_range, FULL_RANGE), *FULL_RANGE))
        kept = b.mul(b.floor(b.div(levels, step)), step)
        return to_range(b, kept, FULL_RANGE, self.value_range)

    def _step(self, b: Builder, x: Value) -> Value:
        """2 ** (8 - bits) per image, bits drawn from the integers in [lower, upper)."""
        lower, upper = (int(f) for f in self.factor)
        if lower == upper:
            return b.scalar(float(2 ** (8 - lower)), x)
        index = b.cast(b.floor(b.mul(self._draws(b, x), b.scalar(float(upper - lower), x))), dtype=DType.i32)
        steps = np.array([2.0 ** (8 - bits) for bits in range(lower, upper)], x.type.dtype.numpy)
        return b.gather(b.constant(steps), index, axis=0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


def _three_channels(layer, x: Value) -> None:
    if x.type.shape[-1] != 3:
        raise ShapeError(f"{owner_of(layer)}: Input images must have 3 channels, but received images "
                         f"with {x.type.shape[-1]} channels. Received: input_shape={keras_shape(x.type)}")


class RandomSaturation(_Augmentation):
    """Scales each image's saturation in training, as Keras 3: u ~ U[lower, upper) per image
    (`factor` a number f in [-1, 1] is (-f, f), a pair (lower, upper)) gives the multiplier
    u / (1 - u + 1e-7); the saturation of the image's HSV (`ops.image.rgb_to_hsv` of the image
    as it is) times it is clipped to `value_range`, and the image turned back to RGB. u = 0.5
    keeps the image, u near 1 saturates it, u <= 0 makes it grey. The identity at inference.

    >>> x = np.array([[[[200.0, 100.0, 50.0]]]], "float32")
    >>> RandomSaturation(factor=(0.0, 0.0))(x)[0, 0, 0].tolist()
    [200.0, 200.0, 200.0]
    """

    def __init__(self, factor, value_range=FULL_RANGE, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (-1, 1))
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        _three_channels(self, x)
        u = b.reshape(self._between(b, x, *self.factor), shape=list(x.type.shape[:-3]) + [1, 1])
        multiplier = b.div(u, b.add(b.sub(b.scalar(1.0, u), u), b.scalar(EPSILON, u)))
        hsv = image.rgb_to_hsv.__wrapped__(b, x, data_format="channels_last")
        saturation = clip(b, b.mul(channel(b, hsv, 1), multiplier), *self.value_range)
        return image.hsv_to_rgb.__wrapped__(b, with_channel(b, hsv, 1, saturation), data_format="channels_last")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomHue(_Augmentation):
    """Turns each image's hue in training, as Keras 3: on the image scaled to [0, 1], its HSV hue
    moves by s * f / 2 (s = +1 or -1 with even odds, f ~ U[lower, upper), both per image; `factor`
    a number f in [0, 1] is (0, f)), wrapped into [0, 1]; the image is turned back to RGB,
    clipped to [0, 1] and scaled back to `value_range`. The identity at inference.

    >>> x = np.array([[[[255.0, 0.0, 0.0]]]], "float32")
    >>> sorted(RandomHue(factor=(2 / 3, 2 / 3))(x)[0, 0, 0].round(3).tolist())   # red to green or blue
    [0.0, 0.0, 255.0]
    """

    spare_streams = 1

    def __init__(self, factor, value_range=FULL_RANGE, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.value_range = value_range_pair(value_range, sort=False)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        _three_channels(self, x)
        per_image = list(x.type.shape[:-3]) + [1, 1]
        sign = b.select(b.greater(self._draws(b, x), b.scalar(0.5, x)), b.scalar(-1.0, x), b.scalar(1.0, x))
        shift = b.mul(b.mul(sign, self._between(b, x, *self.factor, stream=1)), b.scalar(0.5, x))
        hsv = image.rgb_to_hsv.__wrapped__(b, to_range(b, x, self.value_range, (0, 1)), data_format="channels_last")
        hue = b.add(channel(b, hsv, 0), b.reshape(shift, shape=per_image))
        one = b.scalar(1.0, hue)
        hue = b.select(b.greater(hue, one), b.sub(hue, one), hue)
        hue = b.select(b.less(hue, b.scalar(0.0, hue)), b.add(hue, one), hue)
        rgb = image.hsv_to_rgb.__wrapped__(b, with_channel(b, hsv, 0, hue), data_format="channels_last")
        return to_range(b, clip(b, rgb, 0, 1), (0, 1), self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomColorDegeneration(_Augmentation):
    """Blends each image towards its grayscale in training: x + f (gray - x), f ~ U[lower, upper)
    per image (`factor` a number f in [-1, 1] is (-f, f); negative f oversaturates), clipped to
    `value_range`. RGB images only. The identity at inference.

    >>> x = np.array([[[[255.0, 0.0, 0.0]]]], "float32")
    >>> RandomColorDegeneration(factor=(1.0, 1.0))(x)[0, 0, 0].astype("float64").round(2).tolist()
    [76.22, 76.22, 76.22]
    """

    def __init__(self, factor, value_range=FULL_RANGE, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (-1, 1))
        self.value_range = value_range_pair(value_range)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels != 3:
            raise ValueError(f"Input images must have 3 channels, but received images with {channels} channels.")
        return input_shape

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        _three_channels(self, x)
        blended = b.add(x, b.mul(self._between(b, x, *self.factor), b.sub(grayscale(b, x), x)))
        return clip(b, blended, *self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


JITTER = (("brightness_factor", RandomBrightness), ("contrast_factor", RandomContrast),
          ("saturation_factor", RandomSaturation), ("hue_factor", RandomHue))


class RandomColorJitter(_Augmentation):
    """RandomBrightness, RandomContrast, RandomSaturation and RandomHue in that order, each made
    from its factor when given (None: skipped), all on `value_range`, as Keras 3 chains them.
    Each draws from its own stream of this layer's. The identity at inference.

    >>> x = np.full((1, 2, 2, 3), 100.0, "float32")
    >>> RandomColorJitter(brightness_factor=0.2)(x, training=False)[0, 0, 0].tolist()
    [100.0, 100.0, 100.0]
    """

    spare_streams = 2 * len(JITTER)

    def __init__(self, value_range=FULL_RANGE, brightness_factor=None, contrast_factor=None,
                 saturation_factor=None, hue_factor=None, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range_pair(value_range, sort=False)
        self.brightness_factor, self.contrast_factor = brightness_factor, contrast_factor
        self.saturation_factor, self.hue_factor = saturation_factor, hue_factor
        self._steps = []
        for i, (name, cls) in enumerate(JITTER):
            if getattr(self, name) is not None:
                step = cls(getattr(self, name), value_range=value_range, seed=self.seed, dtype=self.dtype)
                step._key = self._key + 2 * i    # each step's two streams, apart from the others'
                self._steps.append(step)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        for step in self._steps:
            x = step.emit(b, x, training=True)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value_range": self.value_range,
                **{name: getattr(self, name) for name, _ in JITTER}}
