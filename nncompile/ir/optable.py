"""The op table: the single place an op is defined.

Each `OpDef` carries everything about one op side by side: its inputs and attributes, the
shape/dtype rule, the numpy reference implementation, its fusion kind, and the slots that
autodiff (`vjp`) and code generation (`lower`) fill in. Ops are registered with `defop` from the
family modules in `nncompile/ir/ops/`.

Ops with regions (graph-valued attributes) say what their regions are, and every pass follows
that one protocol instead of naming ops:
- `Region.KERNEL` (`fused`): the region is the inside of one kernel. Passes leave it alone (no
  CSE, folding or rewriting across its boundary); code generation lowers the node as one kernel.
- `Region.PROGRAM` (`scan`): the region is a program the op runs, step after step. The pass
  manager runs every pass on it as on a top-level graph (so its ops are simplified, fused and
  scheduled), the memory plan gives its values buffers reused by every step, and code generation
  emits its kernels inside the op's loop.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError, ShapeError
from nncompile.ir.graph import Graph
from nncompile.ir.types import TensorType, check_dim


class Fusion(enum.Enum):
    """How an op may be fused with its neighbours (TVM/XLA style)."""

    ELEMENTWISE = "elementwise"   # out[i] = f(in[i]) over identical (broadcast) index spaces
    BROADCAST = "broadcast"       # reads an input at a broadcast index
    INJECTIVE = "injective"       # each output element reads one input element (reshape, slice...)
    REDUCTION = "reduction"       # reduces over axes; can absorb elementwise producers
    EPILOGUE = "epilogue"         # matmul/conv: takes an elementwise epilogue
    OPAQUE = "opaque"             # not fused


class Region(enum.Enum):
    """What an op's regions are (see the module doc)."""

    KERNEL = "kernel"
    PROGRAM = "program"


@dataclass
class RegionMemory:
    """Where a program region's values live while its op runs (the op's `program_memory` rule,
    asked by the memory plan and by code generation): `shares` pairs body inputs with the outer
    values whose memory they use; `own` are body inputs with buffers of their own; `results_in`
    pairs body results with the outer values they are written into. `concurrent`: blocks of the
    steps' rows run at once, each on its own thread at its own pace, so no two body values may
    share memory (each lives until the loop ends)."""

    shares: list = field(default_factory=list)
    own: list = field(default_factory=list)
    results_in: list = field(default_factory=list)
    concurrent: bool = False


class AttrKind(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    INTS = "ints"
    FLOATS = "floats"
    SHAPE = "shape"       # list of dims: ints (-1 allowed where the op says so) and symbols
    DTYPE = "dtype"
    TENSOR = "tensor"     # a numpy array (constants)
    GRAPH = "graph"       # a nested Graph: a region, printed as an indented block after the node


REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    kind: AttrKind
    default: Any = REQUIRED
    choices: tuple | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


InferFn = Callable[[list[TensorType], dict], "TensorType | list[TensorType]"]
RefFn = Callable[[list[np.ndarray], dict], "np.ndarray | list[np.ndarray]"]


@dataclass
class OpDef:
    name: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Attr]
    infer: InferFn
    reference: RefFn
    fusion: Fusion
    variadic: bool = False          # the last input name repeats (concat)
    num_outputs: int | None = 1     # None: as many as the shape rule gives (fused)
    doc: str = ""
    region: Region | None = None    # what its graph-valued attributes are, if it has any
    vjp: Callable | None = None     # filled by autodiff
    lower: Callable | None = None   # filled by code generation
    extra: dict = field(default_factory=dict)


OPS: dict[str, OpDef] = {}


def defop(name: str, *, inputs: Sequence[str], infer: InferFn, reference: RefFn, fusion: Fusion,
          attrs: Mapping[str, Attr] | None = None, variadic: bool = False, num_outputs: int | None = 1,
          doc: str = "", region: Region | None = None) -> OpDef:
    if name in OPS:
        raise IRError(f"op {name!r} is defined twice")
    has_graph = any(spec.kind is AttrKind.GRAPH for spec in (attrs or {}).values())
    if has_graph != (region is not None):
        raise IRError(f"op {name!r}: an op with graph-valued attributes says what they are "
                      f"(region=Region.KERNEL or Region.PROGRAM), and only such an op")
    opdef = OpDef(name, tuple(inputs), dict(attrs or {}), infer, reference, fusion,
                  variadic, num_outputs, doc, region)
    OPS[name] = opdef
    return opdef


