"""Image augmentation layers of Keras 3: RandomFlip, RandomContrast, RandomBrightness,
RandomRotation, RandomTranslation, RandomZoom, RandomCrop (channels last).

At inference (predict, evaluate, `training=False`) they are the identity and emit nothing. In
training each image of the batch draws its own transform from the counter-based
`random_uniform` op, keyed by the layer's own stream (its `seed`, or a draw from numpy's
generator made when it is created) and drawn from the graph's `seed` input, which the training
step sets anew for every batch -- as Dropout does. The draws follow Keras 3's formulas (the
values differ: another generator):

- RandomFlip: u ~ U[0, 1) per image, flipped where u <= 0.5; "horizontal_and_vertical" uses
  that one draw for both axes (as Keras 3 does: half the images are turned by 180 degrees).
- RandomContrast: c ~ U[1 - lower, 1 + upper) per image, each channel becomes
  (x - mean) * c + mean (mean over height and width), clipped to `value_range`.
- RandomBrightness: d ~ U[lower, upper) * (high - low) per image, added, clipped to
  `value_range`.
- RandomRotation, RandomTranslation, RandomZoom: an angle, a shift or a zoom per image, made
  into the transform Keras 3 makes of it (`_compute_affine_matrix` about the centre, the shift,
  the zoom about the centre) and applied by `ops.image.affine_transform`.

As in Keras, calling one of these layers directly on an array without `training` augments
(their `call` defaults to training=True); inside a model the model's mode decides.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, ShapeError, Value
from nncompile.ir.ops.shape import SLICE_END
from nncompile.keras import tracing
from nncompile.keras.layers.arguments import check_data_format, integer, owner_of, positive_int
from nncompile.keras.layers.base import KerasTensor, Layer, keras_shape
from nncompile.keras.layers.core import seed_input, stream_key
from nncompile.keras.layers.image_preprocessing import aspect_crop, crop, resize
from nncompile.keras.ops import image

HORIZONTAL, VERTICAL = "horizontal", "vertical"
HORIZONTAL_AND_VERTICAL = "horizontal_and_vertical"
FLIP_MODES = (HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL)


class _Augmentation(Layer):
    """What the random image layers share: the seed and stream, the images' checks, and the
    Keras default of augmenting when called directly on arrays."""

    default_training = True
    spare_streams = 0   # the streams a layer draws from beyond its first (their keys follow its own)

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.seed = None if seed is None else integer(seed, "seed", owner)
        self.data_format = check_data_format(data_format, owner)
        self._key = stream_key(self.seed, spare=self.spare_streams)

    def __call__(self, inputs, training: bool | None = None, **kwargs):
        # Keras 3's image preprocessing layers declare `call(data, training=True)`: called on
        # arrays (outside a model) without `training`, they augment; called on symbolic tensors
        # the call is recorded with training=True, which a model's mode overrides when given.
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        eager = not tracing.in_trace() and not any(isinstance(x, KerasTensor) or tracing.is_traced(x) for x in flat)
        if training is None and (eager or all(isinstance(x, KerasTensor) for x in flat)):
            training = self.default_training
        if eager and len(flat) == 1 and np.ndim(flat[0]) == 3:
            # One image: run as a batch of one, as Keras does, so that its height stays known
            # (an eager call's first axis is its batch).
            return super().__call__(np.asarray(flat[0])[None], training, **kwargs)[0]
        return super().__call__(inputs, training, **kwargs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def _images(self, b: Builder, x: Value) -> Value:
        """The images checked (rank 3 or 4) and cast to the layer's dtype, as Keras does."""
        if x.type.rank not in (3, 4):
            raise ShapeError(f"{owner_of(self)}: expected the input image to be rank 3 or 4 "
                             f"(height, width, channels), with or without a batch axis. "
                             f"Received: inputs.shape={keras_shape(x.type)}")
        dtype = DType.from_numpy(self.dtype)
        return x if x.type.dtype == dtype else b.cast(x, dtype=dtype)

    def _draw(self, b: Builder, shape: tuple, dtype: DType = DType.f32, stream: int = 0) -> Value:
        """U[0, 1) of `shape` in `dtype`, from this layer's stream `stream` (its key plus that)."""
        u = b.op("random_uniform", seed_input(b), shape=shape, key=self._key + stream)
        return u if dtype == DType.f32 else b.cast(u, dtype=dtype)

    def _draws(self, b: Builder, x: Value, stream: int = 0) -> Value:
        """U[0, 1) of shape (batch, 1, 1, 1) (an unbatched image: (1, 1, 1)), in x's dtype."""
        shape = (1, 1, 1) if x.type.rank == 3 else (x.type.shape[0], 1, 1, 1)
        return self._draw(b, shape, x.type.dtype, stream)

    def _between(self, b: Builder, x: Value, low: float, high: float, stream: int = 0) -> Value:
        """U[low, high), one draw an image (shape as `_draws`'), as Keras's `uniform(minval, maxval)`."""
        return b.add(b.mul(self._draws(b, x, stream), b.scalar(float(high - low), x)), b.scalar(float(low), x))

    def _known_size(self, x: Value) -> tuple[int, int]:
        """The images' (height, width), which a resampling layer needs known."""
        height, width = x.type.shape[-3:-1]
        if isinstance(height, str) or isinstance(width, str):
            raise ShapeError(f"{owner_of(self)}: the height and width of its input must be known; "
                             f"received input_shape={keras_shape(x.type)}")
        return height, width

    def _clip(self, b: Builder, x: Value, value_range) -> Value:
        low, high = value_range
        # As numpy.clip (and Keras's ops.clip): minimum(maximum(x, low), high).
        return b.minimum(b.maximum(x, b.scalar(float(low), x)), b.scalar(float(high), x))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "seed": self.seed}


