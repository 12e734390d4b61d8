"""Lowering of matmul and conv2d onto the host's kernel library (`library.py`), with their
elementwise epilogues.

An epilogue runs inside the kernel's store when each of its other operands can be read as a 2-D
(rows, columns) view of the result with fixed strides: a bias (0, 1), a per-row value (1, 0), a
full residual (N, 1), a scalar (0, 0). A bias and maybe an activation of library.ACTIVATIONS is
a kernel of its own, in registers; any other such epilogue is a tile function of this module that
the kernel calls on each finished tile. Otherwise the anchor writes its result first and one loop
over it applies the epilogue in place. Products too small for packing to pay, and integer ones,
are plain loop nests of this module.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple, Sequence

import numpy as np
from llvmlite import ir

from nncompile.codegen.conv import geometry, wide_tile
from nncompile.codegen.conv_direct import emit_direct, has_symbolic_image
from nncompile.codegen import gemm, library, parallel, winograd
from nncompile.codegen.gemm import Epilogue, emit_loop_gemm
from nncompile.codegen.kernel import Dim, Kernel, mul, product
from nncompile.codegen.loop import apply_nodes, emit_loop, global_array
from nncompile.codegen.loops import as_i64, const, for_nest, linear_index
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.fused import is_row_sum
from nncompile.ir.optable import OPS
from nncompile.ir.types import is_symbol


def _operands(epilogue: Sequence[Node], anchor: Value) -> list[Value]:
    """The epilogue's inputs that come from outside it (bias, residual...), in first-use order."""
    made = {v for n in epilogue for v in n.outputs} | {anchor}
    seen: list[Value] = []
    for n in epilogue:
        seen.extend(v for v in n.inputs if v not in made and v not in seen)
    return seen


def _strides_2d(v: Value, out_shape: Sequence, cols: int) -> tuple[int, int] | None:
    """(row, column) strides reading `v` broadcast over a result viewed as (-1, cols), or None
    when `v` varies along some but not all of the row axes."""
    rank = len(out_shape)
    shape = (1,) * (rank - v.type.rank) + tuple(v.type.shape)
    col_real = shape[-1] != 1
    rows_real = [d != 1 for d in shape[:-1]]
    if any(is_symbol(d) for d in shape[-1:]):
        return None
    if all(rows_real) and rows_real:
        return (cols if col_real else 1), (1 if col_real else 0)
    if not any(rows_real):
        return 0, (1 if col_real else 0)
    return None


def _register_epilogue(k: Kernel, epilogue: Sequence[Node], anchor: Value,
                       out_shape: Sequence) -> tuple[Epilogue | None, list[Value]]:
    """The GEMM epilogue of `epilogue` nodes, or None if it cannot run in registers."""
    if not epilogue:
        return None, []
    if any(n.op == "constant" and n.attrs["value"].size != 1 for n in epilogue):
        return None, []
    operands = _operands(epilogue, anchor)
    cols = out_shape[-1]
    strides = [_strides_2d(v, out_shape, cols) for v in operands]
    # GEMM reads every operand as the result's element type (a bool mask, e.g. relu's VJP, is not);
    # the integer GEMMs, plain loop nests, apply an epilogue after them.
    if any(s is None for s in strides) or any(v.type.dtype != anchor.type.dtype for v in operands) \
            or not library.serves(anchor.type.dtype):
        return None, []

    def apply(b: ir.IRBuilder, acc: ir.Value, values: list[ir.Value]) -> ir.Value:
        env = {anchor: acc, **dict(zip(operands, values))}
        inner = Kernel(b, k.module, {}, {})
        apply_nodes(inner, epilogue, env, acc)
        return env[epilogue[-1].outputs[0]]

    return Epilogue(tuple(strides), apply), operands


def _in_place_epilogue(k: Kernel, epilogue: Sequence[Node], anchor: Value, output: Value) -> None:
    """Apply the epilogue by one loop over the anchor's result, which already sits in `output`."""
    k.bind([anchor], [output])
    emit_loop(k, [anchor, *_operands(epilogue, anchor)], [output], epilogue, [epilogue[-1].outputs[0]])


