"""One LLVM module per graph: a function per kernel and one exported entry that runs them all.

The graph arrives fused and scheduled: every node is one kernel. Each kernel becomes an internal
function whose arguments are its distinct buffers (marked `noalias`, which is what lets LLVM
vectorize without run-time overlap checks) and the sizes of the symbolic dimensions. The entry

    i32 nncompile_entry(i8** buffers, i64* symbols)

reads one pointer per buffer slot and one size per symbol and per expression over symbols (the
runtime evaluates them: kernels read `(T+2)//3-2` as they read `T`), calls the kernels in schedule order and
returns 0, or the 1-based number of the first kernel that reported a bad input (an index out of
range) so that the runtime can name it. A second export

    i32 nncompile_steps(i8** buffers, i64* symbols, i64 count, i64* strides)

runs the entry `count` times, moving each slot's pointer on by its stride in bytes after every
run: many training steps (each batch, learning rate and loss one stride further) in one call.
A third, `nncompile_call(i64* frame, array objects...)`, is the entry for one call from Python
with the fewest ctypes arguments (`_emit_call`). Buffers that share memory (views, in-place
results) share one slot, so a kernel never sees two `noalias` pointers to the same bytes.

A graph that updates no parameter keeps the weights that its products read as B packed between
calls, as ONNX Runtime prepacks initializers: the entry reads them from slots after the buffers'
(`Layout.packed`), and a fourth export, `nncompile_prepare(buffers, symbols)`, packs them there;
the runtime calls it when the weights changed since it last did (`runtime/weights.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

from llvmlite import ir

from nncompile.codegen import elementwise, grad, nn, linalg, pooling  # noqa: F401  (fill the op table's lower slots)
from nncompile.codegen import decompositions  # noqa: F401  (cholesky, triangular_solve, lu, det)
from nncompile.codegen import perf_map, simd, winograd
from nncompile.codegen.gemm import libc
from nncompile.codegen.gemm_pack import emit_pack_b_into, packed_size
from nncompile.codegen.kernel import Kernel, storage_type
from nncompile.codegen.linalg import Packing, weight_operands
from nncompile.codegen.loop import emit_loop, emit_reduction
from nncompile.codegen.loops import for_range
from nncompile.codegen.target import new_module, tune
from nncompile.ir.dims import is_expression
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, AttrKind, Fusion, Region, get_op, has_region, regions_of
from nncompile.ir.types import is_symbol

ENTRY = "nncompile_entry"
STEPS = "nncompile_steps"
CALL = "nncompile_call"
PREPARE = "nncompile_prepare"
RUN = f"{ENTRY}.run"     # the kernels' caller where the entry sets the float mode around it
# `nncompile_call` takes one argument per data input; graphs with more inputs than this (ctypes
# calls take at most 1024 arguments) have no such export and the runtime fills the table itself.
CALL_INPUTS_MAX = 256
# Weights from this size are kept packed between calls (smaller ones cost little to pack at each
# call, and the packed GEMM variants they would need are more kernel-library modules to build on
# a new host: the tutorial's 100-64-64-10 MLP compiled 0.7 s longer from an empty cache). A
# filter that a convolution reads as its Winograd transform is kept packed at any size: only
# the prepare function makes the transform.
KEPT_PACKED_BYTES = 1 << 16
i8p = ir.IntType(8).as_pointer()
i32 = ir.IntType(32)
i64 = ir.IntType(64)


@dataclass
class Layout:
    """Where the entry finds things: a slot per distinct buffer, a position per symbol."""

    slots: dict[Value, int] = field(default_factory=dict)   # every graph value -> its slot
    roots: list[Value] = field(default_factory=list)        # slot -> the value owning the memory
    symbols: list[str] = field(default_factory=list)          # the input symbols, then expressions
    # parameters kept packed between calls (value -> how: `linalg.Packing`), each in slot
    # len(roots) + its position: `nncompile_prepare` packs them there
    packed: dict[Value, Packing] = field(default_factory=dict)

    def packed_slots(self) -> list[int]:
        return [len(self.roots) + i for i in range(len(self.packed))]


def graph_symbols(graph: Graph) -> list[str]:
    """The symbolic dimensions of the graph inputs, in order of first appearance."""
    seen: list[str] = []
    for v in graph.inputs:
        seen.extend(d for d in v.type.shape if is_symbol(d) and d not in seen)
    return seen


def graph_sizes(graph: Graph) -> list[str]:
    """The sizes the entry takes: the input symbols, then every expression over them that a
    value's type or a shape attribute (pads) holds, fused bodies included, which the runtime
    evaluates when it binds the symbols."""
    sizes = graph_symbols(graph)
    sizes.extend(dict.fromkeys(d for d in _dims(graph) if is_expression(d) and d not in sizes))
    return sizes


def _dims(graph: Graph) -> Iterator:
    for v in graph.inputs:
        yield from v.type.shape
    for node in graph.nodes:
        for v in node.outputs:
            yield from v.type.shape
        for name, spec in get_op(node.op).attrs.items():
            if spec.kind is AttrKind.SHAPE:
                yield from node.attrs.get(name) or ()
        for region in regions_of(node):
            yield from _dims(region)


def _all_values(graph: Graph) -> list[Value]:
    """The graph's inputs and results, then those of its program regions (recursively)."""
    values = [*graph.inputs, *(v for n in graph.nodes for v in n.outputs)]
    for node in graph.nodes:
        if has_region(node, Region.PROGRAM):
            for region in regions_of(node):
                values += _all_values(region)
    return values


