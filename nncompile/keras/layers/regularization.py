"""ActivityRegularization: the identity, whose output's L1 / L2 penalty joins the loss."""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, Value
from nncompile.keras import regularizers
from nncompile.keras.layers.arguments import ArgumentError
from nncompile.keras.layers.base import Layer


class ActivityRegularization(Layer):
    """Returns its input; training adds `(l1 * sum(|x|) + l2 * sum(x^2)) / batch_size` of it to
    the loss, as Keras 3 does for every layer's `activity_regularizer` (this layer's is
    `L1L2(l1, l2)`). The mask passes on.

    >>> import numpy as np
    >>> ActivityRegularization(l1=0.01)(np.array([[1.0, -2.0]], "float32")).tolist()
    [[1.0, -2.0]]
    """

    supports_masking = True

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        if "activity_regularizer" in kwargs:
            raise ArgumentError(f"{type(self).__name__}: takes `l1` and `l2`, not "
                                f"`activity_regularizer` (it builds L1L2(l1, l2) itself)")
        try:
            penalty = regularizers.L1L2(l1=l1, l2=l2)
        except ValueError as e:
            raise ArgumentError(f"{type(self).__name__}: {e}") from None
        super().__init__(activity_regularizer=penalty, **kwargs)
        self.l1, self.l2 = l1, l2

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activity_regularizer")   # as Keras 3: `l1` and `l2` say it
        return {**config, "l1": self.l1, "l2": self.l2}
