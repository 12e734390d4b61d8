"""The neural-network ops of `keras.ops`: activations, one_hot, normalization statistics, attention
and the crossentropies (convolution and pooling are in `convolution.py`).

    >>> from nncompile.keras import ops
    >>> ops.relu(np.array([-1.0, 2.0]))
    array([0., 2.])
"""
from __future__ import annotations

import numpy as np

from nncompile.keras import activations, backend
from nncompile.keras.ops.core import (canonical_axes, canonical_axis, float_dtype, float_op, namespace_fallback,
                                      keras_op, result_type, shape_of, standardize_dtype,
                                      tensor, tensors, unsupported)
from nncompile.keras.ops.linalg import einsum


def _floats(b, x):
    """`x` as a float value (integers and bools in floatx), as Keras's activations take it."""
    return tensor(b, x, float_dtype(x))


def _softplus(b, v):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
    return b.add(b.relu(v), b.log1p(b.exp(b.neg(b.abs(v)))))


relu = float_op("relu", lambda b, v: b.relu(v), "max(x, 0).")
relu6 = float_op("relu6", lambda b, v: b.minimum(b.relu(v), b.scalar(6.0, v)),
                 "min(max(x, 0), 6).")
sigmoid = float_op("sigmoid", lambda b, v: b.sigmoid(v), "1 / (1 + exp(-x)).")
softplus = float_op("softplus", _softplus, "log(1 + exp(x)), computed without overflow.")
softsign = float_op("softsign", lambda b, v: b.div(v, b.add(b.abs(v), b.scalar(1.0, v))),
                    "x / (|x| + 1).")
silu = float_op("silu", lambda b, v: b.mul(v, b.sigmoid(v)), "x * sigmoid(x).")
swish = silu
log_sigmoid = float_op("log_sigmoid", lambda b, v: b.neg(_softplus(b, b.neg(v))),
                       "log(sigmoid(x)) = -softplus(-x).")


def _hard_sigmoid(b, v):
    return b.minimum(b.relu(b.add(b.div(v, b.scalar(6.0, v)), b.scalar(0.5, v))),
                     b.scalar(1.0, v))


hard_sigmoid = float_op("hard_sigmoid", _hard_sigmoid,
                        "Piecewise linear sigmoid: clip(x / 6 + 0.5, 0, 1).")
hard_tanh = float_op("hard_tanh", lambda b, v: b.minimum(b.maximum(v, b.scalar(-1.0, v)),
                                                         b.scalar(1.0, v)), "clip(x, -1, 1).")
hard_silu = float_op("hard_silu", lambda b, v: b.mul(v, _hard_sigmoid(b, v)),
                     "x * hard_sigmoid(x).")
hard_swish = hard_silu
selu = float_op(
    "selu", lambda b, v: b.mul(b.scalar(1.0507009873554805, v),
                               _elu(b, v, 1.6732632423543772)),
    "scale * elu(x, alpha) with SELU's constants.")


tanh_shrink = float_op("tanh_shrink", lambda b, v: activations.tanh_shrink(b, v), "x - tanh(x).")
sparse_plus = float_op("sparse_plus", lambda b, v: activations.sparse_plus(b, v),
                       "0 below -1, (x + 1)^2 / 4 between -1 and 1, x above.")
sparse_sigmoid = float_op("sparse_sigmoid", lambda b, v: activations.sparse_sigmoid(b, v),
                          "(x + 1) / 2 clipped to [0, 1].")


@keras_op
def hard_shrink(b, x, threshold=0.5):
    """x where |x| > threshold, else 0."""
    return activations.hard_shrink(b, _floats(b, x), threshold)


@keras_op
def soft_shrink(b, x, threshold=0.5):
    """x - threshold above threshold, x + threshold below -threshold, else 0."""
    return activations.soft_shrink(b, _floats(b, x), threshold)


@keras_op
def squareplus(builder, x, b=4):
    """(x + sqrt(x^2 + b)) / 2."""
    return activations.squareplus(builder, _floats(builder, x), b)


