"""Loop kernels: elementwise chains ("loop" groups), broadcasts, and reductions with their
elementwise prologue and epilogue.

A loop kernel walks its output's index space once; every operand is read at the broadcast of
that index (stride 0 along the axes it broadcasts over), and the body's element rules (the op
table's `lower` slot) compute the results in registers. Adjacent axes along which every operand
broadcasts alike are merged first, so that the innermost loop is as long as possible and LLVM's
loop vectorizer sees one dense stream; an innermost loop of fewer static elements than a vector
stays scalar (`scalar_loop`). Large loops run on every core (`split_loop`);
reductions over leading axes into a static block (bias gradients) take `columns`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from llvmlite import ir

from nncompile.codegen import columns, elementwise, split_loop, target
from nncompile.codegen.kernel import Dim, Kernel, load, mul, scalar_type, store, storage_type
from nncompile.codegen.loops import as_i64, for_nest, linear_index
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Node, Value
from nncompile.ir.ops.fused import loop_space
from nncompile.ir.ops.reduction import normalize_axes
from nncompile.ir.ops.shape import slice_plan
from nncompile.ir.optable import Fusion, get_op

FAST = ("fast",)


# --- evaluating elementwise nodes on registers ----------------------------------------------------

def constant_value(k: Kernel, node: Node, like: ir.Value | None, index: Sequence[ir.Value] | None,
                   loop_rank: int) -> ir.Value:
    """A `constant` node's element: an immediate when it is a single value, else a load from a
    global array at the broadcast of `index`."""
    array = node.attrs["value"]
    dtype = node.outputs[0].type.dtype
    if array.size == 1:
        return elementwise.constant(dtype, array.reshape(()).item(), like)
    if index is None:
        raise ValueError(f"{node.describe()}: a constant of shape {array.shape} cannot be used "
                         f"in a register epilogue")
    ptr = global_array(k.module, np.ascontiguousarray(array, dtype.numpy))
    strides = broadcast_strides(k, list(array.shape), loop_rank)
    return load(k.b, k.b.gep(ptr, [linear_index(k.b, index, strides)]), dtype)


def global_array(module: ir.Module, array: np.ndarray) -> ir.Value:
    """A private constant global holding `array`'s bytes; a pointer to its first element."""
    data = bytearray(array.tobytes())
    name = module.get_unique_name("const")
    var = ir.GlobalVariable(module, ir.ArrayType(ir.IntType(8), len(data)), name)
    var.global_constant = True
    var.linkage = "private"
    var.align = 64
    var.initializer = ir.Constant(var.value_type, data)
    return var.bitcast(storage_type(DType.from_numpy(array.dtype)).as_pointer())


def apply_nodes(k: Kernel, nodes: Sequence[Node], env: dict[Value, ir.Value], like: ir.Value | None,
                index: Sequence[ir.Value] | None = None, loop_rank: int = 0) -> None:
    """Evaluate elementwise/broadcast/constant `nodes` in order, reading and extending `env`."""
    for node in nodes:
        if node.op == "constant":
            env[node.outputs[0]] = constant_value(k, node, like, index, loop_rank)
        elif get_op(node.op).fusion is Fusion.BROADCAST:
            env[node.outputs[0]] = env[node.inputs[0]]
        else:
            args = [env[v] for v in node.inputs]
            env[node.outputs[0]] = get_op(node.op).lower(k.b, _same_width(k.b, args), node)


def _same_width(b: ir.IRBuilder, args: list[ir.Value]) -> list[ir.Value]:
    """Splat scalar operands to the vector width of the others (register epilogues mix them)."""
    vector = next((a for a in args if isinstance(a.type, ir.VectorType)), None)
    if vector is None:
        return args
    return [a if isinstance(a.type, ir.VectorType) else elementwise.splat(b, a, vector) for a in args]


# --- index spaces -----------------------------------------------------------------------------

def broadcast_strides(k: Kernel, dims: Sequence[Dim], loop_rank: int) -> list[Dim]:
    """Element strides of a dense array with resolved `dims`, read at the index of a loop of
    `loop_rank` axes: numpy broadcasting (right-aligned; size-1 axes get stride 0)."""
    strides: list[Dim] = [0] * loop_rank
    step: Dim = 1
    for axis in range(1, len(dims) + 1):
        d = dims[-axis]
        if not (isinstance(d, int) and d == 1):
            strides[loop_rank - axis] = step
        step = mul(k.b, d, step)
    return strides


