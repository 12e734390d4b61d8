"""Pooling layers: max and average pooling over 1-D, 2-D and 3-D windows, global pooling and
adaptive pooling (windows that divide each axis into a given number of cells).

Like the convolutions, 1-D pooling runs as 2-D pooling of height 1, and 3-D pooling as a 2-D
pooling over depth then one over height and width (volumes.py). Padding never enters a
result: max pooling ignores it and average pooling divides by the number of real elements in
each window, as Keras does for padding="same".
"""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, Value
from nncompile.keras.layers.base import Layer, Mask
from nncompile.keras.layers.arguments import (boolean, check_data_format, check_input_rank,
                                              legacy_args, normalize_padding, normalize_tuple,
                                              owner_of)
from nncompile.keras.layers.conv import from_2d, spatial_pads, to_2d
from nncompile.keras.layers.volumes import pool3d
from nncompile.keras.ops.convolution import adaptive_pool

_LEGACY_2D = {"border_mode": "padding"}
_LEGACY_1D = {"pool_length": "pool_size", "stride": "strides", "border_mode": "padding"}


class BasePooling(Layer):
    """Shared by the windowed pooling layers: arguments, config and the pooling emission."""

    rank: int
    op: str

    def __init__(self, pool_size, strides, padding: str, data_format: str | None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", owner)
        self.strides = normalize_tuple(self.pool_size if strides is None else strides, self.rank,
                                       "strides", owner)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.data_format = check_data_format(data_format, owner)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x, window, strides = inputs, self.pool_size, self.strides
        if self.rank == 1:
            x, window, strides = to_2d(b, x), (1,) + window, (1,) + strides
        pads = spatial_pads(x.type.shape[1:-1], window, strides, (1,) * len(window), self.padding)
        if self.rank == 3:
            return pool3d(b, self.op, x, window, strides, pads)
        y = b.op(self.op, x, window=window, strides=strides, pads=pads)
        return from_2d(b, y) if self.rank == 1 else y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


class MaxPooling2D(BasePooling):
    """Maximum over (pool_size) windows of channels-last images (N, H, W, C).

    Example:

    >>> x = np.random.rand(4, 7, 7, 3).astype("float32")
    >>> MaxPooling2D()(x).shape
    (4, 3, 3, 3)
    >>> MaxPooling2D((3, 3), strides=2, padding="same")(x).shape
    (4, 4, 4, 3)
    """

    rank, op = 2, "max_pool2d"

    @legacy_args(_LEGACY_2D)
    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(BasePooling):
    """Mean over (pool_size) windows of channels-last images; padding is not counted.

    Example:

    >>> x = np.random.rand(4, 7, 7, 3).astype("float32")
    >>> AveragePooling2D(padding="same")(x).shape
    (4, 4, 4, 3)
    """

    rank, op = 2, "avg_pool2d"

    @legacy_args(_LEGACY_2D)
    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(BasePooling):
    """Maximum over windows of channels-last sequences (N, L, C).

    Example:

    >>> x = np.random.rand(4, 9, 3).astype("float32")
    >>> MaxPooling1D(3)(x).shape
    (4, 3, 3)
    """

    rank, op = 1, "max_pool2d"

    @legacy_args(_LEGACY_1D)
    def __init__(self, pool_size=2, strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(BasePooling):
    """Mean over windows of channels-last sequences (N, L, C); padding is not counted.

    Example:

    >>> x = np.random.rand(4, 9, 3).astype("float32")
    >>> AveragePooling1D(2, padding="same")(x).shape
    (4, 5, 3)
    """

    rank, op = 1, "avg_pool2d"

    @legacy_args(_LEGACY_1D)
    def __init__(self, pool_size=2, strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(BasePooling):
    """Maximum over (pool_size) windows of channels-last volumes (N, D, H, W, C).

    Example:

    >>> x = np.random.rand(2, 5, 6, 6, 3).astype("float32")
    >>> MaxPooling3D()(x).shape
    (2, 2, 3, 3, 3)
    """

    rank, op = 3, "max_pool2d"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling3D(BasePooling):
    """Mean over (pool_size) windows of (N, D, H, W, C); with padding="same" each window's mean
    is over its real elements. As in Keras 3, `pool_size` has no default.

    Example:

    >>> x = np.random.rand(2, 5, 6, 6, 3).astype("float32")
    >>> AveragePooling3D(3, strides=2, padding="same")(x).shape
    (2, 3, 3, 3, 3)
    """

    rank, op = 3, "avg_pool2d"

    def __init__(self, pool_size, strides=None, padding: str = "valid",
                 data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class BaseGlobalPooling(Layer):
    """Shared by the global pooling layers: a reduction over every spatial axis."""

    rank: int
    op: str

    @legacy_args({})
    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.data_format = check_data_format(data_format, owner)
        self.keepdims = boolean(keepdims, "keepdims", owner)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return b.op(self.op, inputs, axes=tuple(range(1, self.rank + 1)), keepdims=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(BaseGlobalPooling):
    """Mean over height and width: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims.

    Example:

    >>> x = np.random.rand(4, 5, 5, 3).astype("float32")
    >>> GlobalAveragePooling2D()(x).shape
    (4, 3)
    """

    rank, op = 2, "reduce_mean"


class GlobalMaxPooling2D(BaseGlobalPooling):
    """Maximum over height and width: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims.

    Example:

    >>> x = np.random.rand(4, 5, 5, 3).astype("float32")
    >>> GlobalMaxPooling2D(keepdims=True)(x).shape
    (4, 1, 1, 3)
    """

    rank, op = 2, "reduce_max"


class GlobalAveragePooling1D(BaseGlobalPooling):
    """Mean over steps: (N, L, C) -> (N, C), or (N, 1, C) with keepdims.

    Example:

    >>> x = np.random.rand(4, 5, 3).astype("float32")
    >>> GlobalAveragePooling1D()(x).shape
    (4, 3)
    """

    rank, op = 1, "reduce_mean"
    supports_masking = True   # Keras averages the unmasked steps only, and drops the mask

    def emit_masked(self, b: Builder, inputs: Value, mask: Mask, training: bool = False) -> Value:
        # Keras: sum(where(mask, x, 0)) / sum(mask). Weighting by the 0 / 1 mask is the same for
        # finite x and keeps a Masking layer's f32 mask off bool values, whose fusion into a float
        # reduction the CPU code generator cannot emit yet.
        weight = mask.value
        weight = weight if weight.type.dtype == inputs.type.dtype else b.cast(weight, dtype=inputs.type.dtype)
        weight = b.reshape(weight, shape=weight.type.shape + (1,))
        total = b.reduce_sum(b.mul(inputs, weight), axes=(1,), keepdims=self.keepdims)
        return b.div(total, b.reduce_sum(weight, axes=(1,), keepdims=self.keepdims))

    def emit_mask(self, b: Builder, inputs: Value, mask: Mask | None) -> None:
        return None


class GlobalMaxPooling1D(BaseGlobalPooling):
    """Maximum over steps: (N, L, C) -> (N, C), or (N, 1, C) with keepdims.

    Example:

    >>> x = np.random.rand(4, 5, 3).astype("float32")
    >>> GlobalMaxPooling1D()(x).shape
    (4, 3)
    """

    rank, op = 1, "reduce_max"


class GlobalAveragePooling3D(BaseGlobalPooling):
    """Mean over depth, height and width: (N, D, H, W, C) -> (N, C), or (N, 1, 1, 1, C) with
    keepdims.

    Example:

    >>> x = np.random.rand(2, 3, 4, 4, 3).astype("float32")
    >>> GlobalAveragePooling3D()(x).shape
    (2, 3)
    """

    rank, op = 3, "reduce_mean"


class GlobalMaxPooling3D(BaseGlobalPooling):
    """Maximum over depth, height and width: (N, D, H, W, C) -> (N, C).

    Example:

    >>> x = np.random.rand(2, 3, 4, 4, 3).astype("float32")
    >>> GlobalMaxPooling3D(keepdims=True)(x).shape
    (2, 1, 1, 1, 3)
    """

    rank, op = 3, "reduce_max"


MaxPool3D = MaxPooling3D
AvgPool3D = AveragePooling3D
GlobalAvgPool3D = GlobalAveragePooling3D
GlobalMaxPool3D = GlobalMaxPooling3D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D


class BaseAdaptivePooling(Layer):
    """Shared by the adaptive pooling layers: each spatial axis divided into `output_size`
    cells, each pooled over its window (`keras.ops.adaptive_average_pool`'s windows)."""

    rank: int
    largest: bool

    def __init__(self, output_size, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.output_size = normalize_tuple(output_size, self.rank, "output_size", owner)
        self.data_format = check_data_format(data_format, owner)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        op = "adaptive_max_pool" if self.largest else "adaptive_average_pool"
        return adaptive_pool(b, inputs, self.output_size, False, self.largest, op)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_size": self.output_size, "data_format": self.data_format}


class AdaptiveAveragePooling1D(BaseAdaptivePooling):
    """Mean over the windows that divide the steps into `output_size` cells: (N, L, C) -> (N, O, C).

    Example:

    >>> AdaptiveAveragePooling1D(4)(np.random.rand(2, 10, 3).astype("float32")).shape
    (2, 4, 3)
    """

    rank, largest = 1, False


class AdaptiveAveragePooling2D(BaseAdaptivePooling):
    """Mean over the windows that divide height and width into `output_size` cells:
    (N, H, W, C) -> (N, OH, OW, C).

    Example:

    >>> AdaptiveAveragePooling2D((2, 3))(np.random.rand(2, 5, 7, 3).astype("float32")).shape
    (2, 2, 3, 3)
    """

    rank, largest = 2, False


class AdaptiveAveragePooling3D(BaseAdaptivePooling):
    """Mean over the windows that divide depth, height and width into `output_size` cells."""

    rank, largest = 3, False


class AdaptiveMaxPooling1D(BaseAdaptivePooling):
    """Maximum over the windows that divide the steps into `output_size` cells."""

    rank, largest = 1, True


class AdaptiveMaxPooling2D(BaseAdaptivePooling):
    """Maximum over the windows that divide height and width into `output_size` cells."""

    rank, largest = 2, True


class AdaptiveMaxPooling3D(BaseAdaptivePooling):
    """Maximum over the windows that divide depth, height and width into `output_size` cells."""

    rank, largest = 3, True