@keras_op
def threshold(b, x, threshold, default_value):
    """x where x > threshold, else default_value."""
    return activations.threshold(b, _floats(b, x), threshold, default_value)


@keras_op
def sparsemax(b, x, axis=-1):
    """The projection of x onto the probability simplex along `axis`: like softmax, but sparse."""
    return activations.sparsemax(b, _floats(b, x), axis)


@keras_op
def psnr(b, x1, x2, max_val):
    """The peak signal-to-noise ratio of x2 against x1 in decibels: 20 log10(max_val) -
    10 log10(mean((x1 - x2)^2)), over all elements."""
    u, v = tensors(b, x1, x2, dtype=float_dtype(result_type(x1, x2, float)))
    if u.type.shape != v.type.shape:
        raise ValueError(f"ops.psnr: x1 and x2 must have the same shape; received {shape_of(u)} and "
                         f"{shape_of(v)}")
    mse = b.reduce_mean(b.square(b.sub(u, v)), axes=list(range(u.type.rank)))
    ten = b.scalar(10.0 / np.log(10.0), mse)
    return b.sub(b.scalar(20 * np.log10(max_val), mse), b.mul(ten, b.log(mse)))


def _elu(b, v, alpha: float):
    return b.select(b.greater(v, b.scalar(0.0, v)), v, b.mul(b.scalar(alpha, v), b.expm1(v)))


@keras_op
def elu(b, x, alpha=1.0):
    """x if x > 0, else alpha * (exp(x) - 1)."""
    return _elu(b, _floats(b, x), alpha)


@keras_op
def celu(b, x, alpha=1.0):
    """max(x, 0) + min(alpha * (exp(x / alpha) - 1), 0)."""
    v = _floats(b, x)
    a = b.scalar(alpha, v)
    return b.add(b.relu(v), b.minimum(b.mul(a, b.expm1(b.div(v, a))), b.scalar(0.0, v)))


@keras_op
def glu(b, x, axis=-1):
    """The first half of `x` along `axis` gated by the sigmoid of the second half."""
    v = _floats(b, x)
    axis = canonical_axis(axis, v.type.rank, "glu")
    n = v.type.shape[axis]
    if not isinstance(n, int) or n % 2:
        raise ValueError(f"axis {axis} should have an even size; received x.shape="
                         f"{shape_of(v)}")
    half = n // 2
    first, second = (b.slice(v, starts=[lo], ends=[lo + half], axes=[axis], steps=[1])
                     for lo in (0, half))
    return b.mul(first, b.sigmoid(second))


@keras_op
def leaky_relu(b, x, negative_slope=0.2):
    """x if x >= 0, else negative_slope * x."""
    v = _floats(b, x)
    return b.select(b.greater_equal(v, b.scalar(0.0, v)), v, b.mul(v, b.scalar(negative_slope, v)))


@keras_op
def gelu(b, x, approximate=True):
    """Gaussian error linear unit: x * Phi(x), by default with the tanh approximation (Keras's
    default).

    >>> float(gelu(np.array(1.0), approximate=False))
    0.8413447460685429
    """
    v = _floats(b, x)
    half_x = b.mul(v, b.scalar(0.5, v))
    if approximate:
        cube = b.mul(b.scalar(0.044715, v), b.mul(v, b.square(v)))
        inner = b.mul(b.scalar(np.sqrt(2 / np.pi), v), b.add(v, cube))
        return b.mul(half_x, b.add(b.scalar(1.0, v), b.tanh(inner)))
    return b.mul(half_x, b.add(b.scalar(1.0, v), b.erf(b.mul(v, b.scalar(1 / np.sqrt(2), v)))))


def _softmax_axis(v, axis, op: str) -> int:
    """`axis`, checked, as given: the form the softmax activation emits (the same IR)."""
    if not isinstance(axis, (int, np.integer)):
        raise unsupported(op, f"axis={axis!r} (several axes)")
    canonical_axis(axis, v.type.rank, op)
    return int(axis)


