"""Weight initializers, with Keras 3's classes, names, defaults and formulas.

An initializer is a callable `init(shape, dtype=None) -> np.ndarray`. Unseeded initializers draw
from one module-level generator, which `keras.utils.set_random_seed` reseeds, so models built
after the same seed get the same weights (before any such seed, from numpy's global state, which
`np.random.seed` seeds). A seeded initializer gives the same values on every call.

>>> from nncompile.keras import initializers
>>> init = initializers.get("he_normal")
>>> init((3, 3, 16, 32)).shape
(3, 3, 16, 32)
>>> initializers.Constant(2.0)((2,)).tolist()
[2.0, 2.0]
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from nncompile.keras import backend
from nncompile.keras.serialization import Catalog, KerasObject

Shape = Sequence[int]

# Set by `keras.utils.set_random_seed`; until then unseeded initializers draw from numpy's global
# state, so that `np.random.seed(9)`, what the old tutorials write, makes runs repeat (Keras 1
# on Theano drew its weights from it; Keras 3 does not).
_generator: np.random.Generator | None = None


def reseed(seed: int | None) -> None:
    """Restart the global generator from `seed` (`keras.utils.set_random_seed` calls this);
    None returns to numpy's global state."""
    global _generator
    _generator = None if seed is None else np.random.default_rng(seed)


def _global_generator() -> np.random.Generator:
    if _generator is not None:
        return _generator
    return np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))


def compute_fans(shape: Shape, input_axes: Sequence[int] | None = None,
                 output_axes: Sequence[int] | None = None) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: the products of `input_axes` and `output_axes` when both
    are given (an EinsumDense kernel's); else (in, out) for a matrix, and for a conv kernel
    (..., in, out) each times the receptive field (the product of the leading dims)."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer(KerasObject):
    """Base class: subclasses define `__call__(shape, dtype=None)` and `get_config`."""

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        raise NotImplementedError(f"Initializer subclasses must implement the `__call__()` method "
                                  f"({type(self).__name__} does not)")


def _dtype(dtype: str | None) -> np.dtype:
    return np.dtype(dtype or backend.floatx())


class Zeros(Initializer):
    """All zeros.

    >>> Zeros()((2,)).tolist()
    [0.0, 0.0]
    """

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        return np.zeros(tuple(shape), _dtype(dtype))


class Ones(Initializer):
    """All ones.

    >>> Ones()((2,)).tolist()
    [1.0, 1.0]
    """

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        return np.ones(tuple(shape), _dtype(dtype))


class Constant(Initializer):
    """Every element `value`.

    >>> Constant(0.5)((3,)).tolist()
    [0.5, 0.5, 0.5]
    """

    def __init__(self, value: float = 0.0):
        self.value = value

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        return np.full(tuple(shape), self.value, _dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomInitializer(Initializer):
    """Base of random initializers: an int `seed` makes every call give the same values."""

    def __init__(self, seed: int | None = None):
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
            raise ValueError(f"{type(self).__name__}: `seed` argument should be an integer or None. "
                             f"Received: seed={seed!r}")
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return _global_generator() if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        return self._draw(self._rng(), tuple(shape)).astype(_dtype(dtype))

    def _draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define _draw")

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], mean: float,
                     stddev: float) -> np.ndarray:
    """Normal draws, each one beyond two standard deviations drawn again."""
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return mean + stddev * z


class RandomUniform(RandomInitializer):
    """Uniform on [minval, maxval).

    >>> w = RandomUniform(-1.0, 1.0, seed=0)((100,))
    >>> bool((w >= -1).all() and (w < 1).all())
    True
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval = minval
        self.maxval = maxval

    def _draw(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class RandomNormal(RandomInitializer):
    """Normal with `mean` and `stddev`.

    >>> RandomNormal(stddev=1.0, seed=0)((4,)).shape
    (4,)
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean = mean
        self.stddev = stddev

    def _draw(self, rng, shape):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TruncatedNormal(RandomNormal):
    """Normal with `mean` and `stddev`, values beyond two `stddev` from the mean redrawn.

    >>> w = TruncatedNormal(stddev=1.0, seed=0)((1000,))
    >>> bool(abs(w).max() <= 2.0)
    True
    """

    def _draw(self, rng, shape):
        return _truncated_normal(rng, shape, self.mean, self.stddev)


# The standard deviation of a unit normal truncated to [-2, 2]: dividing by it keeps the variance.
_TRUNCATED_STDDEV = 0.87962566103423978


class VarianceScaling(RandomInitializer):
    """Draws with variance `scale / n`, `n` being fan_in, fan_out or their mean (`mode`).

    `distribution` "truncated_normal" (also "normal") and "untruncated_normal" draw normals,
    "uniform" draws from [-limit, limit] with `limit = sqrt(3 * scale / n)`.

    >>> VarianceScaling(2.0, "fan_in", "uniform", seed=0)((64, 32)).shape
    (64, 32)
    """

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None,
                 input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None):
        super().__init__(seed)
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)
        if not scale > 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in self.MODES:
            raise ValueError(f"Invalid `mode` argument: {mode!r}; expected one of "
                             f"{', '.join(self.MODES)}")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"Invalid `distribution` argument: {distribution!r}; expected one of "
                             f"{', '.join(self.DISTRIBUTIONS)}")
        self.scale = scale
        self.mode = mode
        self.distribution = distribution

    def _draw(self, rng, shape):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), shape)
        return _truncated_normal(rng, shape, 0.0, math.sqrt(scale) / _TRUNCATED_STDDEV)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config(), "input_axes": self.input_axes, "output_axes": self.output_axes}


