"""Session-wide settings and layer naming, as `keras.backend` has them."""
from __future__ import annotations

import re
from collections import defaultdict

from nncompile.keras.dtypes import (is_float_dtype, is_int_dtype, result_type,  # noqa: F401
                                    standardize_dtype)

_name_counts: dict[str, int] = defaultdict(int)


_settings = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last"}


def floatx() -> str:
    """The default float dtype ("float32"; `keras.config.set_floatx` changes it)."""
    return _settings["floatx"]


def set_floatx(value: str) -> None:
    """Make `value` ("float16", "float32" or "float64") the default float dtype."""
    accepted = ("float16", "float32", "float64")   # Keras's, less bfloat16 (no IR dtype)
    if value not in accepted:
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of {set(accepted)}")
    _settings["floatx"] = str(value)


def epsilon() -> float:
    """The fuzz factor of numeric expressions (1e-7; `keras.config.set_epsilon` changes it)."""
    return _settings["epsilon"]


def set_epsilon(value: float) -> None:
    _settings["epsilon"] = value


def image_data_format() -> str:
    """'channels_last' unless `keras.config.set_image_data_format` said otherwise."""
    return _settings["image_data_format"]


def set_image_data_format(data_format: str) -> None:
    data_format = str(data_format).lower()
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError("The `data_format` argument must be one of {'channels_first', "
                         f"'channels_last'}}. Received: data_format={data_format}")
    _settings["image_data_format"] = data_format


def to_snake_case(name: str) -> str:
    """`MaxPooling2D` -> `max_pooling2d`, Keras's rule for default layer names."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def numbered(base: str, count: int) -> str:
    """Keras's numbering: `base` first, then `base_1`, `base_2`, ..."""
    return base if count == 0 else f"{base}_{count}"


def unique_name(base: str) -> str:
    """`dense`, then `dense_1`, `dense_2`, ... for the session."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return numbered(base, count)


def get_uid(prefix: str = "") -> int:
    """A counter of `prefix`, one more at every call: 1 first. Layer names share it, as in
    Keras (after one `Dense`, `get_uid("dense")` is 2 and the next Dense is `dense_2`);
    `clear_session` resets it.

    >>> clear_session(); get_uid("block"), get_uid("block")
    (1, 2)
    """
    _name_counts[prefix] += 1
    return _name_counts[prefix]


def clear_session() -> None:
    """Reset layer name counters, so the next Dense is `dense` again."""
    _name_counts.clear()


def is_keras_tensor(x) -> bool:
    """Whether `x` is a symbolic tensor of the functional API (what `keras.Input` returns).

    >>> from nncompile import keras
    >>> is_keras_tensor(keras.Input((3,))), is_keras_tensor([0.0])
    (True, False)
    """
    from nncompile.keras.layers.base import KerasTensor

    return isinstance(x, KerasTensor)


def backend() -> str:
    """The name of the backend, as Keras 3's `keras.backend.backend()` gives "jax", "torch" or
    "tensorflow": code that branches on it takes its backend-neutral path."""
    return "nncompile"
