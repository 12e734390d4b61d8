"""Activation functions, each written once as IR and usable both in layers and on arrays.

Every activation is an emitter `(b: Builder, x: Value, **options) -> Value`. The public function
dispatches on its first argument: given a `Builder` it adds the activation to that graph; given an
array it traces a one-activation graph and runs it, so `relu(np.array([-1., 2.]))` returns
`array([0., 2.])` from the very IR a model compiles.

>>> import numpy as np
>>> from nncompile.keras import activations
>>> activations.relu(np.array([-1.0, 2.0], np.float32))
array([0., 2.], dtype=float32)
>>> activations.get("gelu") is activations.gelu
True
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Callable

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.keras import backend
from nncompile.keras.serialization import custom_object

Emitter = Callable[..., Value]

_REGISTRY: dict[str, Emitter] = {}
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def _activation(emit: Emitter) -> Emitter:
    """Register `emit` under its name and let it also run on arrays."""
    @functools.wraps(emit)
    def activation(x, *args, **kwargs):
        if isinstance(x, Builder):
            return emit(x, *args, **kwargs)
        return _run_on_array(emit, x, *args, **kwargs)

    _REGISTRY[emit.__name__] = activation
    return activation


def _run_on_array(emit: Emitter, x, *args, **kwargs) -> np.ndarray:
    from nncompile.keras.layers.base import run_graph  # here: importing keras.layers imports us

    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(backend.floatx())
    b = Builder(name=emit.__name__)
    value = b.input("x", TensorType(DType.from_numpy(array.dtype), array.shape))
    graph = b.finish([emit(b, value, *args, **kwargs)], ["y"])
    return run_graph(graph, [array])[0]


# helpers shared by several activations ---------------------------------------------------------

def _where_positive(b: Builder, x: Value, positive: Value, other: Value) -> Value:
    return b.select(b.greater(x, b.scalar(0.0, like=x)), positive, other)


def _clip(b: Builder, x: Value, low: float, high: float) -> Value:
    return b.minimum(b.maximum(x, b.scalar(low, like=x)), b.scalar(high, like=x))


def _scaled(b: Builder, x: Value, factor: float) -> Value:
    return b.mul(x, b.scalar(factor, like=x))


# the activations ---------------------------------------------------------------------------------

@_activation
def linear(b: Builder, x: Value) -> Value:
    """The identity: `linear(x) = x`."""
    return x


@_activation
def relu(b: Builder, x: Value, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> Value:
    """`max(x, 0)`; with options, `x` above `threshold` (clipped to [0, `max_value`] when that is
    given) and `negative_slope * (x - threshold)` below it."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return b.relu(x)
    t = b.scalar(threshold, like=x)
    below = (_scaled(b, b.sub(x, t), negative_slope) if negative_slope
             else b.scalar(0.0, like=x))
    above = x if max_value is None else _clip(b, x, 0.0, max_value)
    return b.select(b.greater(x, t), above, below)


@_activation
def leaky_relu(b: Builder, x: Value, negative_slope: float = 0.2) -> Value:
    """`x` for `x > 0`, else `negative_slope * x`."""
    return _where_positive(b, x, x, _scaled(b, x, negative_slope))


@_activation
def relu6(b: Builder, x: Value) -> Value:
    """`min(max(x, 0), 6)`."""
    return _clip(b, x, 0.0, 6.0)


@_activation
def sigmoid(b: Builder, x: Value) -> Value:
    """`1 / (1 + exp(-x))`."""
    return b.sigmoid(x)


@_activation
def tanh(b: Builder, x: Value) -> Value:
    """The hyperbolic tangent."""
    return b.tanh(x)


@_activation
def softmax(b: Builder, x: Value, axis: int = -1) -> Value:
    """`exp(x) / sum(exp(x))` along `axis`."""
    return b.softmax(x, axis=axis)


