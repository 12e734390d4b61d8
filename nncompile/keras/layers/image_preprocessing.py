"""Image preprocessing layers that resample: Resizing and CenterCrop (channels last).

A resize is separable: each output row mixes input rows with fixed weights, and so does each
column. The weights are the interpolation kernel's (triangle for bilinear, Keys cubic for
bicubic, a pick for nearest) at the output pixels' centres, computed once as two matrices, and
the layer emits two matmuls with them, so it compiles, fuses and differentiates as any matmul.
The weights follow `jax.image.resize` without antialiasing, which Keras 3 calls on JAX.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, ShapeError, Value
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_data_format,
                                              owner_of, positive_int)
from nncompile.keras.layers.base import Layer, keras_shape

INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


def _triangle(distance: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - distance)


def _keys_cubic(distance: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (as jax.image's "cubic")."""
    near = ((1.5 * distance - 2.5) * distance) * distance + 1.0
    far = ((-0.5 * distance + 2.5) * distance - 4.0) * distance + 2.0
    return np.where(distance >= 2.0, 0.0, np.where(distance >= 1.0, far, near))


_KERNELS = {"bilinear": _triangle, "bicubic": _keys_cubic}


def resample_matrix(size: int, out: int, interpolation: str) -> np.ndarray:
    """(out, size) weights: output pixel i is sum_j weights[i, j] * input pixel j, the input
    and output spanning the same extent (pixel centres at (i + 0.5) * size / out - 0.5)."""
    if interpolation == "nearest":
        picks = np.floor((np.arange(out, dtype=np.float32) + 0.5) * np.float32(size / out))
        return np.eye(size)[np.minimum(picks.astype(np.int64), size - 1)]
    centres = (np.arange(out) + 0.5) * (size / out) - 0.5
    weights = _KERNELS[interpolation](np.abs(centres[:, None] - np.arange(size)[None, :]))
    totals = weights.sum(axis=1, keepdims=True)
    # As jax: rows renormalized, so that at the borders the missing neighbours' weight goes to
    # the pixels that exist
    return np.where(np.abs(totals) > 1000 * np.finfo(np.float32).eps,
                    weights / np.where(totals != 0, totals, 1), 0.0)


def aspect_crop(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """Keras's centred crop to the target's aspect ratio: (top, left, crop height, crop width)."""
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    return (int(float(height - crop_height) / 2), int(float(width - crop_width) / 2),
            crop_height, crop_width)


def _image_size(layer: Layer, x: Value) -> tuple[int, int]:
    """The (height, width) of a batch of channels-last images, which must be known."""
    if x.type.rank != 4:
        raise ShapeError(f"{owner_of(layer)}: expects a batch of images (batch, height, width, "
                         f"channels), rank 4. Received: input_shape={keras_shape(x.type)}")
    height, width = x.type.shape[1:3]
    if isinstance(height, str) or isinstance(width, str):
        raise ShapeError(f"{owner_of(layer)}: the height and width of its input must be known; "
                         f"received input_shape={keras_shape(x.type)}")
    return height, width


def crop(b: Builder, x: Value, top: int, left: int, height: int, width: int) -> Value:
    """The window of `x` (batch, h, w, channels) at (top, left) of size (height, width)."""
    return b.slice(x, starts=[top, left], ends=[top + height, left + width], axes=[1, 2],
                   steps=[1, 1])


def resize(b: Builder, x: Value, height: int, width: int, interpolation: str) -> Value:
    """`x` (batch, h, w, channels) resampled to (batch, height, width, channels): rows by one
    matmul, columns by another (an axis that keeps its size is left alone)."""
    batch, rows, columns, channels = x.type.shape
    dtype = x.type.dtype.numpy
    if rows != height:
        weights = b.constant(resample_matrix(rows, height, interpolation).astype(dtype))
        flat = b.reshape(x, shape=[batch, rows, columns * channels])
        x = b.reshape(b.matmul(weights, flat), shape=[batch, height, columns, channels])
    if columns != width:
        weights = b.constant(resample_matrix(columns, width, interpolation).astype(dtype))
        x = b.matmul(weights, x)   # broadcast over (batch, height): (width, w) @ (w, channels)
    return x


class Resizing(Layer):
    """Resize images to (`height`, `width`), as Keras 3 on JAX does: `interpolation` "bilinear"
    (default), "nearest" or "bicubic"; `crop_to_aspect_ratio=True` first crops the largest
    centred window of the target's aspect ratio. Integer images are cast to the layer's dtype.

    >>> Resizing(2, 2)(np.arange(16, dtype="float32").reshape(1, 4, 4, 1))[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.height = positive_int(height, "height", owner)
        self.width = positive_int(width, "width", owner)
        if interpolation not in INTERPOLATIONS:
            raise ArgumentError(f"{owner}: the `interpolation` argument must be one of "
                                f"{', '.join(INTERPOLATIONS)} (nncompile implements these of "
                                f"Keras's). Received: interpolation={interpolation!r}")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = boolean(crop_to_aspect_ratio, "crop_to_aspect_ratio", owner)
        for name, value, default in (("pad_to_aspect_ratio", pad_to_aspect_ratio, False),
                                     ("antialias", antialias, False)):
            if boolean(value, name, owner) != default:
                raise ArgumentError(f"{owner}: `{name}=True` is not implemented by nncompile")
        if fill_mode != "constant":
            raise ArgumentError(f"{owner}: the `fill_mode` argument must be 'constant', as in "
                                f"Keras 3. Received: fill_mode={fill_mode!r}")
        self.fill_mode, self.fill_value = fill_mode, float(fill_value)
        self.pad_to_aspect_ratio, self.antialias = False, False
        self.data_format = check_data_format(data_format, owner)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        height, width = _image_size(self, inputs)
        x = _as_float(b, self, inputs)
        if self.crop_to_aspect_ratio:
            x = crop(b, x, *aspect_crop(height, width, self.height, self.width))
        return resize(b, x, self.height, self.width, self.interpolation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias,
                "data_format": self.data_format}


class CenterCrop(Layer):
    """The centred (`height`, `width`) window of each image, as Keras 3: an image smaller than
    that in either side is instead cropped to the target's aspect ratio and resized (bilinear).

    >>> CenterCrop(2, 2)(np.arange(16, dtype="float32").reshape(1, 4, 4, 1))[0, :, :, 0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
    """

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.height = positive_int(height, "height", owner)
        self.width = positive_int(width, "width", owner)
        self.data_format = check_data_format(data_format, owner)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        height, width = _image_size(self, inputs)
        x = _as_float(b, self, inputs)
        if height >= self.height and width >= self.width:
            return crop(b, x, (height - self.height) // 2, (width - self.width) // 2,
                        self.height, self.width)
        x = crop(b, x, *aspect_crop(height, width, self.height, self.width))
        return resize(b, x, self.height, self.width, "bilinear")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "data_format": self.data_format}


def _as_float(b: Builder, layer: Layer, x: Value) -> Value:
    """Images in the layer's dtype (Keras casts to its compute dtype)."""
    dtype = DType.from_numpy(layer.dtype)
    return x if x.type.dtype == dtype else b.cast(x, dtype=dtype)
