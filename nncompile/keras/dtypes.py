"""Keras 3's dtype names and promotion rules (`keras.backend.standardize_dtype`,
`result_type`, `is_float_dtype`, `is_int_dtype`), after keras/src/backend/common/dtypes.py.

Python numbers are "weak": `int` and `float` take the other operand's dtype, and alone the
width of floatx. Keras narrows 64-bit results to 32 bits on its JAX, torch and numpy backends
and keeps int64 and float64 on TensorFlow; nncompile's ops keep them (nncompile/keras/ops/
core.py), so `result_type` follows Keras on TensorFlow there, to say what an op computes in.
`int` itself is int32, as on Keras's other backends.
"""
from __future__ import annotations

from nncompile.keras import backend

_INTS = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")
_FLOAT8 = ("float8_e4m3fn", "float8_e5m2")
ALLOWED_DTYPES = ("float16", "float32", "float64", *_INTS, "bfloat16", "bool", "string", *_FLOAT8,
                  "complex64", "complex128")
_PYTHON = {bool: "bool", int: "int32", float: "float32", str: "string", "int": "int32",
           complex: "complex64"}

# Each dtype points at the next wider ones (JAX's lattice, as Keras takes it).
_LATTICE = {
    "bool": ["int"], "int": ["uint8", "int8", "complex64"],
    "uint8": ["int16", "uint16"], "uint16": ["int32", "uint32"], "uint32": ["int64", "uint64"],
    "uint64": ["float"], "int8": ["int16"], "int16": ["int32"], "int32": ["int64"],
    "int64": ["float"], "float": ["bfloat16", "float16"], "bfloat16": ["float32"],
    "float16": ["float32"], "float32": ["float64", "complex64"], "float64": ["complex128"],
    "complex64": ["complex128"], "complex128": [],
}
_NARROWED = {"uint64": "uint32", "complex128": "complex64"}   # Keras's TensorFlow table


def _upper_bounds(dtype: str) -> frozenset:
    bounds, todo = {dtype}, [dtype]
    while todo:
        for wider in _LATTICE[todo.pop()]:
            if wider not in bounds:
                bounds.add(wider)
                todo.append(wider)
    return frozenset(bounds)


_BOUNDS = {dtype: _upper_bounds(dtype) for dtype in _LATTICE}


def standardize_dtype(dtype) -> str:
    """Keras's name of a dtype given as a name, a numpy dtype or type, or a Python type (None is
    floatx).

    >>> standardize_dtype("float64"), standardize_dtype(int), standardize_dtype(None)
    ('float64', 'int32', 'float32')
    """
    if dtype is None:
        return backend.floatx()
    dtype = _PYTHON.get(dtype, dtype)
    if hasattr(dtype, "name"):
        dtype = dtype.name
    elif hasattr(dtype, "__name__"):
        dtype = dtype.__name__
    elif "torch" in str(dtype) or "jax.numpy" in str(dtype):
        dtype = str(dtype).split(".")[-1]
    if dtype not in ALLOWED_DTYPES:
        raise ValueError(f"Invalid dtype: {dtype}")
    return dtype


def is_float_dtype(dtype) -> bool:
    """Whether `dtype` is a float dtype (bfloat16 included).

    >>> is_float_dtype("bfloat16"), is_float_dtype(int)
    (True, False)
    """
    dtype = standardize_dtype(dtype)
    return dtype.startswith("float") or dtype.startswith("bfloat")


def is_int_dtype(dtype) -> bool:
    """Whether `dtype` is a signed or unsigned integer dtype.

    >>> is_int_dtype("uint8"), is_int_dtype("bool")
    (True, False)
    """
    dtype = standardize_dtype(dtype)
    return dtype.startswith("int") or dtype.startswith("uint")


def least_upper_bound(nodes: tuple) -> str:
    """The narrowest dtype (or weak "int" / "float") every one of `nodes` promotes to."""
    unknown = [n for n in nodes if n not in _BOUNDS]
    if unknown:
        raise ValueError(f"dtype={unknown[0]!r} is not a valid dtype for Keras type promotion.")
    common = frozenset.intersection(*(_BOUNDS[n] for n in nodes))
    least = set(common & set(nodes)) or {c for c in common if common <= _BOUNDS[c]}
    if len(least) != 1:
        raise ValueError(f"Input dtypes {tuple(str(n) for n in nodes)} have no available "
                         f"implicit dtype promotion path. Try explicitly casting inputs to the "
                         f"desired output type.")
    return least.pop()


def _weak(dtype: str) -> str:
    """The weak counterpart of a Python number's dtype ("int", "float", "complex")."""
    for kind in ("float", "int", "complex"):
        if kind in dtype:
            return kind
    return dtype


def _resolve_weak(dtype: str) -> str:
    """A weak result at floatx's width: "int" is int32 under float32, "float" floatx."""
    precision = backend.floatx()[-2:]
    kind = "f" if dtype == "bfloat16" else dtype[:1]
    if kind == "b":
        return "bool"
    return {"i": f"int{precision}", "u": f"uint{precision}"}.get(kind, f"float{precision}")


def result_type(*dtypes) -> str:
    """The dtype Keras's promotion rules give an operation on `dtypes` (names, numpy dtypes,
    Python types; None is floatx; no argument gives floatx).

    >>> result_type("int32", "float32"), result_type("bfloat16", int), result_type("uint8", "int8")
    ('float32', 'bfloat16', 'int16')
    """
    if not dtypes:
        return backend.floatx()
    for dtype in dtypes:
        if dtype in _FLOAT8:
            raise ValueError("There is no implicit conversions from float8 dtypes to others. You "
                             f"must cast it internally. Received: {dtypes}")
    args = [backend.floatx() if d is None else d for d in dtypes]
    names = [standardize_dtype(a) for a in args]
    weak = [a is int or a is float for a in args]
    if len(names) == 1:
        out, out_weak = names[0], weak[0]
    elif len(set(names)) == 1 and not all(weak):
        out, out_weak = names[0], False
    elif all(weak):
        out, out_weak = least_upper_bound(tuple(dict.fromkeys(names))), True
    else:
        nodes = [_weak(n) if w and n != "bool" else n for n, w in zip(names, weak)]
        out = least_upper_bound(tuple(dict.fromkeys(nodes)))
        out_weak = out in ("int", "float")
    if out != "bool" and out_weak:
        out = _resolve_weak(out)
    return _NARROWED.get(out, out)