@_activation
def log_softmax(b: Builder, x: Value, axis: int = -1) -> Value:
    """`x - log(sum(exp(x)))` along `axis`."""
    return b.log_softmax(x, axis=axis)


@_activation
def exponential(b: Builder, x: Value) -> Value:
    """`exp(x)`."""
    return b.exp(x)


@_activation
def elu(b: Builder, x: Value, alpha: float = 1.0) -> Value:
    """`x` for `x > 0`, else `alpha * (exp(x) - 1)`."""
    # expm1 of min(x, 0): accurate near 0 and never overflows on the branch not taken.
    negative = _scaled(b, b.expm1(b.minimum(x, b.scalar(0.0, like=x))), alpha)
    return _where_positive(b, x, x, negative)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@_activation
def selu(b: Builder, x: Value) -> Value:
    """`scale * elu(x, alpha)` with `alpha = 1.67326324`, `scale = 1.05070098`."""
    return _scaled(b, elu(b, x, alpha=_SELU_ALPHA), _SELU_SCALE)


@_activation
def celu(b: Builder, x: Value, alpha: float = 1.0) -> Value:
    """`max(x, 0) + alpha * min(0, exp(x / alpha) - 1)`."""
    zero = b.scalar(0.0, like=x)
    negative = _scaled(b, b.expm1(_scaled(b, b.minimum(x, zero), 1.0 / alpha)), alpha)
    return b.add(b.maximum(x, zero), negative)


@_activation
def softplus(b: Builder, x: Value) -> Value:
    """`log(exp(x) + 1)`, computed as `max(x, 0) + log1p(exp(-|x|))` so it never overflows."""
    return b.add(b.relu(x), b.log1p(b.exp(b.neg(b.abs(x)))))


@_activation
def log_sigmoid(b: Builder, x: Value) -> Value:
    """`log(sigmoid(x)) = -softplus(-x)`."""
    return b.neg(softplus(b, b.neg(x)))


@_activation
def softsign(b: Builder, x: Value) -> Value:
    """`x / (|x| + 1)`."""
    return b.div(x, b.add(b.abs(x), b.scalar(1.0, like=x)))


@_activation
def squareplus(builder: Builder, x: Value, b: float = 4.0) -> Value:
    """`(x + sqrt(x^2 + b)) / 2`."""
    root = builder.sqrt(builder.add(builder.square(x), builder.scalar(b, like=x)))
    # For x < 0 the sum cancels; the equal form b / (2 * (root - x)) keeps the precision.
    negative = builder.div(builder.scalar(b / 2, like=x), builder.sub(root, x))
    return _where_positive(builder, x, _scaled(builder, builder.add(x, root), 0.5), negative)


@_activation
def silu(b: Builder, x: Value) -> Value:
    """`x * sigmoid(x)` (also named `swish`)."""
    return b.mul(x, b.sigmoid(x))


@_activation
def gelu(b: Builder, x: Value, approximate: bool = False) -> Value:
    """`x * 0.5 * (1 + erf(x / sqrt(2)))`; with `approximate`, the tanh form
    `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`."""
    one = b.scalar(1.0, like=x)
    if approximate:
        cubic = b.add(x, _scaled(b, b.mul(b.square(x), x), 0.044715))
        inner = b.tanh(_scaled(b, cubic, math.sqrt(2.0 / math.pi)))
    else:
        inner = b.erf(_scaled(b, x, 1.0 / math.sqrt(2.0)))
    return b.mul(_scaled(b, x, 0.5), b.add(one, inner))


@_activation
def glu(b: Builder, x: Value, axis: int = -1) -> Value:
    """`a * sigmoid(g)`, where `a` and `g` are the first and second halves of `x` along `axis`."""
    size = x.type.shape[axis]
    if isinstance(size, str) or size % 2:
        raise ValueError(f"glu: axis size must be divisible by 2. Received: x.shape="
                         f"{x.type.shape} with axis={axis}")
    half = size // 2
    a = b.slice(x, starts=[0], ends=[half], axes=[axis], steps=[1])
    g = b.slice(x, starts=[half], ends=[size], axes=[axis], steps=[1])
    return b.mul(a, b.sigmoid(g))


