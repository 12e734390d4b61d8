"""`keras.ops.image`: Keras 3's image ops. Here the resampling at computed points:
`affine_transform` (what RandomRotation, RandomTranslation and RandomZoom apply),
`perspective_transform` and `map_coordinates`; `resize`, `scale_and_translate`, `crop_images` and
`pad_images` are in image_resize.py, the colour conversions in image_color.py, the filters and
patches in image_filters.py. Not implemented: `elastic_transform` (its displacements are random
draws of JAX's generator, which nncompile's cannot reproduce).

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
rows. `map_coordinates` reads any array so at the points its `coordinates` give, and
`perspective_transform` is the affine resampling through the homography that maps `end_points`
to `start_points`.

    >>> from nncompile.keras import ops
    >>> image = np.arange(9, dtype="float32").reshape(3, 3, 1)
    >>> shift_left = [1, 0, 1, 0, 1, 0, 0, 0]          # x' = x + 1
    >>> ops.image.affine_transform(image, shift_left)[..., 0].tolist()
    [[1.0, 2.0, 0.0], [4.0, 5.0, 0.0], [7.0, 8.0, 0.0]]
"""
from __future__ import annotations

import itertools

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.ir.ops.scan import slice_type
from nncompile.keras.ops.core import EagerValue, keras_op, shape_of, tensor, unsupported
from nncompile.keras.ops.image_color import hsv_to_rgb, rgb_to_grayscale, rgb_to_hsv
from nncompile.keras.ops.image_filters import (extract_patches, extract_patches_3d, gaussian_blur,
                                               sobel_edges, ssim)
from nncompile.keras.ops.image_resize import (check_rank, crop_images, image_format, pad_images,
                                              resize, scale_and_translate)

__all__ = ["affine_transform", "crop_images", "extract_patches", "extract_patches_3d",
           "gaussian_blur", "hsv_to_rgb", "map_coordinates", "pad_images", "perspective_transform",
           "resize", "rgb_to_grayscale", "rgb_to_hsv", "scale_and_translate", "sobel_edges", "ssim"]

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
    check_rank(x)
    if t.type.rank not in (1, 2) or t.type.shape[-1] != 8:
        raise ValueError("Invalid transform: expected 8 numbers (a single transform) or rank 2 "
                         "(a batch of transforms, 8 each). Received input with shape: "
                         f"transform.shape={tuple(t.type.shape)}")
    images_count, transforms_count = x.type.shape[0], t.type.shape[0]
    if x.type.rank == 4 and t.type.rank == 2 and isinstance(images_count, int) \
            and isinstance(transforms_count, int) and images_count != transforms_count:
        raise ValueError(f"Invalid transform: {transforms_count} transforms for a batch of {images_count} "
                         f"images; give one per image (shape ({images_count}, 8)) or one for all (8 numbers)")
    return affine(b, x, t, interpolation, fill_mode, fill_value, image_format(data_format))


@keras_op
def map_coordinates(b, inputs, coordinates, order, fill_mode="constant", fill_value=0):
    """`inputs` read at `coordinates` (one row per axis of `inputs`; the output has the shape of
    the rest), as `jax.scipy.ndimage.map_coordinates`: `order` 0 the nearest point (halves away
    from zero), 1 linear; `fill_mode` as `affine_transform`'s.

    >>> map_coordinates(np.arange(4.0), [[0.5, 2.25, -1.0]], order=1).tolist()
    [0.5, 2.25, 0.0]
    """
    x = tensor(b, inputs)
    points = tensor(b, coordinates, x.type.dtype if x.type.dtype.is_float else "float32")
    if points.type.rank < 1 or points.type.shape[0] != x.type.rank:
        raise ValueError("First dim of `coordinates` must be the same as the rank of `inputs`. "
                         f"Received inputs with shape: {shape_of(x)} and coordinate leading dim of "
                         f"{shape_of(points)[0] if points.type.rank else None}")
    if points.type.rank < 2:
        raise ValueError("Invalid coordinates rank: expected at least rank 2. Received input with "
                         f"shape: {shape_of(points)}")
    if fill_mode not in FILL_MODES:
        raise ValueError("Invalid value for argument `fill_mode`. Expected one of "
                         f"{set(FILL_MODES)}. Received: fill_mode={fill_mode}")
    if order not in range(2):
        raise ValueError(f"Invalid value for argument `order`. Expected one of {[0, 1]}. "
                         f"Received: order={order}")
    work = _working(b, x)
    if points.type.dtype != work.type.dtype:
        points = b.cast(points, dtype=work.type.dtype)
    rest = list(points.type.shape[1:])
    rows = [b.reshape(b.slice(points, starts=[i], ends=[i + 1], axes=[0], steps=[1]), shape=rest)
            for i in range(x.type.rank)]
    out = _sample(b, work, rows, INTERPOLATIONS[order], fill_mode, fill_value)
    return _as_dtype(b, out, x.type.dtype)