def merged_space(k: Kernel, loop_dims: Sequence[Dim], operands: Sequence[Value],
                 views: dict[Value, list[Dim]] | None = None) -> tuple[list[Dim], list[list[Dim]]]:
    """Merge adjacent loop axes over which every operand is alike (all read along both, or all
    broadcast along both); return the merged dims and each operand's strides over them.
    `views` gives the strides of operands that are strided views (slices read in place); no axes
    merge when there is one."""
    views = views or {}
    rank = len(loop_dims)
    if any(v in views for v in operands):
        return list(loop_dims), [views[v] if v in views else broadcast_strides(k, k.dims(v), rank)
                                 for v in operands]
    patterns = []
    for v in operands:
        shape = v.type.shape
        pad = rank - len(shape)
        patterns.append([axis >= pad and shape[axis - pad] != 1 for axis in range(rank)])
    groups: list[list[int]] = []
    for axis in range(rank):
        if groups and all(p[axis] == p[groups[-1][-1]] for p in patterns):
            groups[-1].append(axis)
        else:
            groups.append([axis])
    dims = [_product(k, [loop_dims[a] for a in g]) for g in groups]
    strides = []
    for v, pattern in zip(operands, patterns):
        merged_shape = [dims[i] if pattern[g[0]] else 1 for i, g in enumerate(groups)]
        strides.append(broadcast_strides(k, merged_shape, len(dims)))
    return dims, strides


def scalar_loop(dims: Sequence[Dim], itemsize: int) -> bool:
    """Whether an elementwise loop nest over `dims` (after merging) stays scalar
    (`loops.keep_scalar`): when its innermost loop has a static trip count below a vector's
    lanes for the widest element it touches (a bias added to rows of 8 under a symbolic batch).
    Vector forms of such loops gain little, but LLVM's vectorizer costs compile time on each: the
    Pima tutorial's training step (rows of 8, 6 and 1) spent 0.07 s of its 0.29 s of LLVM on
    them. A long loop (rows merged with a symbolic batch, or a static row of a vector and more,
    such as a recurrent step's gates at batch 1) keeps its vector form, and so do reductions,
    whose partial sums per lane also round less than one running sum."""
    inner = dims[-1] if dims else 1
    return isinstance(inner, int) and inner < target.vector_lanes(itemsize)


def _product(k: Kernel, dims: Sequence[Dim]) -> Dim:
    total: Dim = 1
    for d in dims:
        total = mul(k.b, total, d)
    return total


# --- "loop" kernels ---------------------------------------------------------------------------

def emit_loop(k: Kernel, inputs: Sequence[Value], outputs: Sequence[Value], nodes: Sequence[Node],
              results: Sequence[Value]) -> None:
    """out_i = results_i evaluated at every index of the loop's shape.

    inputs: the kernel's operands, read with broadcasting; nodes: the elementwise body that maps
    `inputs` to `results`; outputs: where each result is stored. A result that concatenates loop
    values (`loop_space`) is stored piece by piece, each at its offset in the output."""
    concats = {n.outputs[0]: n for n in nodes if n.op == "concat"}
    loop_dims = k.dims(loop_space(nodes, results))
    if 0 in loop_dims:      # a static size of 0: no element to compute (nor strides to take)
        return
    # Array constants are read like operands (from globals), at the merged index like the rest.
    arrays = [n for n in nodes if n.op == "constant" and n.attrs["value"].size > 1]
    pointers = [global_array(k.module, np.ascontiguousarray(n.attrs["value"], n.outputs[0].type.dtype.numpy))
                for n in arrays]
    # Slices are read in place: their input's buffer at an offset, with the input's strides.
    slices = [n for n in nodes if n.op == "slice"]
    views = {n.outputs[0]: _slice_strides(k, n, len(loop_dims)) for n in slices}
    stored, targets = [], []      # (the value stored, the output it goes to), its address
    for out, result in zip(outputs, results):
        if result in concats:
            views[out] = k.strides(out)
            for piece, offset in _pieces(k, concats[result], out):
                stored.append((piece, out))
                targets.append(k.b.gep(k.ptr(out), [as_i64(offset)]))
        else:
            stored.append((result, out))
            targets.append(k.ptr(out))
    used = {v for n in nodes if n.op != "slice" for v in n.inputs} | set(results)
    inputs = [v for v in inputs if v in used]
    read = list(inputs) + [n.outputs[0] for n in slices] + [n.outputs[0] for n in arrays]
    dims, strides = merged_space(k, loop_dims, read + [out for _, out in stored], views)
    buffers = ([k.ptr(v) for v in inputs] + [k.b.gep(k.ptr(n.inputs[0]), [as_i64(_slice_offset(k, n))])
                                              for n in slices] + targets)
    body_nodes = [n for n in nodes if n not in arrays and n.op not in ("slice", "concat")]
    direct = len(inputs) + len(slices)

    def body(b: ir.IRBuilder, index: list[ir.Value], ptrs: list[ir.Value], words: dict) -> None:
        local = [[words.get(s, s) if isinstance(s, ir.Value) else s for s in row] for row in strides]
        ins = ptrs[:direct] + pointers
        env = {}
        for v, ptr, s in zip(read, ins, local):
            env[v] = load(b, b.gep(ptr, [linear_index(b, index, s)]), v.type.dtype)
        apply_nodes(Kernel(b, k.module, {}, {}), body_nodes, env, None, None, 0)
        for (value, out), ptr, s in zip(stored, ptrs[direct:], local[len(read):]):
            store(b, env[value], b.gep(ptr, [linear_index(b, index, s)]), out.type.dtype)

    if split_loop.worth_splitting(dims):
        words = [s for row in strides for s in row if isinstance(s, ir.Value)]
        split_loop.split_nest(k.b, k.module, dims, buffers, body, words)
    else:
        widest = max(v.type.dtype.itemsize for v in [*read, *outputs])
        with for_nest(k.b, dims, scalar=scalar_loop(dims, widest)) as index:
            body(k.b, index, buffers, {})