@_activation
def mish(b: Builder, x: Value) -> Value:
    """`x * tanh(softplus(x))`."""
    return b.mul(x, b.tanh(softplus(b, x)))


@_activation
def hard_sigmoid(b: Builder, x: Value) -> Value:
    """`relu6(x + 3) / 6`: 0 below -3, 1 above 3, linear between."""
    return _scaled(b, relu6(b, b.add(x, b.scalar(3.0, like=x))), 1.0 / 6.0)


@_activation
def hard_silu(b: Builder, x: Value) -> Value:
    """`x * hard_sigmoid(x)` (also named `hard_swish`)."""
    return b.mul(x, hard_sigmoid(b, x))


swish, hard_swish = silu, hard_silu     # Keras 3's other names of both, as functions too


@_activation
def hard_tanh(b: Builder, x: Value) -> Value:
    """`x` clipped to [-1, 1]."""
    return _clip(b, x, -1.0, 1.0)


@_activation
def tanh_shrink(b: Builder, x: Value) -> Value:
    """`x - tanh(x)`."""
    return b.sub(x, b.tanh(x))


@_activation
def soft_shrink(b: Builder, x: Value, threshold: float = 0.5) -> Value:
    """`x - threshold` above `threshold`, `x + threshold` below `-threshold`, else 0."""
    t = b.scalar(threshold, like=x)
    shrunk = b.sub(x, _clip(b, x, -threshold, threshold))
    return b.select(b.greater(b.abs(x), t), shrunk, b.scalar(0.0, like=x))


@_activation
def hard_shrink(b: Builder, x: Value, threshold: float = 0.5) -> Value:
    """`x` where `|x| > threshold`, else 0."""
    keep = b.greater(b.abs(x), b.scalar(threshold, like=x))
    return b.select(keep, x, b.scalar(0.0, like=x))


@_activation
def sparse_plus(b: Builder, x: Value) -> Value:
    """0 for `x <= -1`, `(x + 1)^2 / 4` for `-1 < x < 1`, `x` for `x >= 1`."""
    middle = _scaled(b, b.square(b.add(_clip(b, x, -1.0, 1.0), b.scalar(1.0, like=x))), 0.25)
    return b.select(b.greater_equal(x, b.scalar(1.0, like=x)), x, middle)


@_activation
def sparse_sigmoid(b: Builder, x: Value) -> Value:
    """`(x + 1) / 2` clipped to [0, 1]."""
    return _scaled(b, b.add(_clip(b, x, -1.0, 1.0), b.scalar(1.0, like=x)), 0.5)


@_activation
def threshold(b: Builder, x: Value, threshold: float, default_value: float) -> Value:
    """`x` where `x > threshold`, else `default_value`."""
    return b.select(b.greater(x, b.scalar(threshold, like=x)), x, b.scalar(default_value, like=x))