@keras_op
def perspective_transform(b, images, start_points, end_points, interpolation="bilinear",
                          fill_value=0, data_format=None):
    """`images` warped so that the four `end_points` (x, y) of the output show the input's
    `start_points` (shape (4, 2), or (N, 4, 2) for one warp per image), outside filled with
    `fill_value`. The points must be known when the op is built (numbers, not traced tensors).

    >>> image = np.arange(9, dtype="float32").reshape(3, 3, 1)
    >>> corners = np.array([[0, 0], [2, 0], [0, 2], [2, 2]])
    >>> perspective_transform(image, corners + 1, corners)[..., 0].tolist()
    [[4.0, 5.0, 0.0], [7.0, 8.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError("Invalid value for argument `interpolation`. Expected of one "
                         f"{set(INTERPOLATIONS)}. Received: interpolation={interpolation}")
    x = tensor(b, images)
    check_rank(x)
    start, end = (_points(p, name) for p, name in ((start_points, "start_points"), (end_points, "end_points")))
    if start.shape != end.shape:
        raise ValueError("start_points and end_points must have the same shape. Received "
                         f"start_points.shape={start.shape}, end_points.shape={end.shape}")
    transform = tensor(b, _homography(start, end), x.type.dtype if x.type.dtype.is_float else "float32")
    return affine(b, x, transform, interpolation, "constant", fill_value, image_format(data_format))


def _points(points, name: str) -> np.ndarray:
    """Corner points as a float32 array (4, 2) or (N, 4, 2), checked as Keras checks them."""
    if isinstance(points, Value):
        raise unsupported("image.perspective_transform", f"`{name}` as a traced tensor (give numbers)")
    array = np.asarray(points.array if isinstance(points, EagerValue) else points, np.float32)
    if array.shape[-2:] != (4, 2) or array.ndim not in (2, 3):
        raise ValueError(f"Invalid {name} shape: expected (4,2) for a single image or (N,4,2) for a "
                         f"batch. Received shape: {array.shape}")
    return array


def _homography(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The 8 coefficients (per pair of point sets) of the projective map taking each end point
    to its start point: the 8 x 8 linear system of Keras's `compute_homography_matrix`."""
    sx, sy, ex, ey = start[..., 0], start[..., 1], end[..., 0], end[..., 1]
    zeros, ones = np.zeros_like(ex), np.ones_like(ex)
    x_rows = np.stack([ex, ey, ones, zeros, zeros, zeros, -sx * ex, -sx * ey], axis=-1)
    y_rows = np.stack([zeros, zeros, zeros, ex, ey, ones, -sy * ex, -sy * ey], axis=-1)
    system = np.concatenate([x_rows, y_rows], axis=-2)
    targets = np.concatenate([sx, sy], axis=-1)[..., None]
    return np.linalg.solve(system, targets)[..., 0].astype(np.float32)