# Products whose static sizes multiply to at most this run as a plain loop nest: with one size
# symbolic (the batch) that is a few hundred multiply-adds per sample, where packing would cost
# more than it saves and the full GEMM kernel's compile time would dominate.
TINY_PRODUCT = 256


def _tiny(m, n, depth) -> bool:
    static = [d for d in (m, n, depth) if isinstance(d, int)]
    return len(static) >= 2 and int(np.prod(static)) <= TINY_PRODUCT


class Packing(NamedTuple):
    """How a weight is packed ahead for the products reading it: as a GEMM's B (transposed or
    not), or, `groups` > 0, as a convolution's weights, a B of one K block per group, or,
    `winograd`, as the transform of a 3x3 filter (`winograd.emit_filter_transform_call`)."""
    transposed: bool
    groups: int = 0
    winograd: bool = False


def weight_operands(graph: Graph, candidates: Sequence[Value]) -> dict[Value, Packing]:
    """The `candidates` that every node of `graph` reading them reads as the weights of its
    product (a 2-D float B, or a convolution's float filter), each with its `Packing`: those
    `_matmul` and `_conv2d` can read packed ahead, once for many products (a loop's weights, a
    model's weights between two changes). A fused product's epilogue may read one too (it reads
    the array itself). A scan reading one passes it on to its body, whose products decide."""
    wanted = set(candidates)
    uses: dict[Value, set] = {}
    for node in graph.nodes:
        if node.op == "scan":
            inner = node.attrs["body"]
            body_uses = weight_operands(inner, [w for v, w in zip(node.inputs, inner.inputs) if v in wanted])
            for v, w in zip(node.inputs, inner.inputs):
                if v in wanted:
                    uses.setdefault(v, set()).add(body_uses.get(w))
            continue
        inner = node.attrs["body"] if node.op == "fused" and node.attrs["kind"] in ("matmul", "conv2d") else None
        anchor = inner.nodes[0] if inner is not None else node
        for position, v in enumerate(node.inputs):
            if v in wanted:
                uses.setdefault(v, set()).add(_packing(anchor, inner.inputs[position] if inner is not None else v))
    return {v: kinds.pop() for v, kinds in uses.items() if len(kinds) == 1 and None not in kinds}


def _packing(anchor: Node, operand: Value) -> Packing | None:
    """How `anchor` reads `operand` as packed weights, or None."""
    if _reads_as_b(anchor, operand):
        return Packing(anchor.attrs["transpose_b"])
    if anchor.op == "conv2d" and anchor.inputs[1] is operand and anchor.inputs[0] is not operand \
            and operand.type.dtype in (DType.f32, DType.f64):
        return Packing(False, anchor.attrs["groups"], winograd.eligible(anchor))
    return None


def _reads_as_b(anchor: Node, operand: Value) -> bool:
    """Whether `anchor` is a product reading `operand` only as a 2-D float B that `_matmul` reads
    as one product (A 2-D, or a row-major stack of matrices, which is one product over its rows)."""
    if anchor.op != "matmul" or len(anchor.inputs) != 2 or anchor.inputs[1] is not operand \
            or anchor.inputs[0] is operand or operand.type.rank != 2 or not operand.type.dtype.is_float:
        return False
    return anchor.outputs[0].type.rank == 2 or not anchor.attrs["transpose_a"]


def _row_sum(k: Kernel, node: Node, output: Value) -> None:
    """sum over the batch of a_b^T @ g_b: one product a^T @ g over all rows of the stacks."""
    a, g = node.inputs
    dims = k.dims(a)
    rows = product(k.b, dims[:-1])
    m, n = dims[-1], k.dims(g)[-1]
    fn = library.shared_gemm(k.module, node.outputs[0].type.dtype, transpose_a=True)
    k.b.call(fn, [as_i64(m), as_i64(n), as_i64(rows), k.ptr(a), as_i64(m), k.ptr(g), as_i64(n),
                  k.ptr(output), as_i64(n)])


