"""`keras.ops.image`: `affine_transform`, the resampling that RandomRotation, RandomTranslation
and RandomZoom apply.

A transform `[a0, a1, a2, b0, b1, b2, c0, c1]` maps the output point (x, y) to the input point
((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, as Keras documents it;
the input is read there as `jax.scipy.ndimage.map_coordinates` reads it, which Keras's JAX
backend calls: "nearest" rounds half away from zero, "bilinear" weighs the four neighbours
(lower-left first, rows outer); a neighbour outside the image is the `fill_value` ("constant"),
the nearest edge pixel ("nearest"), the image repeated ("wrap"), mirrored about the edge pixels
("mirror": d c b | a b c d | c b a) or about the edges ("reflect": c b a | a b c d | d c b).
Keras's layers write c0 = c1 = 0; for other values its JAX backend adds c0 and c1 times the
channel's index to the coordinates instead of dividing, and nncompile divides, as documented.

Each image draws its pixels from its own transform, so a batch is a loop (`scan`) over its
images; within one image the neighbours are gathers from the image's (height * width, channels)
rows.

    >>> from nncompile.keras import ops
    >>> image = np.arange(9, dtype="float32").reshape(3, 3, 1)
    >>> shift_left = [1, 0, 1, 0, 1, 0, 0, 0]          # x' = x + 1
    >>> ops.image.affine_transform(image, shift_left)[..., 0].tolist()
    [[1.0, 2.0, 0.0], [4.0, 5.0, 0.0], [7.0, 8.0, 0.0]]
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.ir.ops.scan import slice_type
from nncompile.keras import backend
from nncompile.keras.ops.core import keras_op, tensor

INTERPOLATIONS = ("nearest", "bilinear")
FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")


@keras_op
def affine_transform(b, images, transform, interpolation="bilinear", fill_mode="constant",
                     fill_value=0, data_format=None):
    """Resample `images` (one image, rank 3, or a batch, rank 4) through `transform` (8 numbers,
    or one row of 8 per image): see the module's docstring."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError("Invalid value for argument `interpolation`. Expected of one "
                         f"{set(INTERPOLATIONS)}. Received: interpolation={interpolation}")
    if fill_mode not in FILL_MODES:
        raise ValueError("Invalid value for argument `fill_mode`. Expected of one "
                         f"{set(FILL_MODES)}. Received: fill_mode={fill_mode}")
    x = tensor(b, images)
    t = tensor(b, transform, x.type.dtype if x.type.dtype.is_float else "float32")
    if x.type.rank not in (3, 4):
        raise ValueError("Invalid images rank: expected rank 3 (single image) or rank 4 (batch of "
                         f"images). Received input with shape: images.shape={tuple(x.type.shape)}")
    if t.type.rank not in (1, 2) or t.type.shape[-1] != 8:
        raise ValueError("Invalid transform: expected 8 numbers (a single transform) or rank 2 "
                         "(a batch of transforms, 8 each). Received input with shape: "
                         f"transform.shape={tuple(t.type.shape)}")
    images_count, transforms_count = x.type.shape[0], t.type.shape[0]
    if x.type.rank == 4 and t.type.rank == 2 and isinstance(images_count, int) \
            and isinstance(transforms_count, int) and images_count != transforms_count:
        raise ValueError(f"Invalid transform: {transforms_count} transforms for a batch of {images_count} "
                         f"images; give one per image (shape ({images_count}, 8)) or one for all (8 numbers)")
    data_format = backend.image_data_format() if data_format is None else data_format
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("The `data_format` argument must be one of {'channels_first', "
                         f"'channels_last'}}. Received: data_format={data_format}")
    return affine(b, x, t, interpolation, fill_mode, fill_value, data_format)


def affine(b: Builder, images: Value, transforms: Value, interpolation: str, fill_mode: str,
           fill_value: float, data_format: str = "channels_last") -> Value:
    """`affine_transform` of checked values: images of rank 3 or 4, transforms (8,) or (n, 8)."""
    first = data_format == "channels_first"
    if first:
        images = b.transpose(images, perm=[0, 2, 3, 1] if images.type.rank == 4 else [1, 2, 0])
    dtype = images.type.dtype
    work = images if dtype.is_float else b.cast(images, dtype=DType.f32)
    if transforms.type.dtype != work.type.dtype:
        transforms = b.cast(transforms, dtype=work.type.dtype)
    if images.type.rank == 3:
        single = transforms if transforms.type.rank == 1 else b.reshape(transforms, shape=[8])
        out = _resample(b, work, single, interpolation, fill_mode, fill_value)
    else:
        if transforms.type.rank == 1:
            transforms = b.broadcast(b.reshape(transforms, shape=[1, 8]),
                                     shape=[images.type.shape[0], 8])
        out = _each_image(b, work, transforms, interpolation, fill_mode, fill_value)
    if not dtype.is_float:   # integers rounded as map_coordinates rounds them; bools: nonzero
        out = b.cast(out if dtype == DType.bool else _round_half_away(b, out), dtype=dtype)
    if first:
        out = b.transpose(out, perm=[0, 3, 1, 2] if out.type.rank == 4 else [2, 0, 1])
    return out