def make_layout(graph: Graph, shares: dict[Value, Value]) -> Layout:
    """The slots of a fused, scheduled graph. `shares` maps a value to the value whose memory it
    uses (views and in-place results, from the memory plan); the others own their memory."""
    layout = Layout(symbols=graph_sizes(graph))
    for v in _all_values(graph):
        root = shares.get(v, v)
        if root not in layout.slots:
            layout.slots[root] = len(layout.roots)
            layout.roots.append(root)
        layout.slots[v] = layout.slots[root]
    if not graph.updates:
        layout.packed = {v: packing for v, packing in weight_operands(graph, graph.param_inputs).items()
                         if math.prod(v.type.shape) * v.type.dtype.itemsize >= KEPT_PACKED_BYTES
                         or packing.winograd}
    return layout


@dataclass
class Program:
    """The entry function being emitted: each slot's pointer and each symbol's size, loaded once.
    Ops whose region is a program (`scan`) are lowered here, by a program emitter
    `emit(p: Program, node, number)`, around the kernels of their body (`emit_kernels`)."""

    module: ir.Module
    b: ir.IRBuilder
    layout: Layout
    pointers: list[ir.Value]
    symbols: list[ir.Value]
    packed: dict[Value, ir.Value] = field(default_factory=dict)   # see Kernel.packed
    status: ir.Value | None = None    # an i32* to store a failure into, in a task (None: return it)
    owned: tuple[ir.Value, ...] = ()  # heap buffers (i8*) of this function that leaving early frees

    def fail(self, reported: int | ir.Value) -> None:
        """Leave with kernel number `reported` as the status, freeing the `owned` buffers: the
        entry returns it; a task (which returns nothing) stores it for the entry to return
        after the tasks."""
        for buffer in self.owned:
            self.b.call(libc(self.module)[1], [buffer])
        status = ir.Constant(i32, reported) if isinstance(reported, int) else reported
        if self.status is None:
            self.b.ret(status)
        else:
            self.b.store(status, self.status)
            self.b.ret_void()

    def ptr(self, value: Value) -> ir.Value:
        return self.pointers[self.layout.slots[value]]

    def same_buffer(self, x: Value, y: Value) -> bool:
        return self.layout.slots[x] == self.layout.slots[y]

    def dims(self, value: Value) -> list[int | ir.Value]:
        """The value's dimensions: ints where static, the symbol's i64 size where symbolic."""
        sizes = dict(zip(self.layout.symbols, self.symbols))
        return [sizes[d] if is_symbol(d) else d for d in value.type.shape]


def build_module(graph: Graph, layout: Layout, name: str = "nncompile") -> ir.Module:
    """The LLVM module of a fused, scheduled graph whose buffers `layout` assigns to slots."""
    module = new_module(name)
    entry = _entry_function(module, ENTRY)
    run = _entry_function(module, RUN) if graph.updates else entry
    b = ir.IRBuilder(run.append_basic_block("entry"))
    pointers, symbol_values = _read_frame(b, layout, run.args)
    packed = {v: b.bitcast(ptr, storage_type(v.type.dtype).as_pointer())
              for v, ptr in zip(layout.packed, pointers[len(layout.roots):])}
    emit_kernels(Program(module, b, layout, pointers[:len(layout.roots)], symbol_values, packed), graph.nodes)
    b.ret(ir.Constant(i32, 0))
    if run is not entry:
        _emit_flushing(entry, run)
    _emit_prepare(module, layout)
    _emit_steps(module, entry, frame_layout(layout)[0])
    if len(graph.data_inputs) <= CALL_INPUTS_MAX:
        _emit_call(module, entry, layout, [layout.slots[v] for v in graph.data_inputs])
    return module


