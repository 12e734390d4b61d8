"""Loop nests for kernel emitters: counted loops over i64 indices on an `llvmlite.ir.IRBuilder`.

    >>> with for_range(b, n) as i:         # for (i = 0; i < n; i++)
    ...     b.store(b.load(b.gep(x, [i])), b.gep(y, [i]))

Loops are emitted rotated (test at the bottom, guarded once at the top), the form LLVM's loop
vectorizer and unroller expect, so they need no further canonicalization to vectorize.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from llvmlite import ir

i64 = ir.IntType(64)


def const(value: int) -> ir.Constant:
    return ir.Constant(i64, value)


def as_i64(value: int | ir.Value) -> ir.Value:
    return const(value) if isinstance(value, int) else value


@contextlib.contextmanager
def for_range(b: ir.IRBuilder, stop: int | ir.Value, start: int | ir.Value = 0, step: int | ir.Value = 1,
              name: str = "i", scalar: bool = False) -> Iterator[ir.Value]:
    """Emit `for (i = start; i < stop; i += step)`; the body is what the `with` block emits.

    On exit the builder sits after the loop. `scalar`: LLVM must neither vectorize nor unroll
    the loop (`keep_scalar`)."""
    start, stop = as_i64(start), as_i64(stop)
    fn = b.function
    body = fn.append_basic_block(f"{name}.body")
    latch = fn.append_basic_block(f"{name}.latch")
    after = fn.append_basic_block(f"{name}.end")
    pre = b.block
    b.cbranch(b.icmp_signed("<", start, stop), body, after)
    b.position_at_end(body)
    index = b.phi(i64, name=name)
    index.add_incoming(start, pre)
    yield index
    b.branch(latch)
    b.position_at_end(latch)
    following = b.add(index, as_i64(step), name=f"{name}.next", flags=["nsw"])
    index.add_incoming(following, latch)
    branch = b.cbranch(b.icmp_signed("<", following, stop), body, after)
    if scalar:
        keep_scalar(branch)
    b.position_at_end(after)


def keep_scalar(latch_branch: ir.Instruction) -> None:
    """Loop metadata on a loop's latch branch: LLVM neither vectorizes nor unrolls the loop. For
    loops whose vector forms cost compile time and buy little: strided copies (packing), and
    elementwise loops over rows narrower than a vector (`loop.py`)."""
    fn = latch_branch.parent.parent
    module = fn.module
    vectorize = ir.MetaDataString(module, "llvm.loop.vectorize.enable")
    options = [module.add_metadata([vectorize, ir.Constant(ir.IntType(1), 0)]),
               module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])]
    # loop metadata must refer to itself (that makes it unique per loop); llvmlite cannot say
    # `distinct`, so the node is made self-referential after it is created
    node = module.add_metadata(options + [ir.MetaDataString(module, f"{fn.name}.{latch_branch.parent.name}")])
    node.operands = (node,) + node.operands
    latch_branch.set_metadata("llvm.loop", node)


@contextlib.contextmanager
def for_nest(b: ir.IRBuilder, stops: Sequence[int | ir.Value], name: str = "i",
             scalar: bool = False) -> Iterator[list[ir.Value]]:
    """Nested `for_range` loops, outermost first; yields the list of indices."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(for_range(b, stop, name=f"{name}{k}", scalar=scalar))
               for k, stop in enumerate(stops)]


def linear_index(b: ir.IRBuilder, indices: Sequence[ir.Value], strides: Sequence[int | ir.Value]) -> ir.Value:
    """sum(index * stride), skipping zero strides: the element offset of a strided access."""
    total: ir.Value = const(0)
    for index, stride in zip(indices, strides):
        if isinstance(stride, int) and stride == 0:
            continue
        term = index if isinstance(stride, int) and stride == 1 else b.mul(index, as_i64(stride), flags=["nsw"])
        total = term if isinstance(total, ir.Constant) and total.constant == 0 else b.add(total, term, flags=["nsw"])
    return total


def entry_alloca(b: ir.IRBuilder, type: ir.Type) -> ir.AllocaInstr:
    """A stack slot made in the function's entry block, where LLVM promotes it to a register."""
    with b.goto_entry_block():
        return b.alloca(type)
