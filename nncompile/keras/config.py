"""`keras.config`: the session's settings (the dtype of floats, epsilon, the image layout).

The values live in `nncompile.keras.backend`, which layers read; this module is Keras 3's
spelling of them.

>>> from nncompile.keras import config
>>> config.floatx(), config.epsilon(), config.image_data_format()
('float32', 1e-07, 'channels_last')
"""
from __future__ import annotations

from nncompile.keras.backend import (epsilon, floatx, image_data_format, set_epsilon, set_floatx,
                                     set_image_data_format)

__all__ = ["backend", "disable_traceback_filtering", "enable_traceback_filtering", "epsilon",
           "floatx", "image_data_format", "is_traceback_filtering_enabled", "set_epsilon",
           "set_floatx", "set_image_data_format"]

_traceback_filtering = [True]


def backend() -> str:
    """The name of the backend running the ops: nncompile itself."""
    return "nncompile"


def disable_traceback_filtering() -> None:
    """Accepted for compatibility: nncompile does not filter tracebacks; the flag is only kept
    for `is_traceback_filtering_enabled`."""
    _traceback_filtering[0] = False


def enable_traceback_filtering() -> None:
    """Accepted for compatibility (see `disable_traceback_filtering`)."""
    _traceback_filtering[0] = True


def is_traceback_filtering_enabled() -> bool:
    return _traceback_filtering[0]
