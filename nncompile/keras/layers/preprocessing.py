"""Preprocessing layers that are plain arithmetic: Rescaling, Normalization (with `adapt`),
CategoryEncoding and Discretization (with `adapt`)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from nncompile.ir import Builder, DType, ShapeError, Value
from nncompile.keras.layers.arguments import ArgumentError, boolean, owner_of
from nncompile.keras.layers.base import Layer
from nncompile.keras.ops import nn as nn_ops
from nncompile.keras.utils.py_dataset import PyDataset

# Keras's backend.epsilon(): the floor of the standard deviation Normalization divides by
EPSILON = 1e-7


def _factor(value, name: str, owner: str) -> float | np.ndarray:
    """A number, or numbers (per channel) that broadcast against the input's last axes."""
    try:
        array = None if isinstance(value, bool) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.isfinite(array).all():
        raise ArgumentError(f"{owner}: `{name}` must be a finite number or a list of them. "
                            f"Received: {name}={value!r}")
    return float(array) if array.ndim == 0 else array


class Rescaling(Layer):
    """`inputs * scale + offset`, e.g. `Rescaling(1. / 255)` to bring pixels into [0, 1] or
    `Rescaling(1. / 127.5, offset=-1)` into [-1, 1]. Integer inputs are cast to the layer's dtype.

    >>> Rescaling(0.5, offset=1.0)(np.array([[2, 4]], "uint8")).tolist()
    [[2.0, 3.0]]
    """

    acts_per_step = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.scale, self.offset = _factor(scale, "scale", owner), _factor(offset, "offset", owner)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        dtype = DType.from_numpy(self.dtype)
        x = inputs if inputs.type.dtype == dtype else b.cast(inputs, dtype=dtype)
        return b.add(b.mul(x, self._constant(b, self.scale, x)), self._constant(b, self.offset, x))

    @staticmethod
    def _constant(b: Builder, value, like: Value) -> Value:
        if isinstance(value, float):
            return b.scalar(value, like)
        return b.constant(value.astype(like.type.dtype.numpy))

    def get_config(self) -> dict[str, Any]:
        plain = [v if isinstance(v, float) else v.tolist() for v in (self.scale, self.offset)]
        return {**super().get_config(), "scale": plain[0], "offset": plain[1]}


