"""`keras.random`: random tensors drawn with the IR's counter-based `random_uniform` op.

Eagerly, a draw is numpy arrays computed by that op's reference implementation. While a graph is
traced (`ops.tracing`), a draw adds a `random_uniform` node reading the graph's `seed` input,
which the training step sets anew for every batch, as `Dropout` does.

Seeds follow Keras: an int seed gives the same values at every eager call; a `SeedGenerator`
gives new values at each call, reproducibly from its own seed; None draws from the global numpy
generator (so `keras.utils.set_random_seed` makes it reproducible).

>>> from nncompile.keras import random
>>> bool((random.uniform((3,), seed=1) == random.uniform((3,), seed=1)).all())
True
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.types import BATCH
from nncompile.keras.ops.core import (EagerBuilder, active_builder, builder_for, dispatching,
                                      float_dtype, present, standardize_dtype, tensor, unwrap)
from nncompile.keras.ops.loops import Region

__all__ = ["SeedGenerator", "categorical", "dropout", "normal", "randint", "shuffle", "truncated_normal", "uniform"]


class SeedGenerator:
    """A stream of seeds: each random call that is given it draws the next one.

    >>> gen = SeedGenerator(42)
    >>> bool((normal((2,), seed=gen) != normal((2,), seed=gen)).all())
    True
    """

    def __init__(self, seed=None, name=None, **kwargs):
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
            raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed}")
        self.seed = int(np.random.randint(0, 2**31)) if seed is None else int(seed)
        self.name = name
        self.state = 0

    def next(self, ordered=True) -> int:
        """The next seed of the stream (a 63-bit int) and one step on."""
        words = np.random.SeedSequence([self.seed, self.state]).generate_state(2, np.uint32)
        self.state += 1
        return (int(words[0]) << 31) ^ int(words[1])


def _draw(seed) -> int:
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if seed is None:
        return int(np.random.randint(0, 2**31))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    raise ValueError(f"Argument `seed` must be either an integer or an instance of "
                     f"`SeedGenerator`. Received: seed={seed} (of type {type(seed)})")


def _dims(shape) -> list:
    """Keras's shape as IR dims: None (known when the model runs) is the batch symbol."""
    return [BATCH if d is None else int(d) for d in shape]


def _uniform01(b, dims: list, seed):
    """f32 uniform [0, 1) of `dims`: eagerly from the drawn seed, traced from the graph's seed
    input keyed by the draw (so each call site has its own stream)."""
    draw = _draw(seed)
    if isinstance(b, EagerBuilder):
        return b.random_uniform(b.constant(np.asarray(draw, np.int64)), shape=dims)
    return b.random_uniform(_graph_seed(b), shape=dims, key=draw)


def _graph_seed(b):
    """The seed input of the graph being traced; inside a loop body, the enclosing graph's,
    captured (so a draw in a scan body is the same at every step)."""
    if isinstance(b, Region):
        return b.local(_graph_seed(b.outer))
    # Imported here: layers may use keras.random, and layers.core would be half-imported.
    from nncompile.keras.layers.core import seed_input

    return seed_input(b)


def _builder(*args):
    """The trace's builder while a trace is active (draws have no tensor argument to ask)."""
    return active_builder() or builder_for("random", *args)


@dispatching
def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Values uniform in [minval, maxval) of `shape`, in `dtype` (default floatx)."""
    b = _builder()
    u = _uniform01(b, _dims(shape), seed)
    scaled = b.add(b.mul(u, b.scalar(maxval - minval, u)), b.scalar(minval, u))
    return present(unwrap(tensor(b, scaled, standardize_dtype(dtype))))


@dispatching
def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normally distributed values of `shape` (Box-Muller on two uniform draws)."""
    b = _builder()
    z = _standard_normal(b, _dims(shape), seed)
    out = b.add(b.mul(z, b.scalar(stddev, z)), b.scalar(mean, z))
    return present(unwrap(tensor(b, out, standardize_dtype(dtype))))


def _standard_normal(b, dims: list, seed):
    """f32 standard normal values of `dims`, by Box-Muller on two uniform draws."""
    u = _uniform01(b, [2, *dims], seed)
    first, second = (b.reshape(b.slice(u, starts=[i], ends=[i + 1], axes=[0], steps=[1]),
                               shape=list(u.type.shape[1:])) for i in (0, 1))
    one = b.scalar(1.0, u)
    # 1 - u lies in (0, 1], so the log is finite.
    radius = b.sqrt(b.mul(b.scalar(-2.0, u), b.log(b.sub(one, first))))
    return b.mul(radius, b.cos(b.mul(second, b.scalar(2 * np.pi, u))))