@_activation
def sparsemax(b: Builder, x: Value, axis: int = -1) -> Value:
    """The Euclidean projection of `x` onto the probability simplex along `axis` (Martins and
    Astudillo, 2016): max(x - tau, 0), tau chosen so that the result sums to 1; sparse, unlike
    softmax. Sorted along the axis (`keras.ops.sort`'s way), so the axis must have a static length."""
    from nncompile.keras.ops.numpy import running
    from nncompile.keras.ops.sorting import sort_values

    if not -x.type.rank <= axis < x.type.rank:
        raise ValueError(f"sparsemax: axis {axis} is out of bounds for an input of rank {x.type.rank}")
    axis %= x.type.rank
    ordered = sort_values(b, x, axis, "sparsemax", descending=True)
    n = x.type.shape[axis]
    counts = b.constant(np.arange(1, n + 1, dtype=x.type.dtype.numpy).reshape(
        [n if a == axis else 1 for a in range(x.type.rank)]))
    totals = running(b, ordered, axis, "sparsemax")
    # the sorted elements kept are a prefix: those with z_1 + ... + z_k - k z_k < 1 (as 1 + k z_k >
    # z_1 + ... + z_k, but exact at k = 1 however large z_1 is)
    kept = b.less(b.sub(totals, b.mul(counts, ordered)), b.scalar(1.0, like=x))
    size = b.reduce_sum(b.cast(kept, dtype=x.type.dtype), axes=[axis], keepdims=True)
    kept_sum = b.reduce_sum(b.select(kept, ordered, b.scalar(0.0, like=x)), axes=[axis], keepdims=True)
    # x - tau with tau = (kept_sum - 1) / size, as (x - kept_sum / size) + 1 / size: the 1 is not
    # lost next to a large kept_sum
    mean = b.div(kept_sum, size)
    return b.relu(b.add(b.sub(x, mean), b.reciprocal(size)))


# lookup -------------------------------------------------------------------------------------------

def get(identifier: str | Emitter | dict | None) -> Emitter:
    """The activation named by `identifier`: a name, None (linear), a config dict or an emitter.

    A custom activation is a callable `(b: Builder, x: Value) -> Value` and is returned as is;
    a callable that cannot take those two arguments (`lambda x: x * 2`, `np.tanh`) is refused.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, dict):   # a config may name a custom function (a name may not, as in Keras)
        identifier = identifier.get("config", identifier.get("class_name"))
        custom = custom_object(identifier)
        if callable(custom):
            return get(custom)
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier, identifier)
        if name not in _REGISTRY:
            raise ValueError(f"Could not interpret activation function identifier: {identifier!r}; "
                             f"valid names: {', '.join(names())}")
        return _REGISTRY[name]
    if callable(identifier):
        return identifier if _is_emitter(identifier) else _traced(identifier)
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}; "
                     f"expected a name, None or a callable")


def _is_emitter(activation: Callable) -> bool:
    """Whether `activation` emits IR, `(b, x) -> Value`, rather than computing on a tensor as
    Keras's activations do, `x -> tensor` (numpy ufuncs, which compute on arrays, are refused)."""
    short = getattr(activation, "__name__", None) or repr(activation)
    if isinstance(activation, np.ufunc):
        hint = f"; for the built-in one, pass the name {short!r}" if short in _REGISTRY else ""
        raise ValueError(f"Activation 'numpy.{short}' is not usable: it is a numpy ufunc, which computes on "
                         f"arrays. Write it with keras.ops (`lambda x: keras.ops.tanh(x)`){hint}")
    try:
        signature = inspect.signature(activation)
    except ValueError:  # no signature to inspect (some builtins): taken as Keras's form
        return False
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return len([p for p in signature.parameters.values() if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) == 2


def _traced(fn: Callable) -> Emitter:
    """The emitter of an activation written as Keras's are, a function of one tensor with
    keras.ops: its call traced into the graph where the layer applies it."""
    from nncompile.keras import tracing     # tracing imports the layers, which import this module
    return tracing.activation_emitter(fn)


def serialize(activation: Emitter):
    """The name of a built-in activation; a custom one as Keras writes a function, by its
    registered name (a loader finds it among the custom objects)."""
    function = getattr(activation, "keras_function", activation)
    if _REGISTRY.get(getattr(function, "__name__", None)) is function:
        return function.__name__
    from nncompile.keras.saving.objects import serialize_keras_object   # saving imports this module
    return serialize_keras_object(function)


def deserialize(name: str | dict) -> Emitter:
    """The activation of a name or config written by `serialize`."""
    return get(name)


def names() -> list[str]:
    """Every name `get` accepts, sorted."""
    return sorted(set(_REGISTRY) | set(_ALIASES))