def _matmul(k: Kernel, node: Node, epilogue: Sequence[Node] = (), output: Value | None = None) -> None:
    if len(epilogue) == 1 and is_row_sum(node, epilogue[0]):
        _row_sum(k, node, output)
        return
    b = k.b
    a, w = node.inputs
    result = node.outputs[0]
    out = output if output is not None else result
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    out_dims = k.dims(result)
    m, n = out_dims[-2], out_dims[-1]
    depth = k.dims(a)[-2 if ta else -1]
    batched = result.type.rank > 2
    if batched and w.type.rank == 2 and not ta:
        # A row-major stack of matrices times one matrix is one product over all their rows
        # (Dense on a sequence, a recurrent layer's input projection): one packing of w.
        m, batched = product(b, out_dims[:-1]), False
    fused, operands = (None, []) if batched else _register_epilogue(k, epilogue, result, result.type.shape)
    dtype = result.type.dtype
    packed = [k.packed[w]] if w in k.packed and not batched and not _tiny(m, n, depth) else []
    rows = m if isinstance(m, int) else None
    extra = [k.ptr(v) for v in operands]
    if _tiny(m, n, depth):
        fn = emit_loop_gemm(k.module, k.module.get_unique_name("gemm"), dtype, transpose_a=ta, transpose_b=tb,
                            epilogue=fused, columns=n if isinstance(n, int) else None)
    else:
        kind, extra = _library_epilogue(k, node, epilogue, fused, operands)
        fn = library.shared_gemm(k.module, dtype, transpose_a=ta, transpose_b=tb, prepacked=bool(packed),
                                 rows=rows, epilogue=kind)
    lda, ldb = k.dims(a)[-1], k.dims(w)[-1]
    if not batched:
        b.call(fn, [as_i64(m), as_i64(n), as_i64(depth), k.ptr(a), as_i64(lda), k.ptr(w), as_i64(ldb),
                    k.ptr(out), as_i64(n), *extra, *packed])
    else:
        _batched(k, fn, a, w, result, out, (m, n, depth, lda, ldb))
    if epilogue and fused is None:
        _in_place_epilogue(k, epilogue, result, out)


def _library_epilogue(k: Kernel, node: Node, epilogue: Sequence[Node], fused: Epilogue | None,
                      operands: list[Value]) -> tuple[str | None, list[ir.Value]]:
    """(the library kernel's epilogue name, its trailing arguments) for `node`'s fused epilogue:
    none; a bias, a residual and an activation of library.ACTIVATIONS, each maybe absent
    (`_bias_chain`), which the kernel applies in registers; or any other as a tile function of
    this module."""
    if fused is None:
        return None, []
    anchor = node.outputs[0]
    dtype, columns = anchor.type.dtype, anchor.type.shape[-1]
    chain = _bias_chain(epilogue, anchor, dict(zip(operands, fused.operands)))
    if chain is not None and isinstance(columns, int):
        bias, residual, activation = chain
        if residual is None or activation in (None, "relu"):
            # no bias: the kernel's reads zeros
            bias_ptr = k.ptr(bias) if bias is not None else global_array(k.module, np.zeros(columns, dtype.numpy))
            kind, rest = library.bias_kernel(k.module, dtype, activation,
                                             None if residual is None else k.ptr(residual))
            return kind, [bias_ptr, *rest]
    tile = _tile_function(k, node, epilogue, fused, operands)
    return "tile", library.tile_arguments(k.b, dtype, tile, [k.ptr(v) for v in operands])


def _bias_chain(epilogue: Sequence[Node], anchor: Value,
                strides: dict[Value, tuple[int, int]]) -> tuple[Value | None, Value | None, str | None] | None:
    """(bias, residual, activation) when the epilogue is `anchor` + bias + residual and then an
    activation, in that order (what the library's kernels compute), each but one maybe absent:
    a bias read at strides (0, 1), a residual of the result's shape; None for any other."""
    bias = residual = activation = None
    current = anchor
    for i, n in enumerate(epilogue):
        if n.attrs:
            return None
        if n.op == "add" and current in n.inputs:
            other = n.inputs[1] if n.inputs[0] is current else n.inputs[0]
            role = strides.get(other)
            if role == (0, 1) and bias is None and residual is None:
                bias = other
            elif role is not None and role[1] == 1 and other.type.shape == anchor.type.shape and residual is None:
                residual = other
            else:
                return None
        elif n.op in library.ACTIVATIONS and i == len(epilogue) - 1 and tuple(n.inputs) == (current,):
            activation = n.op
        else:
            return None
        current = n.outputs[0]
    return bias, residual, activation


