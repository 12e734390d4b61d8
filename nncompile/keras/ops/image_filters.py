"""`keras.ops.image`'s filters and windows: `gaussian_blur`, `sobel_edges` and `ssim` (depthwise
convolutions with fixed kernels, as Keras 3 on JAX computes them), and `extract_patches` /
`extract_patches_3d` (each window's pixels as channels).

A patch's channels are its pixels in row-major order, each pixel's channels together: the
channel (i * width + j) * channels + c of a 2-D patch is channel c of its pixel (i, j), as
Keras's convolution with an identity kernel orders them. nncompile takes the pixels as strided
slices, so patches keep the images' dtype exactly.

    >>> from nncompile.keras import ops
    >>> image = np.arange(16, dtype="float32").reshape(4, 4, 1)
    >>> ops.image.extract_patches(image, 2)[0, 0].tolist()
    [0.0, 1.0, 4.0, 5.0]
"""
from __future__ import annotations

import itertools

import numpy as np

from nncompile.ir.ops.linalg import same_pads
from nncompile.keras.ops.convolution import depthwise_conv
from nncompile.keras.ops.core import float_dtype, keras_op, shape_of, tensor
from nncompile.keras.ops.image_resize import Images, check_rank, image_format

SOBEL_ROWS = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])   # d/dy; its transpose is d/dx


def _gaussian(size: int, sigma, dtype) -> np.ndarray:
    """Keras's 1-D Gaussian kernel of `size` taps, normalized, computed in `dtype`."""
    x = np.arange(size, dtype=dtype) - np.asarray((size - 1) / 2, dtype)
    kernel = np.exp(np.asarray(-0.5, dtype) * (x / np.asarray(sigma, dtype)) ** 2)
    return kernel / kernel.sum(dtype=dtype)


def _each_channel(b, x, kernel: np.ndarray, padding: str):
    """Every channel of the NHWC images `x` convolved with the 2-D `kernel` (cross-correlation)."""
    channels = x.type.shape[3]
    tiled = np.broadcast_to(kernel[:, :, None, None], (*kernel.shape, channels, 1))
    return depthwise_conv.__wrapped__(b, x, np.ascontiguousarray(tiled), padding=padding,
                                      data_format="channels_last")


@keras_op
def gaussian_blur(b, images, kernel_size=(3, 3), sigma=(1.0, 1.0), data_format=None):
    """Each channel convolved with a normalized Gaussian, zero-padded to the same size. As Keras 3
    on JAX, the kernel's rows take `kernel_size[1]` and `sigma[1]`, its columns `kernel_size[0]`
    and `sigma[0]`; integer images are blurred in floatx.

    >>> round(float(gaussian_blur(np.eye(3, dtype="float32")[..., None])[1, 1, 0]), 4)
    0.3544
    """
    v = tensor(b, images)
    check_rank(v)
    v = tensor(b, v, float_dtype(v))
    dtype = v.type.dtype.numpy
    kernel = np.outer(_gaussian(int(kernel_size[1]), sigma[1], dtype),
                      _gaussian(int(kernel_size[0]), sigma[0], dtype))
    layout = Images(b, v, data_format)
    return layout.back(_each_channel(b, layout.nhwc, kernel, "same"))


@keras_op
def sobel_edges(b, images, data_format=None):
    """The Sobel gradients of each channel of a batch of images, zero-padded: shape
    `images.shape + (2,)`, the last axis [d/dy, d/dx]. Integer images give floatx.

    >>> step = np.zeros((1, 3, 3, 1), "float32"); step[..., 2, :] = 1.0
    >>> sobel_edges(step)[0, 1, 1, 0].tolist()
    [0.0, 4.0]
    """
    v = tensor(b, images)
    if v.type.rank != 4:
        raise ValueError("Invalid images rank: expected rank 4 (batch of images). "
                         f"Received: images.shape={list(shape_of(v))}")
    layout = Images(b, tensor(b, v, float_dtype(v)), data_format)
    dtype = layout.nhwc.type.dtype.numpy
    edges = [layout.back(_each_channel(b, layout.nhwc, kernel.astype(dtype), "same"))
             for kernel in (SOBEL_ROWS, SOBEL_ROWS.T)]
    return b.concat(*(b.reshape(e, shape=[*e.type.shape, 1]) for e in edges), axis=4)