def _pieces(k: Kernel, concat: Node, out: Value) -> list[tuple[Value, Dim]]:
    """Each operand of a concat stored in place, with its element offset in the output `out`."""
    axis = concat.attrs["axis"] % out.type.rank
    stride = k.strides(out)[axis]
    width = concat.inputs[0].type.shape[axis]
    return [(piece, mul(k.b, j * width, stride)) for j, piece in enumerate(concat.inputs)]


def _slice_offset(k: Kernel, node: Node) -> Dim:
    """The element offset of a slice's first element in its input's buffer."""
    plan = slice_plan(node.inputs[0].type.shape, node.attrs)
    strides = k.strides(node.inputs[0])
    offset: Dim = 0
    for axis, taken in plan.items():
        if taken.start:
            term = mul(k.b, taken.start, strides[axis])
            offset = term if isinstance(offset, int) and offset == 0 else k.b.add(as_i64(offset), as_i64(term))
    return offset


def _slice_strides(k: Kernel, node: Node, loop_rank: int) -> list[Dim]:
    """A slice's element strides in its input's buffer at the index of a loop of `loop_rank`
    axes (right-aligned; axes where the slice has size 1 are broadcast: stride 0)."""
    plan = slice_plan(node.inputs[0].type.shape, node.attrs)
    source = k.strides(node.inputs[0])
    shape = node.outputs[0].type.shape
    pad = loop_rank - len(shape)
    strides: list[Dim] = [0] * loop_rank
    for axis, dim in enumerate(shape):
        if not (isinstance(dim, int) and dim == 1):
            step = plan[axis].step if axis in plan else 1
            strides[pad + axis] = mul(k.b, source[axis], step)
    return strides


# --- reductions -------------------------------------------------------------------------------

def identity(op: str, dtype) -> float | int:
    np_dtype = dtype.numpy
    lowest = -np.inf if np_dtype.kind == "f" else np.iinfo(np_dtype).min
    highest = np.inf if np_dtype.kind == "f" else np.iinfo(np_dtype).max
    return {"reduce_sum": 0, "reduce_mean": 0, "reduce_prod": 1,
            "reduce_max": lowest, "reduce_min": highest}[op]


def combine(b: ir.IRBuilder, op: str, acc: ir.Value, x: ir.Value, is_float: bool,
            unsigned: bool = False) -> ir.Value:
    """acc updated by x; `unsigned` integers (u8) order by their unsigned value."""
    if op in ("reduce_sum", "reduce_mean"):
        return b.fadd(acc, x, flags=FAST) if is_float else b.add(acc, x)
    if op == "reduce_prod":
        return b.fmul(acc, x, flags=FAST) if is_float else b.mul(acc, x)
    if is_float:
        # NaN wins, as in numpy: keep acc only when it is NaN or strictly better.
        better = b.fcmp_unordered(">" if op == "reduce_max" else "<", x, acc)
        return b.select(b.fcmp_unordered("uno", acc, acc), acc, b.select(better, x, acc))
    compare = b.icmp_unsigned if unsigned else b.icmp_signed
    return b.select(compare(">" if op == "reduce_max" else "<", x, acc), x, acc)