def _tile_function(k: Kernel, node: Node, epilogue: Sequence[Node], fused: Epilogue,
                   operands: list[Value]) -> ir.Function:
    """The tile function applying `epilogue` to `node`'s product (`library.tile_function`), made
    once per module for all products whose epilogues are the same code: two Dense(64, relu)
    layers of an MLP share one. Its name is a digest of everything its code is made from."""
    anchor = node.outputs[0]
    key = (anchor.type.dtype, fused.operands, _epilogue_key(epilogue, anchor, operands))
    name = "tile.e" + hashlib.blake2b(repr(key).encode(), digest_size=8).hexdigest()
    return library.tile_function(k.module, name, anchor.type.dtype, fused)


def _epilogue_key(epilogue: Sequence[Node], anchor: Value, operands: list[Value]) -> tuple:
    """What the epilogue's register code is made from: each node's op, attributes, result types
    and inputs, the inputs named by role (the product, the i-th operand, an earlier result)."""
    roles: dict[Value, str] = {anchor: f"acc:{anchor.type}"}
    roles.update((v, f"e{i}:{v.type}") for i, v in enumerate(operands))
    nodes = []
    for j, n in enumerate(epilogue):
        attrs = tuple(sorted((name, _attr_key(value)) for name, value in n.attrs.items()))
        nodes.append((n.op, attrs, tuple(roles[v] for v in n.inputs), tuple(str(v.type) for v in n.outputs)))
        roles.update((v, f"n{j}.{i}:{v.type}") for i, v in enumerate(n.outputs))
    return tuple(nodes)


def _attr_key(value) -> object:
    """An attribute as a key: arrays by dtype, shape and bytes (repr elides large ones)."""
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.shape, value.tobytes().hex()
    return repr(value)


def _batched(k: Kernel, fn: ir.Function, a: Value, w: Value, result: Value, out: Value,
             sizes: tuple) -> None:
    """One GEMM per index of the (broadcast) batch axes."""
    b = k.b
    m, n, depth, lda, ldb = sizes
    batch_dims = k.dims(result)[:-2]
    rank = len(batch_dims)

    def batch_strides(v: Value) -> list[Dim]:
        dims = k.dims(v)
        matrix = mul(b, dims[-1], dims[-2])
        lead = dims[:-2]
        strides: list[Dim] = [0] * rank
        step: Dim = matrix
        for axis in range(1, len(lead) + 1):
            d = lead[-axis]
            if not (isinstance(d, int) and d == 1):
                strides[rank - axis] = step
            step = mul(b, step, d)
        return strides

    strides = [batch_strides(a), batch_strides(w), batch_strides(result)]
    pointers = [k.ptr(a), k.ptr(w), k.ptr(out)]
    count = as_i64(product(b, batch_dims))
    threads = const(parallel.num_threads())
    # Enough products to share evenly: each thread runs whole ones (their own work then runs
    # inline, with no fork and join per product); else one after the other, each on every core.
    apart = b.and_(b.icmp_signed(">=", count, threads),
                   b.or_(b.icmp_signed("==", b.srem(count, threads), const(0)),
                         b.icmp_signed(">=", count, b.mul(threads, const(4)))))
    with b.if_else(apart) as (each_whole, in_turn):
        with each_whole:
            task = _batch_task(k.module, fn, rank)
            words = [*pointers, *(as_i64(d) for d in (m, n, depth, lda, ldb, *batch_dims)),
                     *(as_i64(s) for row in strides for s in row)]
            b.call(parallel.emit_parallel_for(k.module), [task, gemm.pack_fields(b, words), count])
        with in_turn:
            with for_nest(b, batch_dims, name="batch") as index:
                _call_at(b, fn, index, pointers, strides, (m, n, depth, lda, ldb))


