"""`scan` as one native loop in the entry function, its body's kernels called at every step.

    copy the initial carries into the carry results      (the body reads its carries there)
    for step in 0 .. T-1:                                 (t = T-1-step when reverse)
        copy slice t of each scanned operand into its step buffer   (along axis 0: none, the
        call the body's kernels, in schedule order                    body reads slice t and
        copy each per-step result into slice t of its stacked result  writes slice t in place)
        copy each new carry into its carry result

The memory plan gives every body value a buffer that all steps reuse (passes/memory.py), and
weights that the body's products read as their B operand are packed once before the loop (as
oneDNN and PyTorch pack an RNN's weights), so a step neither allocates nor repacks; the code is
the same for any trip count. Copies are `llvm.memcpy`:
a carry or a slice row is contiguous, and a slice along `axis` is one row per index of the
axes before it.
"""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen.cpu import Program, emit_kernels
from nncompile.codegen.gemm import libc
from nncompile.codegen.gemm_pack import emit_pack_b
from nncompile.codegen.kernel import mul, product, storage_type
from nncompile.codegen.loops import as_i64, for_range
from nncompile.codegen.simd import intrinsic
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.scan import split_operands, step_views
from nncompile.ir.optable import OPS

i1 = ir.IntType(1)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)


def _memcpy(p: Program, dst: ir.Value, src: ir.Value, nbytes) -> None:
    fn = intrinsic(p.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [i8p, i8p, i64, i1])
    p.b.call(fn, [dst, src, as_i64(nbytes), ir.Constant(i1, 0)])


def _copy(p: Program, dst: Value, src: Value) -> None:
    """The whole of `src` into `dst` (same type), unless they share a buffer."""
    if not p.same_buffer(dst, src):
        _memcpy(p, p.ptr(dst), p.ptr(src), mul(p.b, product(p.b, p.dims(src)), src.type.dtype.itemsize))


def _copy_slices(p: Program, stacked: Value, step: Value, t: ir.Value, axis: int, into_step: bool) -> None:
    """Slice t along `axis` of `stacked` to the step buffer of `step` (or back, not `into_step`)."""
    b = p.b
    dims = p.dims(stacked)
    row = mul(b, product(b, dims[axis + 1:]), stacked.type.dtype.itemsize)
    stacked_ptr, step_ptr = p.ptr(stacked), p.ptr(step)
    with for_range(b, product(b, dims[:axis]), name="row") as o:
        at_stacked = b.gep(stacked_ptr, [b.mul(b.add(b.mul(o, as_i64(dims[axis])), t), as_i64(row))])
        at_step = b.gep(step_ptr, [b.mul(o, as_i64(row))])
        if into_step:
            _memcpy(p, at_step, at_stacked, row)
        else:
            _memcpy(p, at_stacked, at_step, row)


def _at_step(p: Program, stacked: Value, t: ir.Value) -> ir.Value:
    """The address of slice t along axis 0 of `stacked`."""
    step = mul(p.b, product(p.b, p.dims(stacked)[1:]), stacked.type.dtype.itemsize)
    return p.b.gep(p.ptr(stacked), [p.b.mul(t, as_i64(step))])


def _weights(body: Graph, invariants: list[Value]) -> dict[Value, bool]:
    """The invariants that every product reading them takes as its 2-D B operand, each with
    whether that B is transposed: packed once before the loop instead of at every step."""
    uses: dict[Value, set] = {}
    for node in body.nodes:
        inner = node.attrs["body"] if node.op == "fused" and node.attrs["kind"] == "matmul" else None
        anchor = inner.nodes[0] if inner is not None else node
        for position, v in enumerate(node.inputs):
            if v not in invariants:
                continue
            operand = inner.inputs[position] if inner is not None else v
            as_b = (anchor.op == "matmul" and len(anchor.inputs) == 2 and anchor.inputs[1] is operand
                    and anchor.inputs[0] is not operand and anchor.outputs[0].type.rank == 2
                    and v.type.rank == 2 and v.type.dtype.is_float)
            uses.setdefault(v, set()).add(anchor.attrs["transpose_b"] if as_b else None)
    return {v: kinds.pop() for v, kinds in uses.items() if len(kinds) == 1 and None not in kinds}


def _pack_weights(p: Program, body: Graph, invariants: list[Value]) -> dict[Value, ir.Value]:
    packed = {}
    for value, transposed in _weights(body, invariants).items():
        rows, cols = p.dims(value)
        n, k = (rows, cols) if transposed else (cols, rows)
        fn = emit_pack_b(p.module, value.type.dtype, transpose_b=transposed)
        source = p.b.bitcast(p.ptr(value), storage_type(value.type.dtype).as_pointer())
        packed[value] = p.b.call(fn, [as_i64(n), as_i64(k), source, as_i64(cols)])
    return packed


def emit_scan(p: Program, node: Node, number: int, prefix: str) -> None:
    attrs, body = node.attrs, node.attrs["body"]
    n, axis = attrs["num_carry"], attrs["axis"]
    init, scanned, _ = split_operands(node.inputs, attrs)
    _, step_inputs, invariants = split_operands(body.inputs, attrs)
    viewed, written = step_views(node)
    for value, result in zip(init, node.outputs[:n]):
        _copy(p, result, value)
    b = p.b
    packed = _pack_weights(p, body, invariants)
    length = as_i64(p.dims(scanned[0])[axis])
    with for_range(b, length, name=f"{prefix}step") as step:
        t = b.sub(b.sub(length, as_i64(1)), step) if attrs["reverse"] else step
        # Slices in place: the body reads and writes them where they lie in the stacked arrays.
        pointers = list(p.pointers)
        for stacked, value in zip(scanned, step_inputs):
            if value in viewed:
                pointers[p.layout.slots[value]] = _at_step(p, stacked, t)
            else:
                _copy_slices(p, stacked, value, t, axis, into_step=True)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value in written:
                pointers[p.layout.slots[value]] = _at_step(p, stacked, t)
        emit_kernels(Program(p.module, b, p.layout, pointers, p.symbols, packed), body.nodes, number, prefix)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value not in written:
                _copy_slices(p, stacked, value, t, axis, into_step=False)
        _update_carries(Program(p.module, b, p.layout, pointers, p.symbols), body.outputs[:n],
                        node.outputs[:n], body.inputs[:n])
    _, free = libc(p.module)
    for buffer in packed.values():
        b.call(free, [b.bitcast(buffer, i8p)])


def _update_carries(p: Program, new: list[Value], results: list[Value], carries: list[Value]) -> None:
    """Each new carry into its carry result. A new carry that is another carry's old value (the
    body swaps two carries) goes through a temporary, so no copy reads a result already written."""
    swapped = [(v, r) for i, (v, r) in enumerate(zip(new, results)) if v in carries and v is not carries[i]]
    alloc, free = libc(p.module)
    temporaries = []
    for value, result in swapped:
        size = mul(p.b, product(p.b, p.dims(value)), value.type.dtype.itemsize)
        temporary = p.b.call(alloc, [as_i64(64), p.b.mul(p.b.udiv(p.b.add(as_i64(size), as_i64(63)),
                                                                  as_i64(64)), as_i64(64))])
        _memcpy(p, temporary, p.ptr(value), size)
        temporaries.append((temporary, result, size))
    for value, result in zip(new, results):
        if all(value is not v for v, _ in swapped):
            _copy(p, result, value)
    for temporary, result, size in temporaries:
        _memcpy(p, p.ptr(result), temporary, size)
        p.b.call(free, [temporary])


OPS["scan"].lower = emit_scan