def emit_reduction(k: Kernel, inputs: Sequence[Value], outputs: Sequence[Value], prologue: Sequence[Node],
                   reduce: Node, epilogue: Sequence[Node], results: Sequence[Value]) -> None:
    """A reduction with its elementwise prologue (on the input's index space) and epilogue (on the
    output's). The accumulator lives in the first output's buffer: it is set to the identity,
    updated by one pass over the input in memory order (so any axes may be reduced), then the
    epilogue is applied and every output written."""
    b = k.b
    x = reduce.inputs[0]
    axes = normalize_axes(reduce.attrs["axes"], x.type.rank)
    dtype = reduce.outputs[0].type.dtype
    is_float = dtype.is_float
    acc_out = next((v for v in outputs if v.type.dtype == dtype), None)
    if acc_out is None:
        raise ValueError(f"{reduce.describe()}: no output of the reduction's dtype {dtype} to "
                         f"accumulate in")
    acc_ptr = k.ptr(acc_out)
    out_dims = k.dims(acc_out)
    uses = {v for n in [*prologue, reduce] for v in n.inputs}
    before = [v for v in inputs if v in uses]
    epilogue = [*_shared_constants(prologue, epilogue), *epilogue]
    after = [v for v in inputs if any(v in n.inputs for n in epilogue)]
    count = _product(k, out_dims)
    in_dims = k.dims(x)
    plan = columns.column_plan(inputs, prologue, reduce)
    if plan is not None:
        columns.emit_column_reduction(k, inputs, prologue, reduce, acc_ptr, plan)
    else:
        with for_nest(b, [count], name="init") as (i,):
            b.store(elementwise.constant(dtype, identity(reduce.op, dtype), None), b.gep(acc_ptr, [i]))
        kept = [a for a in range(len(in_dims)) if a not in axes]
        acc_strides = broadcast_strides(k, [in_dims[a] for a in kept], len(kept))
        with for_nest(b, in_dims, name="r") as index:
            env = {}
            for v in before:
                strides = broadcast_strides(k, k.dims(v), len(in_dims))
                env[v] = load(b, b.gep(k.ptr(v), [linear_index(b, index, strides)]), v.type.dtype)
            apply_nodes(k, prologue, env, None, index, len(in_dims))
            slot = b.gep(acc_ptr, [linear_index(b, [index[a] for a in kept], acc_strides)])
            b.store(combine(b, reduce.op, b.load(slot), env[x], is_float, dtype is DType.u8), slot)

    scale = None
    if reduce.op == "reduce_mean":
        reduced = _product(k, [in_dims[a] for a in axes])
        scale = b.sitofp(as_i64(reduced), scalar_type(dtype))
    with for_nest(b, [count], name="fin") as (i,):
        index = _unflatten(k, i, out_dims)
        acc = b.load(b.gep(acc_ptr, [i]))
        env = {reduce.outputs[0]: b.fdiv(acc, scale) if scale is not None else acc}
        for v in after:
            if v not in env:
                strides = broadcast_strides(k, k.dims(v), len(out_dims))
                env[v] = load(b, b.gep(k.ptr(v), [linear_index(b, index, strides)]), v.type.dtype)
        apply_nodes(k, epilogue, env, None, index, len(out_dims))
        for out, result in zip(outputs, results):
            store(b, env[result], b.gep(k.ptr(out), [i]), out.type.dtype)


def _shared_constants(prologue: Sequence[Node], epilogue: Sequence[Node]) -> list[Node]:
    """The prologue's constants that the epilogue reads too (one constant serves both sides
    once CSE has merged equal ones, as a loss's 2.0 and a penalty's): the epilogue, on the
    output's index space, makes them again."""
    read = {v for n in epilogue for v in n.inputs}
    return [n for n in prologue if n.op == "constant" and n.outputs[0] in read]


def _unflatten(k: Kernel, flat: ir.Value, dims: Sequence[Dim]) -> list[ir.Value]:
    """The multi-index of row-major position `flat` in `dims`."""
    b = k.b
    index = []
    rest = flat
    for d in reversed(dims[1:]):
        index.append(b.srem(rest, as_i64(d)))
        rest = b.sdiv(rest, as_i64(d))
    index.append(rest)
    return index[::-1] if dims else []




def apply_epilogue(k: Kernel, nodes: Sequence[Node], anchor: Value, value: ir.Value,
                   index: Sequence[ir.Value], loop_dims: Sequence[Dim]) -> ir.Value:
    """Run an epilogue (elementwise nodes after an anchor op) on one result `value` of `anchor`
    at `index` of the anchor's output space; the other operands are read with broadcasting."""
    env = {anchor: value}
    made = {v for n in nodes for v in n.outputs}
    for v in {v for n in nodes for v in n.inputs if v not in made and v is not anchor}:
        strides = broadcast_strides(k, k.dims(v), len(loop_dims))
        env[v] = load(k.b, k.b.gep(k.ptr(v), [linear_index(k.b, index, strides)]), v.type.dtype)
    apply_nodes(k, nodes, env, None, index, len(loop_dims))
    return env[nodes[-1].outputs[0]] if nodes else value