def _flip(b: Builder, x: Value, axis: int) -> Value:
    """x reversed along `axis` (whole, which works for an axis of unknown size too)."""
    return b.slice(x, starts=[-1], ends=[-SLICE_END - 1], axes=[axis], steps=[-1])


class RandomFlip(_Augmentation):
    """Flips each image with probability 1/2 in training: `mode` "horizontal" (left-right),
    "vertical" (top-bottom) or "horizontal_and_vertical" (default: both axes at once, with one
    draw, as in Keras 3). The identity at inference; images are cast to the layer's dtype.

    >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> RandomFlip("horizontal")(x, training=False)[0, :, :, 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """

    def __init__(self, mode=HORIZONTAL_AND_VERTICAL, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in FLIP_MODES:
            # Keras 3 accepts any string and then never flips; a typo is refused here instead.
            raise ValueError(f"{owner_of(self)}: the `mode` argument must be one of "
                             f"{', '.join(repr(m) for m in FLIP_MODES)}. Received: mode={mode!r}")
        self.mode = mode

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        flips = b.op("less_equal", self._draws(b, x), b.scalar(0.5, x))
        rank = x.type.rank
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            x = b.select(flips, _flip(b, x, rank - 2), x)
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            x = b.select(flips, _flip(b, x, rank - 3), x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def value_range_pair(value_range, sort: bool = True):
    """Keras's `_set_value_range`: a list or tuple of two numbers, sorted unless `sort` is False
    (layers that keep it as given). Keras 3 takes any value in some layers and fails at the first
    call; refused at once here."""
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise ValueError(f"The `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={value_range}")
    return sorted(value_range) if sort else value_range


def _factor(layer: Layer, factor, bounds: tuple[float, float]) -> tuple:
    """Keras 3's `_set_factor`: a number f in `bounds` -> (max(-|f|, bounds[0]), |f|); a pair ->
    sorted (refused only if its first is above the bounds or its second below)."""
    message = (f"The `factor` argument should be a number (or a list of two numbers) in the "
               f"range [{bounds[0]}, {bounds[1]}]. Received: factor={factor}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(message)
        lower, upper = sorted(factor)
    elif isinstance(factor, (int, float)):
        if factor < bounds[0] or factor > bounds[1]:
            raise ValueError(message)
        factor = abs(factor)
        lower, upper = max(-factor, bounds[0]), factor
    else:
        raise ValueError(message)   # noqa: TRY004 -- Keras 3 raises ValueError
    return lower, upper


class RandomContrast(_Augmentation):
    """Scales each image's contrast in training by c ~ U[1 - lower, 1 + upper), drawn per image:
    every channel becomes (x - mean) * c + mean, its mean over height and width, then the result
    is clipped to `value_range`. `factor` in [0, 1]: a number f is (f, f), a pair (lower, upper).
    The identity at inference.

    >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> RandomContrast(0.5)(x, training=False)[0, :, :, 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        self.value_range = value_range_pair(value_range, sort=False)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        lower, upper = self.factor
        contrast = self._between(b, x, 1.0 - lower, 1.0 + upper)
        rank = x.type.rank
        mean = b.reduce_mean(x, axes=[rank - 3, rank - 2], keepdims=True)
        out = b.add(b.mul(b.sub(x, mean), contrast), mean)
        return self._clip(b, out, self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomBrightness(_Augmentation):
    """Shifts each image's brightness in training by d ~ U[lower, upper) * (high - low), drawn
    per image and added to every pixel, then clips to `value_range` = [low, high] (default
    [0, 255]). `factor` in [-1, 1]: a number f is (-f, f), a pair (lower, upper). The identity
    at inference.

    >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> RandomBrightness(0.5)(x, training=False)[0, :, :, 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _factor(self, factor, (-1, 1))
        self.value_range = value_range_pair(value_range)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training:
            return inputs
        x = self._images(b, inputs)
        lower, upper = self.factor
        low, high = self.value_range
        span = float(high - low)
        delta = self._between(b, x, lower * span, upper * span)
        return self._clip(b, b.add(x, delta), self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class _Affine(_Augmentation):
    """What RandomRotation, RandomTranslation and RandomZoom share: in training each image is
    resampled through a transform drawn for it (`_transforms`: (batch, 8) rows of
    `ops.image.affine_transform`), read with `interpolation` and `fill_mode`."""

    spare_streams = 1   # two draws: this key and the next

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if fill_mode not in AFFINE_FILL_MODES:
            raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one {AFFINE_FILL_MODES}.")
        if interpolation not in image.INTERPOLATIONS:
            raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of one "
                                      f"{image.INTERPOLATIONS}.")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, fill_value

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        height, width = self._known_size(x)
        return image.affine(b, x, self._transforms(b, x, height, width), self.interpolation,
                            self.fill_mode, self.fill_value)

    def _uniform(self, b: Builder, x: Value, low: float, high: float, stream: int = 0) -> Value:
        """U[low, high) of shape (batch, 1), one draw an image ((1, 1) for one image)."""
        u = self._draw(b, (1 if x.type.rank == 3 else x.type.shape[0], 1), x.type.dtype, stream)
        return b.add(b.mul(u, b.scalar(high - low, u)), b.scalar(low, u))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "interpolation": self.interpolation}


AFFINE_FILL_MODES = ("reflect", "wrap", "constant", "nearest")


def _rows(b: Builder, columns: list) -> Value:
    """(batch, 8) transforms from 8 columns: (batch, 1) values or Python numbers."""
    like = next(c for c in columns if isinstance(c, Value))
    return b.concat(*[c if isinstance(c, Value) else b.broadcast(b.scalar(float(c), like), shape=like.type.shape)
                      for c in columns], axis=1)


class RandomRotation(_Affine):
    """Rotates each image in training by an angle drawn from U[lower, upper) * 360 degrees
    (counter-clockwise for positive angles), about its centre, as Keras 3 does: `factor` a
    number f in [-1, 1] is (-f, f), a pair (lower, upper). Pixels from outside the image are
    filled by `fill_mode` ("reflect", "wrap", "constant" with `fill_value`, "nearest") and read
    with `interpolation` ("bilinear" or "nearest"). The identity at inference.

    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> RandomRotation((0.25, 0.25), interpolation="nearest")(x)[0, :, :, 0].tolist()    # a quarter turn
    [[2.0, 5.0, 8.0], [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]]
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _factor(self, factor, (-1, 1))

    def _transforms(self, b: Builder, x: Value, height: int, width: int) -> Value:
        lower, upper = self.factor
        angle = b.mul(self._uniform(b, x, lower * 360.0, upper * 360.0), b.scalar(math.pi / 180.0, x))
        cos, sin = b.cos(angle), b.sin(angle)
        cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
        a2 = b.sub(b.sub(b.scalar(cx, cos), b.mul(b.scalar(cx, cos), cos)), b.mul(b.scalar(cy, cos), b.neg(sin)))
        b2 = b.sub(b.sub(b.scalar(cy, cos), b.mul(b.scalar(cx, cos), sin)), b.mul(b.scalar(cy, cos), cos))
        return _rows(b, [cos, b.neg(sin), a2, sin, cos, b2, 0, 0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def _axis_factor(layer: Layer, factor, name: str, lowest: float, open_below: bool) -> tuple:
    """RandomTranslation's and RandomZoom's `_set_factor`: a number f is (-|f|, |f|), a pair is
    sorted; each number must lie in [lowest, 1] ((lowest, 1] when `open_below`)."""
    message = (f"The `{'factor' if not open_below else 'height_factor` and `width_factor'}` argument"
               f"{'s' if open_below else ''} should be a number (or a list of two numbers) in the range "
               f"{'(' if open_below else '['}{lowest}, 1.0]. ")
    if isinstance(factor, (tuple, list)) and len(factor) == 2:
        values = list(factor)
    elif isinstance(factor, (int, float)) and not isinstance(factor, bool):
        values = [factor]
    else:
        raise ValueError(message + f"Received: {name}={factor}")
    for value in values:
        if value > 1.0 or value < lowest or (open_below and value == lowest):
            raise ValueError(message + f"Received: input_number={value}")
    return tuple(sorted(values)) if len(values) == 2 else (-abs(values[0]), abs(values[0]))


class RandomTranslation(_Affine):
    """Shifts each image in training by dy ~ U[lower, upper) * height rows and dx ~ U[lower,
    upper) * width columns, drawn per image: `height_factor` and `width_factor` each a number f
    in [-1, 1] (the range (-f, f)) or a pair. `fill_mode` and `interpolation` as RandomRotation's.
    The identity at inference.

    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> RandomTranslation(0, (1 / 3, 1 / 3), fill_mode="constant")(x)[0, :, :, 0].tolist()
    [[0.0, 0.0, 1.0], [0.0, 3.0, 4.0], [0.0, 6.0, 7.0]]
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = _axis_factor(self, height_factor, "height_factor", -1.0, False)
        self._width_range = _axis_factor(self, width_factor, "width_factor", -1.0, False)

    def _transforms(self, b: Builder, x: Value, height: int, width: int) -> Value:
        dy = b.mul(self._uniform(b, x, *self._height_range), b.scalar(float(height), x))
        dx = b.mul(self._uniform(b, x, *self._width_range, stream=1), b.scalar(float(width), x))
        return _rows(b, [1, 0, b.neg(dx), 0, 1, b.neg(dy), 0, 0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomZoom(_Affine):
    """Zooms each image in training about its centre: its rows are read zy ~ 1 + U[lower, upper)
    apart and its columns zx apart (zx = zy unless `width_factor` is given), drawn per image, so
    a negative factor zooms in: `height_factor` and `width_factor` each a number f in (-1, 1]
    (the range (-f, f)) or a pair. `fill_mode` and `interpolation` as RandomRotation's. The
    identity at inference.

    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> RandomZoom((1.0, 1.0), fill_mode="constant")(x)[0, :, :, 0].tolist()    # out by 2
    [[0.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]]
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = _axis_factor(self, height_factor, "height_factor", -1.0, True)
        self._width_range = None if width_factor is None else \
            _axis_factor(self, width_factor, "width_factor", -1.0, True)

    def _transforms(self, b: Builder, x: Value, height: int, width: int) -> Value:
        zy = self._uniform(b, x, *(1.0 + f for f in self._height_range))
        zx = zy if self._width_range is None else self._uniform(b, x, *(1.0 + f for f in self._width_range),
                                                                 stream=1)
        one = b.scalar(1.0, zy)
        x_offset = b.mul(b.scalar((width - 1.0) / 2.0, zx), b.sub(one, zx))
        y_offset = b.mul(b.scalar((height - 1.0) / 2.0, zy), b.sub(one, zy))
        return _rows(b, [zx, 0, x_offset, 0, zy, y_offset, 0, 0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomCrop(_Augmentation):
    """Crops a (`height`, `width`) window in training, at an offset drawn once per batch (as
    Keras 3 draws it) when the images are larger on both sides; otherwise the window (what of it
    is inside the image) starts where the largest centred window of the target's aspect ratio
    would, and is resized (bilinear) to (`height`, `width`), as Keras 3 does. At inference, that
    largest centred window resized, as Keras 3 documents (its 3.15 code returns the images
    uncropped there, against its own output shape).

    >>> x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    >>> RandomCrop(2, 2)(x, training=False)[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """

    spare_streams = 1   # the row offset's key and the next

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        owner = owner_of(self)
        self.height, self.width = positive_int(height, "height", owner), positive_int(width, "width", owner)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-3], self.height, self.width, input_shape[-1])

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        height, width = x.type.shape[-3:-1]
        if isinstance(height, str) or isinstance(width, str):
            raise ValueError("RandomCrop requires the input to have a fully defined height and width. "
                             f"Received: images.shape={keras_shape(x.type)}")
        if training and height > self.height and width > self.width:
            rank = x.type.rank
            x = self._window(b, x, rank - 3, height - self.height, self.height, 0)
            return self._window(b, x, rank - 2, width - self.width, self.width, 1)
        single = x.type.rank == 3
        batch = b.reshape(x, shape=[1, height, width, x.type.shape[-1]]) if single else x
        top, left, window_height, window_width = aspect_crop(height, width, self.height, self.width)
        if training:   # Keras 3 crops the target's size (what of it is inside) from there
            window_height, window_width = min(self.height, height - top), min(self.width, width - left)
        out = resize(b, crop(b, batch, top, left, window_height, window_width), self.height, self.width,
                     "bilinear")
        return b.reshape(out, shape=[self.height, self.width, x.type.shape[-1]]) if single else out

    def _window(self, b: Builder, x: Value, axis: int, spare: int, size: int, stream: int) -> Value:
        """`size` entries of `axis` from an offset drawn in [0, spare] for the whole batch."""
        u = self._draw(b, (1,), stream=stream)
        start = b.cast(b.mul(u, b.scalar(float(spare + 1), u)), dtype=DType.i32)
        index = b.add(start, b.constant(np.arange(size, dtype=np.int32)))
        return b.gather(x, index, axis=axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
