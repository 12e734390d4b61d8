"""`keras.ops.image`'s geometry: `resize`, `scale_and_translate`, `crop_images`, `pad_images`,
and the layout every image op shares (one image, rank 3, or a batch, rank 4, in either data
format, worked on as a batch channels last).

A resize is separable: each output row mixes input rows with fixed weights, and so does each
column. The weights are `jax.image.scale_and_translate`'s, which Keras 3 calls on JAX (its
`resize` is the case scale = out / in, translation 0): the kernel (triangle for bilinear, Keys
cubic for bicubic, Lanczos) at the output pixels' centres mapped into the input, widened by the
scale when downsampling with `antialias`, each row divided by its total. They are computed once
in numpy and applied as matmuls, so a resize compiles, fuses and differentiates as any matmul.
"nearest" picks input pixel floor((i + 0.5) in / out) by a gather, as jax does.

    >>> from nncompile.keras import ops
    >>> image = np.arange(16, dtype="float32").reshape(4, 4, 1)
    >>> ops.image.resize(image, (2, 2))[..., 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    >>> ops.image.crop_images(image, 1, 1, target_height=2, target_width=2)[..., 0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import DType
from nncompile.keras import backend
from nncompile.keras.ops.arrays import saturate_cast
from nncompile.keras.ops.core import keras_op, shape_of, tensor

RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic")
SCALE_AND_TRANSLATE_METHODS = {"linear", "bilinear", "trilinear", "cubic", "bicubic", "tricubic",
                               "lanczos3", "lanczos5"}


def image_format(data_format) -> str:
    """`data_format`, None meaning `keras.config.image_data_format()`, checked as Keras does."""
    data_format = backend.image_data_format() if data_format is None else data_format
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("The `data_format` argument must be one of {'channels_first', "
                         f"'channels_last'}}. Received: data_format={data_format}")
    return data_format


def check_rank(v, name: str = "images") -> None:
    """Keras's error for images that are neither one image (rank 3) nor a batch (rank 4)."""
    if v.type.rank not in (3, 4):
        raise ValueError("Invalid images rank: expected rank 3 (single image) or rank 4 (batch of "
                         f"images). Received input with shape: {name}.shape={shape_of(v)}")


class Images:
    """Images of rank 3 or 4 in either data format as a batch channels last (`nhwc`), and a
    result of that layout (any height, width and channels) back in the caller's."""

    def __init__(self, b, v, data_format):
        check_rank(v)
        self.b, self.format = b, image_format(data_format)
        self.single, self.first = v.type.rank == 3, self.format == "channels_first"
        if self.single:
            v = b.reshape(v, shape=[1, *v.type.shape])
        self.nhwc = b.transpose(v, perm=[0, 2, 3, 1]) if self.first else v

    @property
    def channel_axis(self) -> int:
        """The channels' axis of the caller's layout, counted from the end."""
        return -3 if self.first else -1

    def back(self, out):
        b = self.b
        if self.first:
            out = b.transpose(out, perm=[0, 3, 1, 2])
        return b.reshape(out, shape=list(out.type.shape[1:])) if self.single else out


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - x)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (jax.image's "cubic")."""
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x >= 2.0, 0.0, np.where(x >= 1.0, far, near))


def _lanczos(radius: float):
    def kernel(x: np.ndarray) -> np.ndarray:
        y = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius)
        out = np.where(x > 1e-3, y / np.where(x != 0, np.pi ** 2 * x ** 2, 1), 1)
        return np.where(x > radius, 0.0, out)
    return kernel


_KERNELS = {"bilinear": _triangle, "linear": _triangle, "trilinear": _triangle,
            "bicubic": _keys_cubic, "cubic": _keys_cubic, "tricubic": _keys_cubic,
            "lanczos3": _lanczos(3.0), "lanczos5": _lanczos(5.0)}


def resample_matrix(size: int, out: int, method: str, antialias: bool, scale: float | None = None,
                    translation: float = 0.0) -> np.ndarray:
    """(out, size) float32 weights: output pixel i is sum_j weights[i, j] * input pixel j, its
    centre (i + 0.5 - translation) / scale - 0.5 in the input (scale defaults to out / size).
    Computed in float64 (jax computes them in float32: the weights agree to a float32 ulp)."""
    inv_scale = 1.0 / (out / size if scale is None else float(scale))
    kernel_scale = max(inv_scale, 1.0) if antialias else 1.0
    centres = (np.arange(out) + 0.5 - float(translation)) * inv_scale - 0.5
    with np.errstate(all="ignore"):
        weights = _KERNELS[method](np.abs(centres[:, None] - np.arange(size)) / kernel_scale)
    totals = weights.sum(axis=1, keepdims=True)
    # As jax: rows renormalized, so that at the borders the missing neighbours' weight goes to the
    # pixels that exist; a centre outside the input reads nothing
    weights = np.where(np.abs(totals) > 1000 * np.finfo(np.float32).eps,
                       weights / np.where(totals != 0, totals, 1), 0.0)
    inside = (centres >= -0.5) & (centres <= size - 0.5)
    return np.where(inside[:, None], weights, 0.0).astype(np.float32)