@dispatching
def randint(shape, minval, maxval, dtype="int32", seed=None):
    """Integers uniform in [minval, maxval) of `shape`."""
    b = _builder()
    u = _uniform01(b, _dims(shape), seed)
    ints = b.floor(b.mul(u, b.scalar(maxval - minval, u)))
    return present(unwrap(tensor(b, b.add(ints, b.scalar(minval, u)), standardize_dtype(dtype))))


@dispatching
def dropout(inputs, rate, noise_shape=None, seed=None):
    """`inputs` with a fraction `rate` of elements zeroed and the rest scaled by 1 / (1 - rate);
    `noise_shape` (None entries: the input's) shares one mask along axes of size 1."""
    if not 0 <= rate < 1:
        raise ValueError(f"Invalid value received for argument `rate`. Expected a float value "
                         f"between 0 and 1. Received: rate={rate}")
    b = _builder(inputs)
    x = tensor(b, inputs, float_dtype(inputs))
    dims = x.type.shape
    shape = dims if noise_shape is None else [d if n is None else int(n)
                                              for d, n in zip(dims, noise_shape)]
    draws = _uniform01(b, list(shape), seed)
    keep = tensor(b, b.greater_equal(draws, b.scalar(rate, draws)), x.type.dtype)
    return unwrap(b.mul(x, b.mul(keep, b.scalar(1 / (1 - rate), x))))


@dispatching
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal values of `shape` within two standard deviations of the mean: each drawn again
    while it falls outside, as Keras's (8 rounds, after which one in 10**10 is left, clipped)."""
    b = _builder()
    dims = _dims(shape)
    rounds = 8
    draws = _standard_normal(b, [rounds, *dims], seed)
    out = None
    for k in range(rounds - 1, -1, -1):   # the first draw inside wins
        z = b.reshape(b.slice(draws, starts=[k], ends=[k + 1], axes=[0], steps=[1]), shape=dims)
        inside = b.less_equal(b.abs(z), b.scalar(2.0, z))
        out = b.minimum(b.maximum(z, b.scalar(-2.0, z)), b.scalar(2.0, z)) if out is None else b.select(inside, z, out)
    scaled = b.add(b.mul(out, b.scalar(stddev, out)), b.scalar(mean, out))
    return present(unwrap(tensor(b, scaled, standardize_dtype(dtype))))


@dispatching
def categorical(logits, num_samples, dtype="int32", seed=None):
    """`num_samples` class indices per row of `logits` (batch, classes), drawn with the
    probabilities softmax(logits): the Gumbel-max trick, argmax(logits + Gumbel noise)."""
    b = _builder(logits)
    v = tensor(b, logits, float_dtype(logits))
    if v.type.rank != 2:
        raise ValueError(f"`logits` should be a 2-D tensor with shape [batch_size, num_classes]. "
                         f"Received: logits.shape={tuple(v.type.shape)}")
    batch, classes = v.type.shape
    u = _uniform01(b, [batch, int(num_samples), classes], seed)
    tiny = b.scalar(float(np.finfo(np.float32).tiny), u)
    gumbel = b.neg(b.log(b.neg(b.log(b.maximum(u, tiny)))))
    scores = b.add(b.reshape(tensor(b, v, "float32"), shape=[batch, 1, classes]), gumbel)
    return present(unwrap(tensor(b, b.op("argmax", scores, axis=2), standardize_dtype(dtype))))


@dispatching
def shuffle(x, axis=0, seed=None):
    """`x` with its slices along `axis` in a random order (a stable sort of uniform keys)."""
    from nncompile.keras.ops.arrays import take
    from nncompile.keras.ops.core import canonical_axis
    from nncompile.keras.ops.sorting import argsort

    b = _builder(x)
    v = tensor(b, x)
    axis = canonical_axis(axis, v.type.rank, "shuffle")
    keys = _uniform01(b, [v.type.shape[axis]], seed)
    with_keys = argsort.__wrapped__(b, keys)
    return present(unwrap(take.__wrapped__(b, v, with_keys, axis=axis)))