@keras_op
def ssim(b, image1, image2, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03,
         data_format=None):
    """The structural similarity of two images (or batches): the mean over the valid windows
    and the channels of ((2 m1 m2 + c1)(2 s12 + c2)) / ((m1² + m2² + c1)(s1² + s2² + c2)),
    means and (co)variances under a `filter_size` Gaussian of `filter_sigma`, c = (k max_val)²;
    one number per image, in image1's dtype.

    >>> image = np.linspace(0, 1, 192, dtype="float32").reshape(8, 8, 3)
    >>> float(ssim(image, image, filter_size=3))
    1.0
    """
    first, second = tensor(b, image1), tensor(b, image2)
    for v, name in ((first, "image1"), (second, "image2")):
        if v.type.rank not in (3, 4):
            raise ValueError(f"Invalid {name} rank: expected rank 3 (single image) or rank 4 (batch "
                             f"of images). Received input with shape: {name}.shape={shape_of(v)}")
    dtype = float_dtype(first)
    x, y = (Images(b, tensor(b, v, dtype), data_format) for v in (first, second))
    if min(x.nhwc.type.shape[1:3]) < filter_size:
        raise ValueError("The convolution operation resulted in an empty output. This can happen if "
                         "the input is too small for the given kernel size, strides, dilation rate, "
                         "and padding mode. Please check the input shape and convolution parameters.")
    gauss = _gaussian(filter_size, filter_sigma, x.nhwc.type.dtype.numpy)
    kernel = np.outer(gauss, gauss)

    def mean(v):
        return _each_channel(b, v, kernel, "valid")

    mu1, mu2 = mean(x.nhwc), mean(y.nhwc)
    mu11, mu22, mu12 = b.mul(mu1, mu1), b.mul(mu2, mu2), b.mul(mu1, mu2)
    var1 = b.sub(mean(b.mul(x.nhwc, x.nhwc)), mu11)
    var2 = b.sub(mean(b.mul(y.nhwc, y.nhwc)), mu22)
    cov = b.sub(mean(b.mul(x.nhwc, y.nhwc)), mu12)
    c1, c2 = (b.scalar((k * max_val) ** 2, mu1) for k in (k1, k2))
    two = b.scalar(2.0, mu1)
    numerator = b.mul(b.add(b.mul(two, mu12), c1), b.add(b.mul(two, cov), c2))
    denominator = b.mul(b.add(b.add(mu11, mu22), c1), b.add(b.add(var1, var2), c2))
    per_channel = b.reduce_mean(b.div(numerator, denominator), axes=[1, 2], keepdims=False)
    out = b.reduce_mean(per_channel, axes=[1], keepdims=False)
    out = b.reshape(out, shape=[]) if x.single else out
    return tensor(b, out, first.type.dtype)


def _ints(value, n: int, name: str) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n:
        raise ValueError(f"Invalid `{name}` argument. Got: {value}")
    return tuple(int(v) for v in values)


def _patches(b, v, size, strides, dilation_rate, padding: str, data_format, rank: int):
    """Patches of `len(size)`-D images `v` (`rank` with a batch, one less without): the windows'
    pixels as channels, see the module's docstring."""
    dims = len(size)
    if v.type.rank not in (rank - 1, rank):
        what = "images" if dims == 2 else "volumes"
        raise ValueError(f"Invalid {what} rank: expected rank {rank - 1} or {rank}. Received input "
                         f"with shape: {what}.shape={shape_of(v)}")
    first = image_format(data_format) == "channels_first"
    single = v.type.rank == rank - 1
    x = b.reshape(v, shape=[1, *v.type.shape]) if single else v
    if first:
        x = b.transpose(x, perm=[0, *range(2, dims + 2), 1])
    strides, dilations = _ints(strides, dims, "strides"), _ints(dilation_rate, dims, "dilation_rate")
    if padding.lower() == "same":
        spatial = x.type.shape[1:dims + 1]
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, size, strides, dilations)]
        x = b.pad(x, pads=[0, 0, *(side for pair in pads for side in pair), 0, 0], value=0.0)
    elif padding.lower() != "valid":
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding}")
    spatial = x.type.shape[1:dims + 1]
    counts = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(spatial, size, strides, dilations)]
    pieces = []
    for offsets in itertools.product(*(range(k) for k in size)):
        starts = [o * d for o, d in zip(offsets, dilations)]
        ends = [start + (count - 1) * s + 1 for start, count, s in zip(starts, counts, strides)]
        pieces.append(b.slice(x, starts=starts, ends=ends, axes=list(range(1, dims + 1)), steps=list(strides)))
    out = b.concat(*pieces, axis=dims + 1)
    if first:
        out = b.transpose(out, perm=[0, dims + 1, *range(1, dims + 1)])
    return b.reshape(out, shape=list(out.type.shape[1:])) if single else out


@keras_op
def extract_patches(b, images, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    """The `size` windows of images (rank 3 or 4; volumes, rank 4 or 5, for a `size` of three),
    every `strides` pixels (default: `size`, no overlap), each window's pixels as channels."""
    if not isinstance(size, (int, np.integer)):
        if not isinstance(size, (tuple, list)):
            raise TypeError("Invalid `size` argument. Expected an int or a tuple. "
                            f"Received: size={size} of type {type(size).__name__}")
        if len(size) not in (2, 3):
            raise ValueError("Invalid `size` argument. Expected a tuple of length 2 or 3. "
                             f"Received: size={size} with length {len(size)}")
    dims = 2 if isinstance(size, (int, np.integer)) else len(size)
    size = _ints(size, dims, "size")
    return _patches(b, tensor(b, images), size, strides or size, dilation_rate, padding, data_format,
                    rank=dims + 2)


@keras_op
def extract_patches_3d(b, volumes, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    """The `size` (depth, height, width) windows of volumes (rank 4, or 5 for a batch), every
    `strides` voxels (default: `size`), each window's voxels as channels."""
    size = _ints(size, 3, "size")
    return _patches(b, tensor(b, volumes), size, size if strides is None else strides, dilation_rate,
                    padding, data_format, rank=5)