def resample_axis(b, v, axis: int, weights: np.ndarray):
    """`v` with `axis` replaced by `weights` (out, size) times it: one matmul over the trailing
    axes merged (the leading ones broadcast, so a symbolic batch stays one)."""
    shape = list(v.type.shape)
    out = weights.shape[0]
    tail = int(np.prod(shape[axis + 1:], dtype=np.int64))
    flat = b.reshape(v, shape=[*shape[:axis], shape[axis], tail])
    mixed = b.matmul(b.constant(weights.astype(v.type.dtype.numpy)), flat)
    return b.reshape(mixed, shape=[*shape[:axis], out, *shape[axis + 1:]])


def nearest_axis(b, v, axis: int, out: int):
    """`v` with `axis` resized to `out` by picking input floor((i + 0.5) size / out) (float32
    arithmetic, as jax's "nearest")."""
    size = v.type.shape[axis]
    picks = np.floor((np.arange(out, dtype=np.float32) + np.float32(0.5)) * np.float32(size) / np.float32(out))
    return b.gather(v, b.constant(np.minimum(picks, size - 1).astype(np.int32)), axis=axis)


def aspect_crop(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """Keras's centred crop to the target's aspect ratio: (top, left, crop height, crop width)."""
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    return (int(float(height - crop_height) / 2), int(float(width - crop_width) / 2),
            crop_height, crop_width)


def _aspect_pad(b, x, target_height: int, target_width: int, fill_value):
    """Keras's `pad_to_aspect_ratio`: NHWC `x` padded evenly with `fill_value` on the short side
    (the same number of rows, or columns, on both sides)."""
    _, height, width, _ = x.type.shape
    rows = int(float(max(height, int(float(width * target_height) / target_width)) - height) / 2)
    columns = int(float(max(width, int(float(height * target_width) / target_height)) - width) / 2)
    pads = [0, 0, rows, rows, 0, 0, 0, 0] if rows > 0 else [0, 0, 0, 0, columns, columns, 0, 0]
    return b.pad(x, pads=pads, value=float(fill_value)) if rows > 0 or columns > 0 else x


def _check_resize(size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, fill_mode) -> None:
    if len(size) != 2:
        raise ValueError(f"Expected `size` to be a tuple of 2 integers. Received: size={size}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"`size` must have positive height and width. Received: size={size}")
    if pad_to_aspect_ratio and crop_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`.")
    if interpolation not in RESIZE_INTERPOLATIONS:
        raise ValueError("Invalid value for argument `interpolation`. Expected of one "
                         f"{RESIZE_INTERPOLATIONS}. Received: interpolation={interpolation}")
    if fill_mode != "constant":
        raise ValueError("Invalid value for argument `fill_mode`. Only `'constant'` is supported. "
                         f"Received: fill_mode={fill_mode}")


@keras_op
def resize(b, images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False,
           pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, data_format=None):
    """`images` resized to `size` = (height, width), as Keras 3 on JAX: `interpolation`
    "bilinear", "nearest", "bicubic", "lanczos3" or "lanczos5"; `antialias` widens the kernel
    when downsampling; `crop_to_aspect_ratio` first takes the largest centred window of the
    target's aspect ratio, `pad_to_aspect_ratio` pads the short side with `fill_value`. Integer
    images are rounded (half to even) and clipped back to their dtype. See the module's docstring.
    """
    _check_resize(size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, fill_mode)
    layout = Images(b, tensor(b, images), data_format)
    x, dtype = layout.nhwc, layout.nhwc.type.dtype
    height, width = (int(s) for s in size)
    if crop_to_aspect_ratio:
        top, left, rows, columns = aspect_crop(*x.type.shape[1:3], height, width)
        x = b.slice(x, starts=[top, left], ends=[top + rows, left + columns], axes=[1, 2], steps=[1, 1])
    if interpolation == "nearest":   # a pick: integers stay integers
        if pad_to_aspect_ratio:
            x = _aspect_pad(b, x, height, width, fill_value)
        for axis, out in ((1, height), (2, width)):
            x = x if x.type.shape[axis] == out else nearest_axis(b, x, axis, out)
        return layout.back(x)
    x = x if dtype.is_float else b.cast(x, dtype=DType.f32)
    if pad_to_aspect_ratio:
        x = _aspect_pad(b, x, height, width, fill_value)
    for axis, out in ((1, height), (2, width)):   # jax leaves an axis of unchanged size alone
        if x.type.shape[axis] != out:
            x = resample_axis(b, x, axis, resample_matrix(x.type.shape[axis], out, interpolation, antialias))
    if not dtype.is_float:
        x = saturate_cast.__wrapped__(b, b.round(x), dtype)
    return layout.back(x)


@keras_op
def scale_and_translate(b, images, output_shape, scale, translation, spatial_dims, method,
                        antialias=True):
    """`jax.image.scale_and_translate`: each axis d of `spatial_dims` resampled to
    `output_shape[d]`, output pixel centre c (half-integers) reading the input at
    (c - translation) / scale, zero outside; integers become floats. `scale` and `translation`
    are numbers known when the op is built (they make the weights).

    >>> from nncompile.keras import ops
    >>> image = np.arange(9, dtype="float32").reshape(3, 3)
    >>> ops.image.scale_and_translate(image, (3, 5), [1.0, 2.0], [0.0, -0.5], (0, 1),
    ...                               "linear")[0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    if method not in SCALE_AND_TRANSLATE_METHODS:
        raise ValueError("Invalid value for argument `method`. Expected of one "
                         f"{SCALE_AND_TRANSLATE_METHODS}. Received: method={method}")
    x = tensor(b, images)
    x = x if x.type.dtype.is_float else b.cast(x, dtype=DType.f32)
    if len(output_shape) != x.type.rank:
        raise ValueError("shape must have length equal to the number of dimensions of x;  "
                         f"{tuple(output_shape)} vs {shape_of(x)}")
    scales = np.asarray(scale, np.float32).reshape(-1)
    translations = np.asarray(translation, np.float32).reshape(-1)
    for i, axis in enumerate(spatial_dims):
        axis = axis % x.type.rank
        weights = resample_matrix(x.type.shape[axis], int(output_shape[axis]), method, antialias,
                                  scale=scales[i], translation=translations[i])
        x = resample_axis(b, x, axis, weights)
    return x


def _sides(before, after, target, size: int, names: tuple[str, str, str], kind: str) -> tuple[int, int]:
    """The (before, after) of one axis of `pad_images` / `crop_images` from the two given of
    before, after and target, each checked to be >= 0 as Keras checks them."""
    given = dict(zip(names, (before, after, target)))
    if list(given.values()).count(None) != 1:
        raise ValueError(f"Must specify exactly two of {', '.join(names)}. Received: "
                         + ", ".join(f"{n}={v}" for n, v in given.items()))
    for name, value in given.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0. Received: {name}={value}")
    grow = 1 if kind == "pad" else -1   # a pad adds the sides to the size, a crop removes them
    if before is None:
        before = grow * (target - size) - after
    if after is None:
        after = grow * (target - size) - before
    for name, value in zip(names, (before, after)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0. Received: {name}={value}")
    if kind == "crop" and size - before - after < 0:
        raise ValueError(f"{names[2]} must be >= 0. Received: {names[2]}={size - before - after}")
    return int(before), int(after)


def _edges(layout: Images, rows: tuple, columns: tuple, kind: str, word: str) -> tuple[int, ...]:
    """(top, bottom, left, right) of a pad or crop from its (before, after, target) of the rows
    and of the columns."""
    _, height, width, _ = layout.nhwc.type.shape
    top, bottom = _sides(*rows, height, (f"top_{word}", f"bottom_{word}", "target_height"), kind)
    left, right = _sides(*columns, width, (f"left_{word}", f"right_{word}", "target_width"), kind)
    return top, bottom, left, right


@keras_op
def pad_images(b, images, top_padding=None, left_padding=None, bottom_padding=None,
               right_padding=None, target_height=None, target_width=None, data_format=None):
    """`images` padded with zeros: two of top_padding, bottom_padding and target_height give the
    rows, two of left_padding, right_padding and target_width the columns.

    >>> pad_images(np.ones((1, 2, 1)), 1, 0, 0, 1)[..., 0].tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    """
    layout = Images(b, tensor(b, images), data_format)
    top, bottom, left, right = _edges(layout, (top_padding, bottom_padding, target_height),
                                      (left_padding, right_padding, target_width), "pad", "padding")
    return layout.back(b.pad(layout.nhwc, pads=[0, 0, top, bottom, left, right, 0, 0], value=0.0))


@keras_op
def crop_images(b, images, top_cropping=None, left_cropping=None, bottom_cropping=None,
                right_cropping=None, target_height=None, target_width=None, data_format=None):
    """The window of `images` two of top_cropping, bottom_cropping and target_height give (rows)
    and two of left_cropping, right_cropping and target_width (columns).

    >>> crop_images(np.arange(9.0).reshape(3, 3, 1), 0, 1, 1, 0)[..., 0].tolist()
    [[1.0, 2.0], [4.0, 5.0]]
    """
    layout = Images(b, tensor(b, images), data_format)
    _, height, width, _ = layout.nhwc.type.shape
    top, bottom, left, right = _edges(layout, (top_cropping, bottom_cropping, target_height),
                                      (left_cropping, right_cropping, target_width), "crop", "cropping")
    return layout.back(b.slice(layout.nhwc, starts=[top, left], ends=[height - bottom, width - right],
                               axes=[1, 2], steps=[1, 1]))
