"""Session-wide settings and layer naming, as `keras.backend` has them."""
from __future__ import annotations

import re
from collections import defaultdict

_name_counts: dict[str, int] = defaultdict(int)


def floatx() -> str:
    return "float32"


def epsilon() -> float:
    return 1e-7


def image_data_format() -> str:
    return "channels_last"


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


def clear_session() -> None:
    """Reset layer name counters, so the next Dense is `dense` again."""
    _name_counts.clear()
