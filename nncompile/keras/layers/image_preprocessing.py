"""Image preprocessing layers that resample: Resizing and CenterCrop (channels last), by
`keras.ops.image.resize` and `crop_images` (see nncompile/keras/ops/image_resize.py), as Keras 3's
layers call its ops."""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, DType, ShapeError, Value
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_data_format,
                                              owner_of, positive_int)
from nncompile.keras.layers.base import Layer, keras_shape
from nncompile.keras.ops import image
from nncompile.keras.ops.image_resize import RESIZE_INTERPOLATIONS as INTERPOLATIONS
from nncompile.keras.ops.image_resize import aspect_crop  # noqa: F401  (RandomCrop's, augmentation.py)


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
    return image.crop_images.__wrapped__(b, x, top, left, target_height=height, target_width=width,
                                         data_format="channels_last")


def resize(b: Builder, x: Value, height: int, width: int, interpolation: str, **options) -> Value:
    """`x` (batch, h, w, channels) resampled to (batch, height, width, channels); `options` are
    `keras.ops.image.resize`'s (crop_to_aspect_ratio, pad_to_aspect_ratio, antialias, ...)."""
    return image.resize.__wrapped__(b, x, (height, width), interpolation, data_format="channels_last", **options)


class Resizing(Layer):
    """Resize images to (`height`, `width`), as Keras 3 on JAX does (`keras.ops.image.resize`):
    `interpolation` "bilinear" (default), "nearest", "bicubic", "lanczos3" or "lanczos5";
    `crop_to_aspect_ratio=True` first crops the largest centred window of the target's aspect
    ratio, `pad_to_aspect_ratio=True` pads with `fill_value` to it; `antialias` smooths when
    downsampling. Integer images are cast to the layer's dtype.

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
                                f"{', '.join(INTERPOLATIONS)}. Received: interpolation={interpolation!r}")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = boolean(crop_to_aspect_ratio, "crop_to_aspect_ratio", owner)
        self.pad_to_aspect_ratio = boolean(pad_to_aspect_ratio, "pad_to_aspect_ratio", owner)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ArgumentError(f"{owner}: Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be "
                                f"set to `True`.")
        self.antialias = boolean(antialias, "antialias", owner)
        if fill_mode != "constant":
            raise ArgumentError(f"{owner}: the `fill_mode` argument must be 'constant', as in "
                                f"Keras 3. Received: fill_mode={fill_mode!r}")
        self.fill_mode, self.fill_value = fill_mode, float(fill_value)
        self.data_format = check_data_format(data_format, owner)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        _image_size(self, inputs)
        return resize(b, _as_float(b, self, inputs), self.height, self.width, self.interpolation,
                      crop_to_aspect_ratio=self.crop_to_aspect_ratio, pad_to_aspect_ratio=self.pad_to_aspect_ratio,
                      antialias=self.antialias, fill_value=self.fill_value)

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
        return resize(b, x, self.height, self.width, "bilinear", crop_to_aspect_ratio=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "data_format": self.data_format}


def _as_float(b: Builder, layer: Layer, x: Value) -> Value:
    """Images in the layer's dtype (Keras casts to its compute dtype)."""
    dtype = DType.from_numpy(layer.dtype)
    return x if x.type.dtype == dtype else b.cast(x, dtype=dtype)