@keras_op
def softmax(b, x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`.

    >>> softmax(np.array([0.0, np.log(3.0)])).round(2)
    array([0.25, 0.75])
    """
    v = _floats(b, x)
    return b.softmax(v, axis=_softmax_axis(v, axis, "softmax"))


@keras_op
def log_softmax(b, x, axis=-1):
    """x - log(sum(exp(x))) along `axis`."""
    v = _floats(b, x)
    return b.log_softmax(v, axis=_softmax_axis(v, axis, "log_softmax"))


@keras_op
def one_hot(b, x, num_classes, axis=-1, dtype=None, sparse=False):
    """Integer labels as one-hot vectors along a new `axis`; labels outside
    [0, num_classes) give all zeros.

    >>> one_hot(np.array([2, 0]), 3)
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    if sparse:
        raise unsupported("one_hot", "sparse=True")
    labels = tensor(b, x, "int32")
    rank = labels.type.rank + 1
    axis = canonical_axis(axis, rank, "one_hot")
    dims = list(labels.type.shape)
    classes_at = [1] * rank
    classes_at[axis] = num_classes
    positions = b.constant(np.arange(num_classes, dtype=np.int32).reshape(classes_at))
    hit = b.equal(b.reshape(labels, shape=dims[:axis] + [1] + dims[axis:]), positions)
    return tensor(b, hit, standardize_dtype(dtype))


@keras_op
def multi_hot(b, inputs, num_classes, axis=-1, dtype=None, sparse=False):
    """1 for each class among a sample's labels: `one_hot` then the maximum over axis 1 (axis 0
    for the labels of one sample, rank 1), as Keras's JAX backend reduces it.

    >>> multi_hot(np.array([[0, 2], [1, 1]]), 3)
    array([[1., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    hot = one_hot.__wrapped__(b, inputs, num_classes, axis=axis, dtype=dtype, sparse=sparse)
    return b.reduce_max(hot, axes=[1 if hot.type.rank > 2 else 0], keepdims=False)


# --- normalization ---------------------------------------------------------------------------

def _moments(b, v, axes, keepdims: bool):
    """Mean and population variance over `axes`, float16 computed in float32."""
    dtype = result_type(v)
    work = tensor(b, v, "float32") if dtype == "float16" else v
    axes = canonical_axes(axes, work.type.rank, "moments")
    mean = b.reduce_mean(work, axes=axes, keepdims=True)
    variance = b.reduce_mean(b.square(b.sub(work, mean)), axes=axes, keepdims=True)
    if not keepdims:
        kept = [d for a, d in enumerate(work.type.shape) if a not in axes]
        mean, variance = b.reshape(mean, shape=kept), b.reshape(variance, shape=kept)
    return tensor(b, mean, dtype), tensor(b, variance, dtype)


@keras_op
def moments(b, x, axes, keepdims=False, synchronized=False):
    """(mean, variance) of `x` over `axes`.

    >>> [m.tolist() for m in moments(np.array([1.0, 3.0]), axes=[0])]
    [2.0, 1.0]
    """
    if synchronized:
        raise unsupported("moments", "synchronized=True (statistics across devices)")
    return _moments(b, _floats(b, x), axes, keepdims)


@keras_op
def batch_normalization(b, x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """(x - mean) / sqrt(variance + epsilon) * scale + offset; the statistics are vectors along
    `axis`."""
    v = _floats(b, x)
    axis = canonical_axis(axis, v.type.rank, "batch_normalization")
    along = [1] * v.type.rank
    along[axis] = -1

    def vector(t):
        return b.reshape(tensor(b, t, result_type(v)), shape=along)

    inv = b.rsqrt(b.add(vector(variance), b.scalar(epsilon, v)))
    if scale is not None:
        inv = b.mul(inv, vector(scale))
    out = b.mul(b.sub(v, vector(mean)), inv)
    return out if offset is None else b.add(out, vector(offset))


@keras_op
def layer_normalization(b, x, gamma=None, beta=None, axis=-1, epsilon=None, rms_scaling=False):
    """x normalized over `axis` to mean 0 and variance 1, then scaled by `gamma` and shifted by
    `beta` (broadcast against x). `rms_scaling` (deprecated in Keras) divides by the standard
    deviation without centring and adds no beta, exactly as Keras's does.

    >>> layer_normalization(np.array([[1.0, 3.0]])).round(3)
    array([[-1.,  1.]])
    """
    v = _floats(b, x)
    eps = b.scalar(backend.epsilon() if epsilon is None else epsilon, v)
    mean, variance = _moments(b, v, canonical_axes(axis, v.type.rank, "layer_normalization"),
                              keepdims=True)
    inv = b.rsqrt(b.add(variance, eps))
    out = b.mul(v, inv) if rms_scaling else b.mul(b.sub(v, mean), inv)
    if gamma is not None:
        out = b.mul(out, tensor(b, gamma, result_type(v)))
    if beta is not None and not rms_scaling:
        out = b.add(out, tensor(b, beta, result_type(v)))
    return out


@keras_op
def rms_normalization(b, x, scale=None, axis=-1, epsilon=None):
    """x / sqrt(mean(x ** 2) + epsilon) over `axis`, times `scale`; half precision computes in
    float32."""
    dtype = float_dtype(x)
    v = tensor(b, x, result_type(dtype, "float32"))
    eps = b.scalar(backend.epsilon() if epsilon is None else epsilon, v)
    axes = canonical_axes(axis, v.type.rank, "rms_normalization")
    out = b.mul(v, b.rsqrt(b.add(b.reduce_mean(b.square(v), axes=axes, keepdims=True), eps)))
    if scale is not None:
        out = b.mul(out, tensor(b, scale, result_type(v)))
    return tensor(b, out, dtype)


@keras_op
def normalize(b, x, axis=-1, order=2, epsilon=None):
    """x divided by its L2 norm along `axis` (at least epsilon), as Keras's `order=2`."""
    if order != 2:
        raise unsupported("normalize", f"order={order!r} (only the L2 norm, order=2)")
    v = _floats(b, x)
    eps = backend.epsilon() if epsilon is None else epsilon
    squares = b.reduce_sum(b.square(v), axes=canonical_axes(axis, v.type.rank, "normalize"),
                           keepdims=True)
    return b.mul(v, b.minimum(b.rsqrt(squares), b.scalar(1.0 / eps, v)))


@keras_op
def dot_product_attention(b, query, key, value, bias=None, mask=None, scale=None,
                          is_causal=False, flash_attention=None, attn_logits_soft_cap=None):
    """softmax(query . key / sqrt(H) + bias, masked) . value for (batch, length, heads, H)
    tensors, as jax.nn.dot_product_attention; masked-out logits become a large negative.

    >>> q = np.ones((1, 2, 1, 4), "float32")
    >>> dot_product_attention(q, q, q).shape
    (1, 2, 1, 4)
    """
    if flash_attention:
        raise unsupported("dot_product_attention", "flash_attention=True")
    if attn_logits_soft_cap is not None:
        raise unsupported("dot_product_attention", "attn_logits_soft_cap")
    q, k, v = tensors(b, query, key, value)
    if q.type.rank != 4:
        raise ValueError(f"`dot_product_attention` only supports 4D inputs. Received: "
                         f"query.shape={shape_of(q)}, key.shape={shape_of(k)}, "
                         f"value.shape={shape_of(v)}.")
    heads = k.type.shape[-1]
    scale = 1.0 / np.sqrt(heads) if scale is None else scale
    logits = einsum.__wrapped__(b, "BTNH,BSNH->BNTS", q, k)
    logits = b.mul(logits, b.scalar(scale, logits))
    if bias is not None:
        logits = b.add(logits, tensor(b, bias, result_type(logits)))
    keep = None if mask is None else tensor(b, mask, "bool")
    if is_causal:
        t, s = logits.type.shape[2:]
        causal = b.constant(np.tri(t, s, dtype=bool))
        keep = causal if keep is None else b.logical_and(keep, causal)
    if keep is not None:
        large_negative = -0.7 * float(np.finfo(logits.type.dtype.numpy).max)
        logits = b.select(keep, logits, b.scalar(large_negative, logits))
    probs = b.softmax(logits, axis=3)
    return einsum.__wrapped__(b, "BNTS,BSNH->BTNH", probs, v)


# --- losses ----------------------------------------------------------------------------------

def _same_shape(t, o):
    if shape_of(t) != shape_of(o):
        raise ValueError(f"Arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={shape_of(t)}, output.shape={shape_of(o)}")


def _clipped(b, p):
    eps = backend.epsilon()
    return b.minimum(b.maximum(p, b.scalar(eps, p)), b.scalar(1.0 - eps, p))


@keras_op
def binary_crossentropy(b, target, output, from_logits=False):
    """Elementwise -(t log p + (1 - t) log(1 - p)), p clipped to [eps, 1 - eps]; from logits,
    p = sigmoid(output) (as Keras's, clipped too).

    >>> binary_crossentropy(np.array([1.0]), np.array([0.5])).round(4)
    array([0.6931])
    """
    t, o = tensors(b, target, output, dtype=float_dtype(output))
    _same_shape(t, o)
    p = _clipped(b, b.sigmoid(o) if from_logits else o)
    one = b.scalar(1.0, p)
    return b.neg(b.add(b.mul(t, b.log(p)), b.mul(b.sub(one, t), b.log(b.sub(one, p)))))


def _log_probs(b, o, axis: int, from_logits: bool):
    if from_logits:
        return b.log_softmax(o, axis=axis)
    p = b.div(o, b.reduce_sum(o, axes=[axis], keepdims=True))
    return b.log(_clipped(b, p))


@keras_op
def categorical_crossentropy(b, target, output, from_logits=False, axis=-1):
    """-sum(target * log p) along `axis`; p is `output` normalized to sum 1 and clipped, or
    softmax(output) from logits."""
    t, o = tensors(b, target, output, dtype=float_dtype(output))
    _same_shape(t, o)
    if o.type.rank < 1:
        raise ValueError(f"Arguments `target` and `output` must be at least rank 1. Received: "
                         f"target.shape={shape_of(t)}, output.shape={shape_of(o)}")
    axis = canonical_axis(axis, o.type.rank, "categorical_crossentropy")
    return b.neg(b.reduce_sum(b.mul(t, _log_probs(b, o, axis, from_logits)), axes=[axis]))


@keras_op
def sparse_categorical_crossentropy(b, target, output, from_logits=False, axis=-1):
    """-log p[target] along `axis` for integer targets (a trailing axis of 1 is dropped)."""
    o = _floats(b, output)
    t = tensor(b, target, "int32")
    if o.type.rank < 1:
        raise ValueError(f"Argument `output` must be at least rank 1. Received: "
                         f"output.shape={shape_of(o)}")
    if t.type.rank == o.type.rank and t.type.shape[-1] == 1:
        t = b.reshape(t, shape=list(t.type.shape[:-1]))
    if shape_of(t) != shape_of(o)[:-1]:
        raise ValueError(f"Arguments `target` and `output` must have the same shape up until "
                         f"the last dimension: target.shape={shape_of(t)}, "
                         f"output.shape={shape_of(o)}")
    axis = canonical_axis(axis, o.type.rank, "sparse_categorical_crossentropy")
    picks = one_hot.__wrapped__(b, t, o.type.shape[axis], axis=axis, dtype=result_type(o))
    return b.neg(b.reduce_sum(b.mul(picks, _log_probs(b, o, axis, from_logits)), axes=[axis]))


__getattr__ = namespace_fallback("nn")
