"""`keras.ops.image`'s colour conversions: `rgb_to_grayscale`, `rgb_to_hsv`, `hsv_to_rgb`, as
Keras 3 on JAX computes them (tf.image's luma weights; dm_pix's HSV formulas), on one image or a
batch, channels last or first.

    >>> from nncompile.keras import ops
    >>> red = np.array([[[1.0, 0.0, 0.0]]], "float32")
    >>> ops.image.rgb_to_hsv(red).tolist(), ops.image.rgb_to_grayscale(red).tolist()
    ([[[0.0, 1.0, 1.0]]], [[[0.2989000082015991]]])
"""
from __future__ import annotations

import numpy as np

from nncompile.keras.ops.core import float_dtype, keras_op, shape_of, tensor
from nncompile.keras.ops.image_resize import check_rank, image_format

LUMA = (0.2989, 0.5870, 0.1140)   # tf.image.rgb_to_grayscale's


def _channels_axis(v, data_format) -> int:
    """The channels' axis of rank-3 or rank-4 images `v` (non-negative)."""
    check_rank(v)
    return v.type.rank + (-1 if image_format(data_format) == "channels_last" else -3)


def _planes(b, v, axis: int) -> list:
    """The three channels of `v` along `axis`, each without that axis."""
    if v.type.shape[axis] != 3:
        raise ValueError("Input images must have 3 channels, but received images with "
                         f"{v.type.shape[axis]} channels.")
    shape = [d for i, d in enumerate(v.type.shape) if i != axis]
    return [b.reshape(b.slice(v, starts=[c], ends=[c + 1], axes=[axis], steps=[1]), shape=shape)
            for c in range(3)]


def _stacked(b, planes: list, axis: int):
    """Three planes as the channels of `axis` (the inverse of `_planes`)."""
    return b.concat(*(b.reshape(p, shape=[*p.type.shape[:axis], 1, *p.type.shape[axis:]]) for p in planes),
                    axis=axis)


def _float_images(v) -> None:
    if not v.type.dtype.is_float:
        raise ValueError("Invalid images dtype: expected float dtype. Received: "
                         f"images.dtype={np.dtype(v.type.dtype.numpy).name}")


@keras_op
def rgb_to_grayscale(b, images, data_format=None):
    """Luma 0.2989 R + 0.5870 G + 0.1140 B, one channel, in the images' dtype (integers
    truncated, as Keras casts back); one-channel images come back unchanged.

    >>> rgb_to_grayscale(np.full((1, 1, 3), 100, "uint8")).tolist()
    [[[99]]]
    """
    v = tensor(b, images)
    axis = _channels_axis(v, data_format)
    if v.type.shape[axis] not in (1, 3):
        raise ValueError("Invalid channel size: expected 3 (RGB) or 1 (Grayscale). Received input "
                         f"with shape: images.shape={shape_of(v)}")
    if v.type.shape[axis] == 1:
        return v
    work = tensor(b, v, float_dtype(v))
    weights = np.array(LUMA, work.type.dtype.numpy).reshape([3] + [1] * (v.type.rank - 1 - axis))
    gray = b.reduce_sum(b.mul(work, b.constant(weights)), axes=[axis], keepdims=True)
    return gray if gray.type.dtype == v.type.dtype else b.cast(gray, dtype=v.type.dtype)


@keras_op
def rgb_to_hsv(b, images, data_format=None):
    """Hue, saturation and value in [0, 1] of float RGB images in [0, 1] (hue 0 red, 1/3 green,
    2/3 blue); values within an epsilon of 0 count as 0.

    >>> rgb_to_hsv(np.array([[[0.0, 0.5, 0.5]]], "float32")).tolist()
    [[[0.5, 1.0, 0.5]]]
    """
    v = tensor(b, images)
    axis = _channels_axis(v, data_format)
    _float_images(v)
    eps = b.scalar(float(np.finfo(v.type.dtype.numpy).eps), v)
    v = b.select(b.less(b.abs(v), eps), b.scalar(0.0, v), v)
    red, green, blue = _planes(b, v, axis)
    zero, one = b.scalar(0.0, red), b.scalar(1.0, red)
    value = b.maximum(b.maximum(red, green), blue)
    spread = b.sub(value, b.minimum(b.minimum(red, green), blue))
    positive_value, positive_spread = b.greater(value, zero), b.greater(spread, zero)
    saturation = b.select(positive_value, b.div(spread, b.select(positive_value, value, one)), zero)
    norm = b.div(one, b.mul(b.scalar(6.0, red), b.select(positive_spread, spread, one)))

    def sector(x, y, offset: float):   # norm (x - y) + offset
        return b.add(b.mul(norm, b.sub(x, y)), b.scalar(offset, red))

    hue = b.select(b.equal(value, green), sector(blue, red, 2.0 / 6.0), sector(red, green, 4.0 / 6.0))
    hue = b.select(b.equal(value, red), b.mul(norm, b.sub(green, blue)), hue)
    hue = b.add(b.select(positive_spread, hue, zero), b.cast(b.less(hue, zero), dtype=hue.type.dtype))
    return _stacked(b, [hue, saturation, value], axis)


@keras_op
def hsv_to_rgb(b, images, data_format=None):
    """RGB of float HSV images (the inverse of `rgb_to_hsv`; hue taken modulo 1).

    >>> hsv_to_rgb(np.array([[[0.5, 1.0, 0.5]]], "float32")).tolist()
    [[[0.0, 0.5, 0.5]]]
    """
    v = tensor(b, images)
    axis = _channels_axis(v, data_format)
    _float_images(v)
    hue, saturation, value = _planes(b, v, axis)
    zero, one = b.scalar(0.0, hue), b.scalar(1.0, hue)
    six = b.mul(b.sub(hue, b.floor(hue)), b.scalar(6.0, hue))   # (hue mod 1) * 6

    def ramp(at: float, rising: bool):   # clip(|dh - at| - 1, 0, 1), or clip(2 - |dh - at|, 0, 1)
        distance = b.abs(b.sub(six, b.scalar(at, six)))
        x = b.sub(distance, one) if rising else b.sub(b.scalar(2.0, six), distance)
        return b.minimum(b.maximum(x, zero), one)

    keep = b.sub(one, saturation)
    planes = [b.mul(value, b.add(keep, b.mul(saturation, ramp(at, rising))))
              for at, rising in ((3.0, True), (2.0, False), (4.0, False))]
    return _stacked(b, planes, axis)

