"""Element types of tensors, with their numpy counterparts."""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nncompile.ir.types import TensorType


class DType(enum.Enum):
    f16 = "f16"
    f32 = "f32"
    f64 = "f64"
    i8 = "i8"
    u8 = "u8"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return self.value

    def __getitem__(self, dims) -> "TensorType":
        """`f32[BATCH, 784]` builds a TensorType."""
        from nncompile.ir.types import TensorType

        if not isinstance(dims, tuple):
            dims = (dims,)
        return TensorType(self, dims)

    @property
    def numpy(self) -> np.dtype:
        return _TO_NUMPY[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.f16, DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i8, DType.u8, DType.i32, DType.i64)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @staticmethod
    def parse(text: str) -> "DType":
        try:
            return DType(text)
        except ValueError:
            valid = ", ".join(d.value for d in DType)
            raise ValueError(f"unknown dtype {text!r}; expected one of {valid}") from None

    @staticmethod
    def from_numpy(dtype) -> "DType":
        dtype = np.dtype(dtype)
        for member, np_dtype in _TO_NUMPY.items():
            if np_dtype == dtype:
                return member
        valid = ", ".join(str(d.numpy) for d in DType)
        raise ValueError(f"numpy dtype {dtype} has no IR dtype; expected one of {valid}")


_TO_NUMPY = {
    DType.f16: np.dtype(np.float16),
    DType.f32: np.dtype(np.float32),
    DType.f64: np.dtype(np.float64),
    DType.i8: np.dtype(np.int8),
    DType.u8: np.dtype(np.uint8),
    DType.i32: np.dtype(np.int32),
    DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
}

f16, f32, f64 = DType.f16, DType.f32, DType.f64
i8, u8, i32, i64 = DType.i8, DType.u8, DType.i32, DType.i64
bool_ = DType.bool