class Normalization(Layer):
    """`(x - mean) / max(sqrt(variance), 1e-7)` per position of the kept `axis` (default -1, the
    features; None: one mean for everything), as Keras 3. The statistics are given (`mean`,
    `variance`: numbers or arrays broadcasting against the kept axes) or learned by
    `adapt(data)`, which stores them as the non-trainable weights `mean`, `variance` (and
    `count`, as Keras keeps it). `invert=True` maps normalized values back.

    >>> layer = Normalization()
    >>> layer.adapt(np.array([[0.0, 10.0], [2.0, 30.0]], "float32"))
    >>> layer(np.array([[1.0, 20.0]], "float32")).tolist()
    [[0.0, 0.0]]
    """

    supports_masking = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.axis = _axes(axis, owner)
        self.invert = boolean(invert, "invert", owner)
        if (mean is None) != (variance is None):
            raise ArgumentError(f"{owner}: when setting values directly, both `mean` and "
                                f"`variance` must be set. Received: mean={mean!r} and "
                                f"variance={variance!r}")
        self.input_mean, self.input_variance = mean, variance
        if mean is not None:
            mean_shape, variance_shape = np.shape(mean), np.shape(variance)
            if mean_shape != variance_shape:
                raise ArgumentError(f"{owner}: `mean` and `variance` must have the same shape. "
                                    f"Received: mean shape {mean_shape} and variance shape "
                                    f"{variance_shape}")
            if len(mean_shape) > len(self.axis):
                raise ArgumentError(f"{owner}: the rank of `mean` must be at most the number "
                                    f"of axes ({len(self.axis)}). Received: mean shape "
                                    f"{mean_shape} for axis {self.axis}")
        self._keep: tuple[int, ...] | None = None

    def build(self, input_shape) -> None:
        rank = len(input_shape)
        owner = owner_of(self)
        if any(not -rank <= a < rank for a in self.axis):
            raise ValueError(f"{owner}: all `axis` values must be in the range [-ndim, ndim). "
                             f"Received inputs with ndim={rank}, while axis={self.axis}")
        self._keep = tuple(sorted(a % rank for a in self.axis))
        if any(input_shape[a] is None for a in self._keep):
            raise ValueError(f"{owner}: the kept axes {self.axis} must have a known size. "
                             f"Received: input_shape={tuple(input_shape)}")
        self._input_shape = tuple(input_shape)
        if self.input_mean is None:
            shape = tuple(input_shape[a] for a in self._keep)
            self.adapt_mean = self.add_weight(shape, "zeros", trainable=False, name="mean")
            self.adapt_variance = self.add_weight(shape, "ones", trainable=False, name="variance")
            self.count = self.add_weight((), "zeros", dtype="int32", trainable=False, name="count")
        self.built = True

    def adapt(self, data) -> None:
        """Learn the mean and variance of `data` over the axes not kept: an array (one batch),
        a PyDataset, or any iterable of batches (the `x` of `(x, y)` batches), merged batch by
        batch as Keras 3 does."""
        if self.input_mean is not None:
            raise ValueError(f"{owner_of(self)}: adapt() learns `mean` and `variance`, which "
                             f"this layer was given")
        batches = _batches(data, owner_of(self))
        first = next(batches, None)
        if first is None:
            raise ValueError(f"{owner_of(self)}: adapt() received no batches")
        if not self.built:
            self.build((None,) + first.shape[1:])
        mean = variance = 0.0
        count = 0
        for batch in (first, *batches):
            self._check_batch(batch)
            reduce = tuple(a for a in range(batch.ndim) if a not in self._keep)
            batch_count = int(np.prod([batch.shape[a] for a in reduce], dtype=np.int64))
            count += batch_count
            weight = batch_count / count
            batch_mean, batch_variance = batch.mean(axis=reduce), batch.var(axis=reduce)
            merged = mean * (1 - weight) + batch_mean * weight
            variance = ((variance + (mean - merged) ** 2) * (1 - weight)
                        + (batch_variance + (batch_mean - merged) ** 2) * weight)
            mean = merged
        self.adapt_mean.assign(mean)
        self.adapt_variance.assign(variance)

    def _check_batch(self, batch: np.ndarray) -> None:
        if batch.ndim != len(self._input_shape) or any(
                batch.shape[a] != self._input_shape[a] for a in self._keep):
            raise ValueError(f"{owner_of(self)}: adapt() received a batch of shape {batch.shape}; "
                             f"the layer was built for input_shape={self._input_shape}")

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        dtype = DType.from_numpy(self.dtype)
        x = inputs if inputs.type.dtype == dtype else b.cast(inputs, dtype=dtype)
        if x.type.rank != len(self._input_shape):
            raise ShapeError(f"{owner_of(self)}: built for inputs of rank "
                             f"{len(self._input_shape)}, received rank {x.type.rank}")
        mean, variance = self._statistics(b, x)
        scale = b.maximum(b.sqrt(variance), b.scalar(EPSILON, variance))
        if self.invert:
            return b.add(b.mul(x, scale), mean)
        return b.div(b.sub(x, mean), scale)

    def _statistics(self, b: Builder, x: Value) -> tuple[Value, Value]:
        """The mean and variance shaped to broadcast against `x` (1 on the reduced axes)."""
        rank = x.type.rank
        shape = [x.type.shape[a] if a in self._keep else 1 for a in range(rank)]
        if self.input_mean is None:
            pair = (self.param(b, self.adapt_mean), self.param(b, self.adapt_variance))
            return tuple(b.reshape(v, shape=shape) for v in pair)
        out = []
        for given in (self.input_mean, self.input_variance):
            array = np.asarray(given, dtype=np.float64)
            # as Keras: the array's axes line up with the last kept axes
            expanded = [1] * rank
            for i in range(1, array.ndim + 1):
                expanded[self._keep[-i]] = array.shape[-i]
            full = np.broadcast_to(array.reshape(expanded), shape)
            out.append(b.constant(full.astype(x.type.dtype.numpy)))
        return out[0], out[1]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": np.array(self.input_mean).tolist(),
                "variance": np.array(self.input_variance).tolist()}