def _emit_flushing(entry: ir.Function, run: ir.Function) -> None:
    """`entry`: `run` with denormals flushed to zero, the caller's float mode restored after.

    A graph that updates parameters is a training step (or an evaluation, whose metrics add up,
    or a stateful layer's prediction), and training makes denormals: Adam's
    first moment of a weight whose gradient stays 0 (a dead ReLU unit) decays by 0.9 a step,
    below 2**-126 after about 800 steps, where every operation on it takes a microcode assist
    (the 784 x 128 kernel's update of the MNIST MLP went from 65 to 300 us a step). TensorFlow
    and XLA (JAX, Keras 3's default backend) train with denormals flushed too; graphs that update
    nothing (prediction) keep IEEE arithmetic. The pool runs each job in its caller's mode
    (`parallel.py`)."""
    run.linkage = "internal"
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    mode = simd.float_mode(b)
    simd.set_float_mode(b, b.or_(mode, ir.Constant(i32, simd.FLUSH_DENORMALS)))
    status = b.call(run, list(entry.args))
    simd.set_float_mode(b, mode)
    b.ret(status)


def _entry_function(module: ir.Module, name: str) -> ir.Function:
    """i32 name(i8** buffers, i64* symbols)."""
    return tune(ir.Function(module, ir.FunctionType(i32, [i8p.as_pointer(), i64.as_pointer()]), name))


def _read_frame(b: ir.IRBuilder, layout: Layout, args) -> tuple[list[ir.Value], list[ir.Value]]:
    """The pointer of every slot (buffers, then packed weights) and the size of every symbol."""
    buffers, sizes = args
    symbols = [b.load(b.gep(sizes, [ir.Constant(i64, s)]), name=f"sym{s}") for s in range(len(layout.symbols))]
    pointers = [b.load(b.gep(buffers, [ir.Constant(i64, s)]), name=f"buf{s}")
                for s in range(frame_layout(layout)[0])]
    return pointers, symbols


def _emit_prepare(module: ir.Module, layout: Layout) -> None:
    """`nncompile_prepare(buffers, symbols)`: each weight of `layout.packed` packed from its own
    slot into its packed slot, as the products reading it expect (a convolution's weights one
    group after another). The runtime calls it before the first call and again after any
    weight changed (`runtime/weights.py`)."""
    fn = _entry_function(module, PREPARE)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers, _ = _read_frame(b, layout, fn.args)
    for (value, packing), slot in zip(layout.packed.items(), layout.packed_slots()):
        dtype = value.type.dtype
        ptr = storage_type(dtype).as_pointer()
        source, target = (b.bitcast(pointers[s], ptr) for s in (layout.slots[value], slot))
        if packing.winograd:     # the blocks packed are those of the filter's transform
            source = winograd.emit_filter_transform_call(b, value.type, source)
        n, k, ldb, count, stride = _packed_blocks(value, packing)
        pack = emit_pack_b_into(module, dtype, transpose_b=packing.transposed,
                                conv_columns=n if packing.groups else None)
        block_elements = packed_size(dtype, n, k, conv=packing.groups > 0) // dtype.itemsize
        for block in range(count):
            b.call(pack, [ir.Constant(i64, n), ir.Constant(i64, k), b.gep(source, [ir.Constant(i64, block * stride)]),
                          ir.Constant(i64, ldb), b.gep(target, [ir.Constant(i64, block * block_elements)])])
        if packing.winograd:
            b.call(libc(module)[1], [b.bitcast(source, i8p)])
    b.ret(ir.Constant(i32, 0))


def _packed_blocks(value: Value, packing: Packing) -> tuple[int, int, int, int, int]:
    """(N, K, ldb, count, stride): the weight is packed as `count` B's, each K x N (N x K when
    transposed) at `stride` elements from the last: the weight read as B, one per group of a
    convolution's filter (KH, KW, cin/groups, cout: K = KH*KW*cin/groups, N = cout/groups), or
    one per point of a 3x3 filter's Winograd transform (`winograd.POINTS` cin x cout matrices)."""
    if packing.winograd:
        _, _, cin, cout = value.type.shape
        return cout, cin, cout, winograd.POINTS, cin * cout
    if packing.groups:
        kh, kw, cg, cout = value.type.shape
        n = cout // packing.groups
        return n, kh * kw * cg, cout, packing.groups, n
    rows, cols = value.type.shape
    return (rows, cols, cols, 1, 0) if packing.transposed else (cols, rows, cols, 1, 0)