def _call_at(b: ir.IRBuilder, fn: ir.Function, index: Sequence[ir.Value], pointers: Sequence[ir.Value],
             strides: Sequence[Sequence[Dim]], sizes: Sequence[Dim]) -> None:
    """The product at batch `index`: A, B and C at their strides (elements) from `pointers`."""
    m, n, depth, lda, ldb = (as_i64(v) for v in sizes)
    pa, pw, pc = (b.gep(p, [linear_index(b, index, s)]) for p, s in zip(pointers, strides))
    b.call(fn, [m, n, depth, pa, lda, pw, ldb, pc, n])


def _batch_task(module: ir.Module, fn: ir.Function, rank: int) -> ir.Function:
    """task(ctx, index, count): the product at flat batch `index` (ctx: A, B, C, M, N, K, lda,
    ldb, the batch dims, then the strides of A, B and C along them)."""
    task, b, ctx, index, _ = parallel.task_function(module, module.get_unique_name("batched"))
    ptr = fn.args[3].type
    words = gemm.unpack_fields(b, ctx, [ptr, ptr, ptr] + [ir.IntType(64)] * (5 + 4 * rank))
    pointers, sizes, dims = words[:3], words[3:8], words[8:8 + rank]
    strides = [words[8 + rank * (1 + i):8 + rank * (2 + i)] for i in range(3)]
    position, rest = [], index
    for d in reversed(dims):
        position.append(b.srem(rest, d))
        rest = b.sdiv(rest, d)
    _call_at(b, fn, position[::-1], pointers, strides, sizes)
    b.ret_void()
    return task


def _conv2d(k: Kernel, node: Node, epilogue: Sequence[Node] = (), output: Value | None = None) -> None:
    x, w = node.inputs
    result = node.outputs[0]
    out = output if output is not None else result
    batch, h, wd, cin = k.dims(x)
    kh, kw, _, cout = w.type.shape
    if has_symbolic_image(k, x, result):
        emit_direct(k, node, x, result, (kh, kw), {"x": k.ptr(x), "w": k.ptr(w), "y": k.ptr(out)}, "y")
        if epilogue:
            _in_place_epilogue(k, epilogue, result, out)
        return
    fused, operands = _register_epilogue(k, epilogue, result, result.type.shape)
    dtype = result.type.dtype
    words = geometry(node.describe(), dtype, in_hw=(h, wd), cin=cin, kernel_hw=(kh, kw), cout=cout,
                     strides=node.attrs["strides"], pads=node.attrs["pads"], dilations=node.attrs["dilations"],
                     groups=node.attrs["groups"])
    kind, extra = _library_epilogue(k, node, epilogue, fused, operands)
    packed = [k.packed[w]] if w in k.packed else []
    # packed as a Winograd filter exactly when eligible: a weight is kept packed only when every
    # product reading it reads it alike (`weight_operands`), and `_packing` asks `eligible` too
    fn = library.shared_conv2d(k.module, dtype, epilogue=kind, prepacked=bool(packed),
                               wide=wide_tile(dtype, cout // node.attrs["groups"]),
                               winograd=bool(packed) and winograd.eligible(node))
    k.b.call(fn, [as_i64(batch), k.ptr(x), k.ptr(w), k.ptr(out), _words(k.module, words), *extra, *packed])
    if epilogue and fused is None:
        _in_place_epilogue(k, epilogue, result, out)


def _words(module: ir.Module, words: list[int]) -> ir.Value:
    """A constant i64 array of `words` in `module` (one per distinct array), as an i64*."""
    name = "words." + "_".join(map(str, words))
    array = module.globals.get(name)
    if array is None:
        array = ir.GlobalVariable(module, ir.ArrayType(ir.IntType(64), len(words)), name)
        array.linkage, array.global_constant = "internal", True
        array.initializer = ir.Constant(array.value_type, words)
    return array.bitcast(ir.IntType(64).as_pointer())


OPS["matmul"].lower = _matmul
OPS["conv2d"].lower = _conv2d
