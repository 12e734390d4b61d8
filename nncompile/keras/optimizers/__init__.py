"""Keras 3 optimizers (`keras.optimizers`), emitted as IR into the compiled training step.

    >>> opt = keras.optimizers.get("adam")             # Keras 3's defaults
    >>> opt = keras.optimizers.SGD(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.9))
"""
from __future__ import annotations

from typing import Any, Mapping

from nncompile.keras.optimizers import schedules
from nncompile.keras.optimizers.algorithms import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Ftrl, Lion, Nadam,
                                                   RMSprop)
from nncompile.keras.optimizers.base import Optimizer
from nncompile.keras.optimizers.lamb_adafactor import Adafactor, Lamb
from nncompile.keras.serialization import Catalog

# Keras resolves names case-insensitively through the lower-cased class names. (Keras 3.15's
# list lacks Lamb, so its get("lamb") raises while a saved config of one loads: here both work.)
_CATALOG = Catalog("optimizer", Optimizer, "keras.optimizers",
                   {cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax,
                                                          Nadam, Lion, Ftrl, Adafactor, Lamb)},
                   "")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """Keras 3's config dict: {"module", "class_name", "config", "registered_name"}."""
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"Could not serialize {optimizer!r}: expected an Optimizer")
    return _CATALOG.serialize(optimizer)


def deserialize(config: Mapping[str, Any]) -> Optimizer:
    """The optimizer a config dict of `serialize` (or of Keras) describes; class names in any case."""
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(f"Could not interpret optimizer identifier: {config!r}; a config dict needs the "
                         f"keys 'class_name' and 'config'")
    cls = _CATALOG.lookup(str(config["class_name"]).lower())
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier) -> Optimizer | None:
    """An optimizer from a name ('adam', 'SGD', ...: Keras 3's defaults), a config dict, or an
    Optimizer (returned as is); None gives None."""
    if identifier is None or isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _CATALOG.lookup(identifier.lower())()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}; expected a name "
                     f"({', '.join(sorted(_CATALOG.by_name))}), a config dict or an Optimizer")


__all__ = ["SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb", "Lion", "Nadam",
           "Optimizer", "RMSprop", "deserialize", "get", "schedules", "serialize"]