def _variance_scaling_preset(name: str, scale: float, mode: str, distribution: str, doc: str):
    def __init__(self, seed: int | None = None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc, "__module__": __name__})


GlorotUniform = _variance_scaling_preset(
    "GlorotUniform", 1.0, "fan_avg", "uniform",
    "Uniform on [-limit, limit], `limit = sqrt(6 / (fan_in + fan_out))`.\n\n"
    "    >>> GlorotUniform(seed=0)((4, 4)).shape\n    (4, 4)\n")
GlorotNormal = _variance_scaling_preset(
    "GlorotNormal", 1.0, "fan_avg", "truncated_normal",
    "Truncated normal, `stddev = sqrt(2 / (fan_in + fan_out))`.\n\n"
    "    >>> GlorotNormal(seed=0)((4, 4)).shape\n    (4, 4)\n")
HeUniform = _variance_scaling_preset(
    "HeUniform", 2.0, "fan_in", "uniform",
    "Uniform on [-limit, limit], `limit = sqrt(6 / fan_in)`.\n\n"
    "    >>> HeUniform(seed=0)((4, 4)).shape\n    (4, 4)\n")
HeNormal = _variance_scaling_preset(
    "HeNormal", 2.0, "fan_in", "truncated_normal",
    "Truncated normal, `stddev = sqrt(2 / fan_in)`.\n\n"
    "    >>> HeNormal(seed=0)((4, 4)).shape\n    (4, 4)\n")
LecunUniform = _variance_scaling_preset(
    "LecunUniform", 1.0, "fan_in", "uniform",
    "Uniform on [-limit, limit], `limit = sqrt(3 / fan_in)`.\n\n"
    "    >>> LecunUniform(seed=0)((4, 4)).shape\n    (4, 4)\n")
LecunNormal = _variance_scaling_preset(
    "LecunNormal", 1.0, "fan_in", "truncated_normal",
    "Truncated normal, `stddev = sqrt(1 / fan_in)`.\n\n"
    "    >>> LecunNormal(seed=0)((4, 4)).shape\n    (4, 4)\n")


@functools.cache
def _openblas_thread_setter() -> Callable[[int], int] | None:
    """numpy's OpenBLAS `openblas_set_num_threads_local` (the calling thread's count; returns the
    one it replaces), or None (another BLAS, an older OpenBLAS, no /proc)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            setter = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on the calling thread alone: OpenBLAS's threads spin-wait for each other, so
    with the other core busy a 512 x 128 QR took 1.7 s instead of 5 ms (an LSTM(128)'s
    recurrent kernel, on a 2-core machine running a second process)."""
    setter = _openblas_thread_setter()
    previous = setter(1) if setter else None
    try:
        yield
    finally:
        if setter:
            setter(previous)


class Orthogonal(RandomInitializer):
    """An orthogonal matrix (of the weight flattened to (prod(shape[:-1]), shape[-1])) times `gain`.

    >>> q = Orthogonal(seed=0)((4, 4))
    >>> bool(np.allclose(q @ q.T, np.eye(4), atol=1e-5))
    True
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.gain = gain

    def _draw(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializer requires a shape with at least 2 dimensions. "
                             f"Received: shape={shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        with _one_blas_thread():
            q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        # Multiplying by the signs of diag(r) makes the distribution uniform (Haar).
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    """`gain` times the identity matrix (2-D shapes only).

    >>> Identity()((2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape: Shape, dtype: str | None = None) -> np.ndarray:
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity matrix initializer can only be used for 2D matrices. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(_dtype(dtype))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


_CLASSES = (Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling,
            GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal,
            Identity)
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({backend.to_snake_case(cls.__name__): cls for cls in _CLASSES})
_BY_NAME.update({"uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros,
                 "OrthogonalInitializer": Orthogonal, "IdentityInitializer": Identity})

# Lowercase function-style aliases, as `keras.initializers.glorot_uniform` has them.
zeros, ones, constant = Zeros, Ones, Constant
random_uniform, random_normal, truncated_normal = RandomUniform, RandomNormal, TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform, glorot_normal, he_uniform, he_normal = GlorotUniform, GlorotNormal, HeUniform, HeNormal
lecun_uniform, lecun_normal, orthogonal, identity = LecunUniform, LecunNormal, Orthogonal, Identity
OrthogonalInitializer, IdentityInitializer = Orthogonal, Identity     # Keras 3's other names for them


_CATALOG = Catalog("initializer", Initializer, "keras.initializers", _BY_NAME, "(shape, dtype) -> array")


def get(identifier) -> Callable[..., np.ndarray] | None:
    """The initializer for a name, a config dict `{"class_name", "config"}`, an instance, a class or a
    callable (shape, dtype) -> array; None gives None."""
    return _CATALOG.get(identifier)


def serialize(initializer):
    """Keras 3's config dict of a Initializer; None and plain callables as they are."""
    return _CATALOG.serialize(initializer)


def deserialize(config) -> Callable[..., np.ndarray] | None:
    """The initializer of a config written by `serialize`."""
    return _CATALOG.get(config)