def packed_sizes(layout: Layout) -> list[int]:
    """The bytes of each packed weight's slot (64-byte aligned memory the runtime owns)."""
    sizes = []
    for v, p in layout.packed.items():
        n, k, _, count, _ = _packed_blocks(v, p)
        sizes.append(count * packed_size(v.type.dtype, n, k, conv=p.groups > 0))
    return sizes


def emit_kernels(p: Program, nodes: list[Node], number: int | None = None, prefix: str = "k") -> None:
    """Call the kernel of each node in order. A kernel reporting a bad input makes the entry
    return the node's 1-based number (for a program region's kernels: `number`, the number of
    the top-level node running them)."""
    for i, node in enumerate(nodes, start=1):
        reported = number if number is not None else i
        if node.op == "constant":
            continue   # its array is a buffer the runtime binds, like a parameter
        if has_region(node, Region.PROGRAM):
            get_op(node.op).lower(p, node, reported, f"{prefix}{i}.")
            continue
        packed = [v for v in dict.fromkeys(node.inputs) if v in p.packed]
        fn = _kernel_function(p.module, node, f"{prefix}{i}.{node.op}", p.layout, packed)
        args = [p.b.bitcast(p.pointers[s], arg.type) for s, arg in zip(_kernel_slots(node, p.layout), fn.args)]
        status = p.b.call(fn, args + p.symbols + [p.packed[v] for v in packed])
        with p.b.if_then(p.b.icmp_signed("!=", status, ir.Constant(i32, 0)), likely=False):
            p.fail(reported)


def _emit_call(module: ir.Module, entry: ir.Function, layout: Layout, input_slots: list[int]) -> None:
    """`nncompile_call(frame, array0, array1, ...)`: the entry on a frame of 64-bit words laid out
    as `frame_layout` says (buffer pointers, symbol sizes, then `data_offset`), after storing into
    the input slots the data pointers read from the numpy array objects themselves, at byte
    `data_offset` of each object (where `PyArray_DATA` reads it). One frame address and the
    arrays cost a ctypes call less than separate tables, an offset and each array's address."""
    slots, sizes, offset_at = frame_layout(layout)
    arrays = [i8p] * len(input_slots)
    fn = tune(ir.Function(module, ir.FunctionType(i32, [i64.as_pointer(), *arrays]), CALL))
    frame, *objects = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    buffers = b.bitcast(frame, i8p.as_pointer())
    offset = b.load(b.gep(frame, [ir.Constant(i64, offset_at)]))
    for slot, obj in zip(input_slots, objects):
        data = b.load(b.bitcast(b.gep(obj, [offset]), i8p.as_pointer()))
        b.store(data, b.gep(buffers, [ir.Constant(i64, slot)]))
    b.ret(b.call(entry, [buffers, b.gep(frame, [ir.Constant(i64, slots)])]))


def frame_layout(layout: Layout) -> tuple[int, int, int]:
    """`nncompile_call`'s frame of 64-bit words, as (slots, sizes, offset_at): a pointer per buffer
    slot in words [0, slots), the symbol sizes in [slots, slots + sizes), the arrays' data offset
    at word offset_at (a graph with no symbols keeps one unused size: the entry's size table
    always has one)."""
    slots = len(layout.roots) + len(layout.packed)
    sizes = max(len(layout.symbols), 1)
    return slots, sizes, slots + sizes


def _emit_steps(module: ir.Module, entry: ir.Function, slots: int) -> None:
    """`nncompile_steps`: the entry run `count` times over pointers that advance by `strides`."""
    fn = tune(ir.Function(module, ir.FunctionType(i32, [i8p.as_pointer(), i64.as_pointer(), i64,
                                                        i64.as_pointer()]), STEPS))
    buffers, sizes, count, strides = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    local = b.alloca(i8p, max(slots, 1))
    # loops over the slots, not a statement per slot: a training step has hundreds of buffers
    with for_range(b, slots, name="copy") as s:
        b.store(b.load(b.gep(buffers, [s])), b.gep(local, [s]))
    with for_range(b, count, name="step"):
        status = b.call(entry, [local, sizes])
        with b.if_then(b.icmp_signed("!=", status, ir.Constant(i32, 0)), likely=False):
            b.ret(status)
        with for_range(b, slots, name="advance") as s:
            slot = b.gep(local, [s])
            b.store(b.gep(b.load(slot), [b.load(b.gep(strides, [s]))]), slot)
    b.ret(ir.Constant(i32, 0))