def affine(b: Builder, images: Value, transforms: Value, interpolation: str, fill_mode: str,
           fill_value: float, data_format: str = "channels_last") -> Value:
    """`affine_transform` of checked values: images of rank 3 or 4, transforms (8,) or (n, 8)."""
    first = data_format == "channels_first"
    if first:
        images = b.transpose(images, perm=[0, 2, 3, 1] if images.type.rank == 4 else [1, 2, 0])
    dtype = images.type.dtype
    work = _working(b, images)
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
    out = _as_dtype(b, out, dtype)
    if first:
        out = b.transpose(out, perm=[0, 3, 1, 2] if out.type.rank == 4 else [2, 0, 1])
    return out


def _working(b: Builder, v: Value) -> Value:
    """`v` in the float dtype it is resampled in: its own, float32 for integers and bools."""
    return v if v.type.dtype.is_float else b.cast(v, dtype=DType.f32)


def _as_dtype(b: Builder, out: Value, dtype: DType) -> Value:
    """A resampled `out` back in the input's `dtype`: integers rounded as map_coordinates rounds
    them; bools: nonzero."""
    if dtype.is_float:
        return out
    return b.cast(out if dtype == DType.bool else _round_half_away(b, out), dtype=dtype)


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
    height, width, _ = image.type.shape
    dtype = image.type.dtype.numpy
    rows, cols = np.meshgrid(np.arange(height, dtype=dtype), np.arange(width, dtype=dtype), indexing="ij")
    y, x = b.constant(rows), b.constant(cols)
    a0, a1, a2, b0, b1, b2, c0, c1 = (b.slice(t, starts=[i], ends=[i + 1], axes=[0], steps=[1])
                                      for i in range(8))
    k = b.add(b.add(b.mul(c0, x), b.mul(c1, y)), b.scalar(1.0, x))
    at_x = b.div(b.add(b.add(b.mul(a0, x), b.mul(a1, y)), a2), k)
    at_y = b.div(b.add(b.add(b.mul(b0, x), b.mul(b1, y)), b2), k)
    return _sample(b, image, [at_y, at_x], interpolation, fill_mode, fill_value)


def _sample(b: Builder, array: Value, points: list, interpolation: str, fill_mode: str,
            fill_value: float) -> Value:
    """`array` (*spatial, *rest) read at `points` (one value of shape S per spatial axis): shape
    (*S, *rest), each point's neighbours (first axis outermost) gathered from the array's rows
    and weighed, as map_coordinates does."""
    spatial, rest = array.type.shape[:len(points)], list(array.type.shape[len(points):])
    strides = [int(np.prod(spatial[i + 1:], dtype=np.int64)) for i in range(len(spatial))]
    rows = b.reshape(array, shape=[int(np.prod(spatial, dtype=np.int64)), *rest])
    fill = b.scalar(float(fill_value), array) if fill_mode == "constant" else None
    taps = _nearest if interpolation == "nearest" else _linear
    out = None
    for neighbour in itertools.product(*(taps(b, at) for at in points)):
        index = inside = weight = None
        for (at, at_weight), size, stride in zip(neighbour, spatial, strides):
            term = b.mul(_fixed(b, at, size, fill_mode), b.scalar(float(stride), at))
            index = term if index is None else b.add(index, term)
            if fill_mode == "constant":
                within = _inside(b, at, size)
                inside = within if inside is None else b.logical_and(inside, within)
            if at_weight is not None:
                weight = at_weight if weight is None else b.mul(weight, at_weight)
        value = b.gather(rows, b.cast(index, dtype=DType.i32), axis=0)
        if fill_mode == "constant":
            value = b.select(_per_pixel(b, inside, rest), value, fill)
        term = value if weight is None else b.mul(_per_pixel(b, weight, rest), value)
        out = term if out is None else b.add(out, term)
    return out


def _per_pixel(b: Builder, v: Value, rest: list) -> Value:
    """A value of the points' shape made to broadcast over the `rest` axes (the channels)."""
    return b.reshape(v, shape=[*v.type.shape, *(1 for _ in rest)]) if rest else v


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
