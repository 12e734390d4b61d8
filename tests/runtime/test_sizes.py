"""Sizes no machine can hold: a type whose byte size overflows an int64 is refused when it is
made (building, parsing, verifying); a run whose values, at the sizes its inputs bind, need more
than this machine's memory is refused with one SizeError before anything is allocated.

The runs are made in a child process with a timeout and a cap on its address space, so that a
run that would hang or allocate without the check fails the test instead of the test session."""
from __future__ import annotations

import pytest

from nncompile.ir import BATCH, Builder, ParseError, ShapeError, SizeError, VerifyError, f32, parse, verify

def test_a_static_type_beyond_int64_bytes_is_refused_when_built():
    b = Builder()
    x = b.input("x", f32[BATCH, 1])
    with pytest.raises(SizeError, match=r"op 'broadcast': type f32\[\?,4611686018427387904\] has "
                                        r"4611686018427387904 elements of 4 bytes \(its static "
                                        r"dimensions alone\), more bytes than an int64 counts"):
        b.broadcast(x, shape=[BATCH, 2**62])
    with pytest.raises(SizeError, match=r"op 'pad': type f32\[2305843009213693952\]"):
        b.pad(b.input("y", f32[8]), pads=[0, 2**61 - 8])
    with pytest.raises(SizeError, match="dimension 9223372036854775808 does not fit an int64"):
        f32[2**63, 0]
    assert issubclass(SizeError, ShapeError) and issubclass(SizeError, MemoryError)
    assert f32[2**61 - 1].shape == (2**61 - 1,)   # the largest f32 vector an int64 counts in bytes


def test_parsing_refuses_the_type_at_its_line_and_verifying_a_graph_built_around_it_too():
    text = """func @main(%x: f32[?,1]) -> (y: f32[?]) {
  %0 = broadcast(%x) {shape=[?, 4611686018427387904]} : f32[?,4611686018427387904]
  %1 = reduce_sum(%0) {axes=[1]} : f32[?]
  return %1
}"""
    with pytest.raises(ParseError, match="line 2, column .*: type f32.* more bytes than an int64 counts"):
        parse(text)
    g = parse(text.replace("4611686018427387904", "4"))
    g.nodes[0].attrs["shape"] = (BATCH, 2**62)
    with pytest.raises(VerifyError, match="more bytes than an int64 counts"):
        verify(g)