def _kernel_slots(node: Node, layout: Layout) -> list[int]:
    """The distinct buffer slots a kernel touches, outputs first, in a fixed order."""
    slots: list[int] = []
    for v in [*node.outputs, *node.inputs]:
        s = layout.slots[v]
        if s not in slots:
            slots.append(s)
    return slots


def _kernel_function(module: ir.Module, node: Node, name: str, layout: Layout,
                     packed: list[Value] = ()) -> ir.Function:
    """The kernel's function: its buffers (noalias), the symbols' sizes, then the buffers of its
    operands that `packed` names, packed as a GEMM's B. Made once: a program region's kernels
    may be called from more than one loop (`codegen.scan`)."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    slots = _kernel_slots(node, layout)
    by_slot = {layout.slots[v]: v for v in [*node.inputs, *node.outputs]}
    arg_types = [storage_type(by_slot[s].type.dtype).as_pointer() for s in slots]
    packed_types = [storage_type(v.type.dtype).as_pointer() for v in packed]
    fn_type = ir.FunctionType(i32, arg_types + [i64] * len(layout.symbols) + packed_types)
    fn = tune(ir.Function(module, fn_type, name))
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    if perf_map.enabled():
        fn.attributes.add("noinline")   # each kernel its own symbol for perf
    ptr_args = fn.args[:len(slots)]
    for arg in ptr_args:
        arg.add_attribute("noalias")
    symbols = dict(zip(layout.symbols, fn.args[len(slots):len(slots) + len(layout.symbols)]))
    packed_args = dict(zip(packed, fn.args[len(slots) + len(layout.symbols):]))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = {}
    for v in [*node.inputs, *node.outputs]:
        arg = ptr_args[slots.index(layout.slots[v])]
        pointers[v] = arg if arg.type.pointee == storage_type(v.type.dtype) else \
            b.bitcast(arg, storage_type(v.type.dtype).as_pointer())
    lower_node(Kernel(b, module, pointers, symbols, packed_args), node)
    if not b.block.is_terminated:
        b.ret(ir.Constant(i32, 0))
    return fn


def lower_node(k: Kernel, node: Node) -> None:
    """Emit the code of one kernel: an elementwise or broadcast op as a loop, any other op (a
    fused group among them) by its kernel emitter."""
    opdef = get_op(node.op)
    if opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST):
        emit_loop(k, node.inputs, node.outputs, [node], node.outputs)
    elif opdef.lower is None:
        raise IRError(f"{node.describe()}: op {node.op!r} has no CPU lowering")
    else:
        opdef.lower(k, node)


def _fused(k: Kernel, node: Node) -> None:
    """A fused group by its kind. Only the body's inputs take the node's buffers: a body output
    may be a body input or another output, so each result is stored into the node output at its
    own position."""
    body: Graph = node.attrs["body"]
    k.bind(body.inputs, node.inputs)
    FUSED[node.attrs["kind"]](k, body, node.outputs)


def _loop(k: Kernel, body: Graph, outputs: list[Value]) -> None:
    emit_loop(k, body.inputs, outputs, body.nodes, body.outputs)


def _reduction(k: Kernel, body: Graph, outputs: list[Value]) -> None:
    at = next(i for i, n in enumerate(body.nodes) if get_op(n.op).fusion is Fusion.REDUCTION)
    emit_reduction(k, body.inputs, outputs, body.nodes[:at], body.nodes[at],
                   body.nodes[at + 1:], body.outputs)


def _anchored(k: Kernel, body: Graph, outputs: list[Value]) -> None:
    get_op(body.nodes[0].op).lower(k, body.nodes[0], body.nodes[1:], outputs[0])


FUSED: dict[str, Callable[[Kernel, Graph, list[Value]], None]] = {
    "loop": _loop, "reduction": _reduction, "matmul": _anchored, "conv2d": _anchored,
    "max_pool2d": _anchored, "avg_pool2d": _anchored,
}
OPS["fused"].lower = _fused

from nncompile.codegen import scan  # noqa: E402,F401  (fills scan's lower slot; it builds on this module)
