"""A loop nest split between the threads: large elementwise kernels on every core.

An elementwise kernel over a whole activation (the ReLU mask of a convolution's gradient: 1.8M
elements at batch 64) or a whole weight matrix (Adam's update of a 784x128 kernel) is bound by
memory and by the one core it ran on. `split_nest` moves the nest's body into a function of its
own, whose pointer arguments are `noalias` like a kernel's (so LLVM still vectorizes it without
run-time overlap checks), and runs it over slices of the outermost axis in a `parallel_for` task.
Whether to split is decided at run time from the element count (the batch may be symbolic);
nests too small to ever pay (static sizes) are not split at all, saving the compile time.
"""
from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir

from nncompile.codegen import gemm, parallel, target
from nncompile.codegen.gemm import smin
from nncompile.codegen.kernel import Dim
from nncompile.codegen.loops import as_i64, const, for_nest, for_range

i64 = ir.IntType(64)
PARALLEL_ELEMENTS = 1 << 16        # elements from which a nest runs on every core
STATIC_ELEMENTS = 1 << 12          # static part of the size below which a nest is never split
ALIGN = 64                         # slices of a single (merged) axis start at multiples of this

Body = Callable[[ir.IRBuilder, list[ir.Value], list[ir.Value], dict[ir.Value, ir.Value]], None]
"""body(builder, index, pointers, words): the nest's body at `index`, reading and writing
`pointers`; `words` maps each outer i64 value given to `split_nest` to its copy in the body."""


def worth_splitting(dims: Sequence[Dim]) -> bool:
    """Whether a nest over `dims` may be large enough to split (static sizes alone decide no)."""
    static = 1
    for d in dims:
        static *= d if isinstance(d, int) else 1
    symbolic = any(not isinstance(d, int) for d in dims)
    return parallel.num_threads() > 1 and bool(dims) and (static >= STATIC_ELEMENTS if symbolic
                                                          else static >= PARALLEL_ELEMENTS)


def _root(p: ir.Value) -> ir.Value:
    """The pointer a bitcast was made from: two views of one buffer must not both be noalias."""
    while isinstance(p, ir.CastInstr) and p.opname == "bitcast":
        p = p.operands[0]
    return p


def split_nest(b: ir.IRBuilder, module: ir.Module, dims: Sequence[Dim], pointers: Sequence[ir.Value],
               body: Body, words: Sequence[ir.Value] = ()) -> None:
    """Run `body` at every index of the nest `dims`, the outermost axis split between threads.

    `pointers` are the buffers the body touches (handed to it in the same order, as parameters
    of the body's function); `words` are the i64 values the body or `dims` use besides them."""
    roots = list(dict.fromkeys(_root(p) for p in pointers))
    symbolic = list(dict.fromkeys([*(d for d in dims if not isinstance(d, int)), *words]))
    part = _emit_part(module, dims, pointers, roots, symbolic, body)
    task, tb, ctx, index, count = parallel.task_function(module, module.get_unique_name("split"))
    fields = gemm.unpack_fields(tb, ctx, [r.type for r in roots] + [i64] * len(symbolic))
    outer = dict(zip(symbolic, fields[len(roots):])).get(dims[0], dims[0])
    align = ALIGN if len(dims) == 1 else 1      # slices of a lone axis start on whole vectors
    share = tb.mul(gemm.ceil_div(tb, gemm.ceil_div(tb, as_i64(outer), count), align), const(align))
    lo = tb.mul(index, share)
    hi = smin(tb, as_i64(outer), tb.add(lo, share))
    with tb.if_then(tb.icmp_signed("<", lo, hi)):
        tb.call(part, [*fields, lo, hi])
    tb.ret_void()

    total: ir.Value = const(1)
    for d in dims:
        total = b.mul(total, as_i64(d))
    tasks = b.select(b.icmp_signed(">=", total, const(PARALLEL_ELEMENTS)), const(parallel.num_threads()), const(1))
    packed = gemm.pack_fields(b, [*roots, *symbolic])
    b.call(parallel.emit_parallel_for(module), [task, packed, tasks])


def _emit_part(module: ir.Module, dims: Sequence[Dim], pointers: Sequence[ir.Value], roots: list[ir.Value],
               symbolic: list[ir.Value], body: Body) -> ir.Function:
    """part(roots..., words..., lo, hi): the nest with its outermost index in [lo, hi)."""
    fn_type = ir.FunctionType(ir.VoidType(), [r.type for r in roots] + [i64] * (len(symbolic) + 2))
    fn = target.tune(ir.Function(module, fn_type, module.get_unique_name("split.part")))
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    params = list(fn.args)
    for p in params[:len(roots)]:
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    by_root = dict(zip(roots, params))
    local = dict(zip(symbolic, params[len(roots):]))
    lo, hi = params[-2:]
    mine = [by_root[_root(p)] if p.type == by_root[_root(p)].type else b.bitcast(by_root[_root(p)], p.type)
            for p in pointers]
    inner = [local.get(d, d) if not isinstance(d, int) else d for d in dims[1:]]
    with for_range(b, hi, start=lo, name="s") as first, for_nest(b, inner, name="si") as rest:
        body(b, [first, *rest], mine, local)
    b.ret_void()
    return fn