def regions_of(node) -> list[Graph]:
    """The node's regions (graph-valued attributes), in attribute-name order."""
    opdef = OPS.get(node.op)
    if opdef is None or opdef.region is None:
        return []
    return [node.attrs[k] for k in sorted(opdef.attrs) if opdef.attrs[k].kind is AttrKind.GRAPH
            and isinstance(node.attrs.get(k), Graph)]


def has_region(node, kind: Region | None = None) -> bool:
    """Whether the node's op has regions (of `kind`, if given)."""
    opdef = OPS.get(node.op)
    region = opdef.region if opdef is not None else None
    return region is not None and (kind is None or region is kind)


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise IRError(f"unknown op {name!r}; valid ops: {', '.join(sorted(OPS))}") from None


def _coerce(kind: AttrKind, value, where: str):
    """Return `value` in the canonical Python form of `kind`, or raise ShapeError."""
    def bad(expected):
        return ShapeError(f"{where}: expected {expected}, got {value!r}")

    if kind is AttrKind.BOOL:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise bad("a bool")
    if kind is AttrKind.INT:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        raise bad("an int")
    if kind is AttrKind.FLOAT:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        raise bad("a float")
    if kind is AttrKind.STR:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if kind is AttrKind.DTYPE:
        if isinstance(value, DType):
            return value
        try:
            return DType.parse(value) if isinstance(value, str) else DType.from_numpy(value)
        except (ValueError, TypeError):
            raise bad("a dtype") from None
    if kind is AttrKind.TENSOR:
        return np.asarray(value)
    if kind is AttrKind.GRAPH:
        if isinstance(value, Graph):
            return value
        raise bad("a Graph (a region)")
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise bad(f"a list ({kind.value})")
    if kind is AttrKind.INTS:
        return tuple(_coerce(AttrKind.INT, v, where) for v in value)
    if kind is AttrKind.FLOATS:
        return tuple(_coerce(AttrKind.FLOAT, v, where) for v in value)
    if kind is AttrKind.SHAPE:
        dims = (v if isinstance(v, str) else _coerce(AttrKind.INT, v, where) for v in value)
        return tuple(d if d == -1 else check_dim(d) for d in dims)
    raise AssertionError(kind)


def normalize_attrs(opdef: OpDef, attrs: Mapping[str, Any], where: str) -> dict:
    """Check attribute names and kinds, fill defaults; errors name the node and valid choices."""
    unknown = sorted(set(attrs) - set(opdef.attrs))
    if unknown:
        valid = ", ".join(sorted(opdef.attrs)) or "none"
        raise ShapeError(f"{where}: unknown attribute {unknown[0]!r} of op {opdef.name!r}; "
                         f"valid attributes: {valid}")
    out = {}
    for name, spec in opdef.attrs.items():
        if name in attrs:
            value = _coerce(spec.kind, attrs[name], f"{where}: attribute {name!r}")
        elif spec.required:
            raise ShapeError(f"{where}: op {opdef.name!r} needs attribute {name!r} ({spec.kind.value})")
        else:
            value = spec.default
        if spec.choices is not None and value not in spec.choices:
            raise ShapeError(f"{where}: attribute {name!r} is {value!r}; expected one of "
                             f"{', '.join(repr(c) for c in spec.choices)}")
        out[name] = value
    return out


def check_arity(opdef: OpDef, count: int, where: str) -> None:
    fixed = len(opdef.inputs) - (1 if opdef.variadic else 0)
    ok = count >= fixed + 1 if opdef.variadic else count == fixed
    if not ok:
        expected = f"at least {fixed + 1}" if opdef.variadic else str(fixed)
        raise ShapeError(f"{where}: op {opdef.name!r} takes {expected} inputs "
                         f"({', '.join(opdef.inputs)}), got {count}")


def infer_types(opdef: OpDef, in_types: Sequence[TensorType], attrs: dict, where: str) -> list[TensorType]:
    """Run the op's shape/dtype rule on normalized attrs; errors are prefixed with `where`."""
    check_arity(opdef, len(in_types), where)
    try:
        result = opdef.infer(list(in_types), attrs)
    except ShapeError as e:
        raise type(e)(f"{where}: {e}") from None   # keeps a SizeError one
    out = [result] if isinstance(result, TensorType) else list(result)
    if opdef.num_outputs is not None and len(out) != opdef.num_outputs:
        raise IRError(f"{where}: shape rule of {opdef.name!r} gave {len(out)} outputs, "
                      f"expected {opdef.num_outputs}")
    return out