def _each_image(b: Builder, images: Value, transforms: Value, interpolation: str, fill_mode: str,
                fill_value: float) -> Value:
    """A loop over the batch: each image resampled through its own transform."""
    body = Builder(name="affine_image")
    image = body.input("image", slice_type(images.type, 0))
    transform = body.input("transform", TensorType(transforms.type.dtype, (8,)))
    graph = body.finish([_resample(body, image, transform, interpolation, fill_mode, fill_value)])
    out = b.op("scan", images, transforms, body=graph, num_carry=0, num_scanned=2, axis=0,
               reverse=False)
    return out[0] if isinstance(out, tuple) else out


def _resample(b: Builder, image: Value, t: Value, interpolation: str, fill_mode: str,
              fill_value: float) -> Value:
    """One image (height, width, channels) read at the points the transform `t` (8,) maps its
    pixels to."""
    height, width, channels = image.type.shape
    dtype = image.type.dtype.numpy
    rows, cols = np.meshgrid(np.arange(height, dtype=dtype), np.arange(width, dtype=dtype), indexing="ij")
    y, x = b.constant(rows), b.constant(cols)
    a0, a1, a2, b0, b1, b2, c0, c1 = (b.slice(t, starts=[i], ends=[i + 1], axes=[0], steps=[1])
                                      for i in range(8))
    k = b.add(b.add(b.mul(c0, x), b.mul(c1, y)), b.scalar(1.0, x))
    at_x = b.div(b.add(b.add(b.mul(a0, x), b.mul(a1, y)), a2), k)
    at_y = b.div(b.add(b.add(b.mul(b0, x), b.mul(b1, y)), b2), k)
    taps = _nearest if interpolation == "nearest" else _linear
    pixels = b.reshape(image, shape=[height * width, channels])
    fill = b.scalar(float(fill_value), image)
    out = None
    for row, row_weight in taps(b, at_y):
        for col, col_weight in taps(b, at_x):
            index = b.add(b.mul(_fixed(b, row, height, fill_mode), b.scalar(float(width), row)),
                          _fixed(b, col, width, fill_mode))
            value = b.gather(pixels, b.cast(index, dtype=DType.i32), axis=0)
            if fill_mode == "constant":
                inside = b.logical_and(_inside(b, row, height), _inside(b, col, width))
                value = b.select(_per_pixel(b, inside), value, fill)
            weight = b.mul(row_weight, col_weight) if row_weight is not None else None
            term = value if weight is None else b.mul(_per_pixel(b, weight), value)
            out = term if out is None else b.add(out, term)
    return out


def _per_pixel(b: Builder, v: Value) -> Value:
    """A (height, width) value as (height, width, 1), to broadcast over the channels."""
    return b.reshape(v, shape=[*v.type.shape, 1])


def _round_half_away(b: Builder, v: Value) -> Value:
    """v rounded to the nearest integer, halves away from zero (`lax.round`'s default)."""
    return b.mul(b.sign(v), b.floor(b.add(b.abs(v), b.scalar(0.5, v))))


def _nearest(b: Builder, at: Value) -> list:
    """The pixel nearest `at`, weight 1 (None: no multiply)."""
    return [(_round_half_away(b, at), None)]


def _linear(b: Builder, at: Value) -> list:
    """The two neighbours of `at` and their weights: floor(at) with 1 - f, the next with f."""
    lower = b.floor(at)
    upper_weight = b.sub(at, lower)
    return [(lower, b.sub(b.scalar(1.0, at), upper_weight)), (b.add(lower, b.scalar(1.0, at)), upper_weight)]


def _inside(b: Builder, index: Value, size: int) -> Value:
    return b.logical_and(b.greater_equal(index, b.scalar(0.0, index)),
                         b.less(index, b.scalar(float(size), index)))


def _floor_mod(b: Builder, v: Value, n: float) -> Value:
    """v - floor(v / n) * n, the remainder with n's sign (exact for the integers here)."""
    return b.sub(v, b.mul(b.floor(b.div(v, b.scalar(n, v))), b.scalar(n, v)))


def _mirror(b: Builder, index: Value, size: int) -> Value:
    """map_coordinates's "mirror": |((i + s) mod 2s) - s| with s = size - 1."""
    s = float(size - 1)
    if s == 0:
        return b.mul(index, b.scalar(0.0, index))
    return b.abs(b.sub(_floor_mod(b, b.add(index, b.scalar(s, index)), 2 * s), b.scalar(s, index)))


def _fixed(b: Builder, index: Value, size: int, fill_mode: str) -> Value:
    """The pixel a (float, integral) index reads under `fill_mode`, inside [0, size)."""
    if fill_mode in ("constant", "nearest"):   # "constant" reads the fill where it is outside
        return b.minimum(b.maximum(index, b.scalar(0.0, index)), b.scalar(float(size - 1), index))
    if fill_mode == "wrap":
        return _floor_mod(b, index, float(size))
    if fill_mode == "mirror":
        return _mirror(b, index, size)
    doubled = b.add(b.mul(index, b.scalar(2.0, index)), b.scalar(1.0, index))   # "reflect"
    return b.floor(b.div(b.sub(_mirror(b, doubled, 2 * size + 1), b.scalar(1.0, index)),
                         b.scalar(2.0, index)))