def _axes(axis, owner: str) -> tuple[int, ...]:
    """Keras's `axis`: None (no axis kept), an int, or a list / tuple of ints."""
    axes = () if axis is None else (axis,) if isinstance(axis, (int, np.integer)) else axis
    if not isinstance(axes, (list, tuple)) or any(
            isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
        raise ArgumentError(f"{owner}: the `axis` argument must be None, an int or a list of "
                            f"ints. Received: axis={axis!r}")
    return tuple(int(a) for a in axes)


def _batches(data, owner: str) -> Iterable[np.ndarray]:
    """The float64 batches of `data` for adapt: an array is one batch, a PyDataset is read by
    index, any other iterable batch after batch; of a tuple batch, its first element (x)."""
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        items = iter([data])
    elif isinstance(data, PyDataset):
        items = (data[i] for i in range(data.num_batches))
    elif hasattr(data, "__iter__"):
        items = iter(data)
    else:
        raise TypeError(f"{owner}: adapt() takes an array, a keras.utils.PyDataset or an "
                        f"iterable of batches. Received: {type(data).__name__}")
    return (np.asarray(item[0] if isinstance(item, tuple) else item, dtype=np.float64)
            for item in items)


def encode(b: Builder, ids: Value, mode: str, depth: int, dtype: str) -> Value:
    """Keras 3's `encode_categorical_inputs` on JAX: "one_hot" (a trailing axis of 1 dropped),
    "multi_hot" or "count" over axis 1 (axis 0 for one sample's ids, rank 1), in `dtype`."""
    ids = ids if ids.type.rank else b.reshape(ids, shape=[1])
    if mode == "multi_hot":
        return nn_ops.multi_hot.__wrapped__(b, ids, depth, dtype=dtype)
    if mode == "one_hot" and ids.type.rank > 1 and ids.type.shape[-1] == 1:
        ids = b.reshape(ids, shape=list(ids.type.shape[:-1]))
    hot = nn_ops.one_hot.__wrapped__(b, ids, depth, dtype=dtype)
    if mode == "one_hot":
        return hot
    return b.reduce_sum(hot, axes=[1 if ids.type.rank > 1 else 0], keepdims=False)


class CategoryEncoding(Layer):
    """Integer category ids as vectors of `num_tokens`, as Keras 3 on JAX encodes them:
    "one_hot" (a trailing axis of 1 is dropped first), "multi_hot" (default; "binary" is its old
    name: 1 where an id occurs among a sample's ids, axis 1) or "count" (how often it occurs). An
    id outside [0, num_tokens) counts nowhere. Rank-1 input is one sample's ids for "multi_hot"
    and "count", as in Keras.

    >>> CategoryEncoding(4)(np.array([[0, 3], [2, 2]])).tolist()
    [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
    """

    MODES = ("count", "one_hot", "multi_hot")

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        output_mode = "multi_hot" if output_mode == "binary" else output_mode
        if output_mode not in self.MODES:
            raise ValueError(f"Unknown arg for output_mode: {output_mode}")
        if num_tokens is None:
            raise ValueError("num_tokens must be set to use this layer. If the number of tokens is not "
                             "known beforehand, use the IntegerLookup layer instead.")
        if num_tokens < 1:
            raise ValueError(f"`num_tokens` must be >= 1. Received: num_tokens={num_tokens}.")
        if sparse:
            raise NotImplementedError(f"{owner_of(self)}: `sparse=True` is not supported by nncompile")
        self.num_tokens, self.output_mode, self.sparse = int(num_tokens), output_mode, False

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "one_hot" and len(shape) > 1 and shape[-1] == 1:
            shape = shape[:-1]
        elif self.output_mode != "one_hot":
            shape = shape[:-1]
        return shape + (self.num_tokens,)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return encode(b, inputs, self.output_mode, self.num_tokens, self.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_tokens": self.num_tokens, "output_mode": self.output_mode}


class Discretization(Layer):
    """Buckets numbers by `bin_boundaries`, or by `num_bins` boundaries that `adapt(data)` learns
    from the data's quantiles with Keras 3's summaries (approximate within `epsilon`, merged
    batch by batch), as Keras 3: "int" gives each number's bucket (how many boundaries are at or
    below it, as `np.digitize`), "one_hot", "multi_hot" and "count" encode those as
    CategoryEncoding does.

    >>> layer = Discretization(num_bins=4, epsilon=0.01)
    >>> layer.adapt(np.array([[-1.5, 1.0, 3.4, .5], [0.0, 3.0, 1.3, 0.0]]))
    >>> layer(np.array([[-1.5, 1.0, 3.4, .5], [0.0, 3.0, 1.3, 0.0]])).tolist()
    [[0, 2, 3, 2], [1, 3, 3, 1]]
    """

    MODES = ("int", "one_hot", "multi_hot", "count")

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int", sparse=False,
                 **kwargs):
        super().__init__(**kwargs)
        if sparse:
            raise NotImplementedError(f"{owner_of(self)}: `sparse=True` is not supported by nncompile")
        if output_mode not in self.MODES:
            raise ValueError(f"Invalid value for argument output_mode. Expected one of {list(self.MODES)}. "
                             f"Received: output_mode={output_mode}")
        if num_bins is not None and num_bins < 0:
            raise ValueError(f"`num_bins` must be greater than or equal to 0. Received: `num_bins={num_bins}`")
        if num_bins is not None and bin_boundaries is not None:
            raise ValueError(f"Both `num_bins` and `bin_boundaries` should not be set. Received: "
                             f"`num_bins={num_bins}` and `bin_boundaries={bin_boundaries}`")
        if num_bins is None and bin_boundaries is None:
            raise ValueError("You need to set either `num_bins` or `bin_boundaries`.")
        self.bin_boundaries = None if bin_boundaries is None else [float(v) for v in bin_boundaries]
        self.num_bins, self.epsilon, self.output_mode, self.sparse = num_bins, epsilon, output_mode, False
        self.summary = None if self.bin_boundaries else np.zeros((2, 0), np.float32)

    def adapt(self, data) -> None:
        """Learn `num_bins - 1` boundaries from `data`: an array, or batches (see Normalization)."""
        if self.num_bins is None:
            raise ValueError("Cannot adapt a Discretization layer that has been initialized with "
                             "`bin_boundaries`, use `num_bins` instead.")
        self.summary = np.zeros((2, 0), np.float32)
        for batch in _batches(data, owner_of(self)):
            self.summary = _merged(_summary(np.asarray(batch, np.float32), self.epsilon), self.summary,
                                   self.epsilon)
        self.bin_boundaries = _compressed(self.summary, 1.0 / self.num_bins)[0, :-1].tolist()

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "int":
            return shape
        depth = len(self.bin_boundaries) + 1 if self.bin_boundaries is not None else self.num_bins
        if self.output_mode == "one_hot":
            return (shape[:-1] if len(shape) > 1 and shape[-1] == 1 else shape) + (depth,)
        return (shape[0], *shape[2:], depth) if len(shape) >= 2 else (depth,)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if self.bin_boundaries is None:
            raise ValueError("You need to either pass the `bin_boundaries` argument at construction time "
                             "or call `adapt(dataset)` before you can start using the `Discretization` layer.")
        x = inputs if inputs.type.dtype == DType.f32 else b.cast(inputs, dtype=DType.f32)
        bounds = b.constant(np.asarray(self.bin_boundaries, np.float32))
        at_or_below = b.cast(b.greater_equal(b.reshape(x, shape=[*x.type.shape, 1]), bounds), dtype=DType.i32)
        buckets = b.reduce_sum(at_or_below, axes=[x.type.rank], keepdims=False)
        # NaN sorts last, as np.digitize puts it
        buckets = b.select(b.not_equal(x, x), b.scalar(len(self.bin_boundaries), buckets), buckets)
        if self.output_mode == "int":
            return buckets
        return encode(b, buckets, self.output_mode, len(self.bin_boundaries) + 1, self.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bin_boundaries": self.bin_boundaries, "num_bins": self.num_bins,
                "epsilon": self.epsilon, "output_mode": self.output_mode, "sparse": self.sparse}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        boundaries = config.pop("bin_boundaries", None) if config.get("num_bins") is not None else None
        layer = cls(**config)
        if boundaries is not None:   # learned by adapt: kept beside num_bins, as Keras does
            layer.bin_boundaries = [float(v) for v in boundaries]
        return layer


def _summary(values: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's `summarize`: about 1 / epsilon of the sorted values, each weighing the values
    it stands for, as a (2, n) array of values and weights."""
    values = np.sort(values.reshape(-1))
    step = max(values.size / (1.0 / epsilon), 1)   # Keras's arithmetic, for the same float steps
    picked = values[int(step - 1)::int(step)]
    return np.stack([picked, np.ones_like(picked) * step])


def _merged(first: np.ndarray, second: np.ndarray, epsilon: float) -> np.ndarray:
    """Two summaries as one, in value order, compressed to about 1 / epsilon entries."""
    joined = np.concatenate((first, second), axis=1)
    return _compressed(joined[:, np.argsort(joined[0])], epsilon)


def _compressed(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """The values at the cumulative weight fractions epsilon, 2 epsilon, ... 1 (interpolated),
    each with the weight between it and the one before (Keras's `compress_summary`)."""
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cumulative = summary[1].cumsum()
    fractions = cumulative / cumulative[-1]
    values = np.interp(percents, fractions, summary[0])
    cumulative = np.interp(percents, fractions, cumulative)
    weights = cumulative - np.concatenate((np.array([0]), cumulative[:-1]))
    return np.stack((values, weights)).astype(np.float32)
