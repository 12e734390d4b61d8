"""Sizes no machine can hold: a type whose byte size overflows an int64 is refused when it is
made (building, parsing, verifying); a run whose values, at the sizes its inputs bind, need more
than this machine's memory is refused with one SizeError before anything is allocated.

The runs are made in a child process with a timeout and a cap on its address space, so that a
run that would hang or allocate without the check fails the test instead of the test session."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, ParseError, ShapeError, SizeError, VerifyError, f32, parse, verify
from nncompile.passes.memory import check_fits, plan_memory

MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
# The child may map this much: enough for LLVM and the thread pool, far below any refused size.
CHILD_ADDRESS_SPACE = 8 << 30


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


def _pads(columns: int, outputs: int = 1):
    """x: f32[?,1] padded to `columns` columns, `outputs` times (each a graph output)."""
    b = Builder()
    x = b.input("x", f32[BATCH, 1])
    ys = [b.pad(x, pads=[0, 0, 0, columns - 1], value=float(i)) for i in range(outputs)]
    return b.finish(ys, [f"y{i}" for i in range(outputs)])


def test_check_fits_counts_each_value_and_everything_a_run_holds_at_once():
    plan = plan_memory(_pads(250, outputs=2), {BATCH: 2})   # an input of 8 bytes, two outputs of 2000
    check_fits(plan, memory=4008)
    with pytest.raises(SizeError, match=r"graph 'main' at sizes \{'\?': 2\}: %0 \(node 'pad', "
                                        r"f32\[\?,250\]\) needs .* \(2000 bytes\), more than this "
                                        r"machine's memory .*\(1999 bytes\)"):
        check_fits(plan, memory=1999)
    with pytest.raises(SizeError, match=r"the inputs, parameters, arena and outputs need .*\(4008 bytes\) "
                                        r"together, .*; the largest is %0 \(node 'pad', f32\[\?,250\]\)"):
        check_fits(plan, memory=4007)


CHILD = """
import sys, numpy as np, resource, nncompile
from nncompile.ir import SizeError, parse
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
try:
    exec(sys.argv[1])
except SizeError as e:
    print(e)
else:
    print("ran")
"""

BROADCAST_SUM = """func @main(%x: f32[?,1]) -> (y: f32[?]) {
  %0 = broadcast(%x) {shape=[?, 4503599627370496]} : f32[?,4503599627370496]
  %1 = reduce_sum(%0) {axes=[1]} : f32[?]
  return %1
}"""
ONE_ROW = "np.ones((1, 1), np.float32)"


@pytest.mark.parametrize("code, fragment", [
    # 2**52 columns pass the static check, but at 2000 rows the loop would never end.
    (f"nncompile.compile(parse({BROADCAST_SUM!r}))(np.ones((2000, 1), np.float32))",
     "%0 (node 'broadcast', f32[?,4503599627370496]) in the body of %0 needs"),
    (f"nncompile.compile(parse({str(_pads(MEMORY // 2))!r}))({ONE_ROW})",
     f"(node 'pad', f32[?,{MEMORY // 2}]) needs"),
    (f"nncompile.compile(parse({str(_pads(MEMORY * 6 // 40, outputs=2))!r}))({ONE_ROW})",
     "the inputs, parameters, arena and outputs need"),
    ("from nncompile import keras\n"
     "m = keras.Sequential([keras.Input(shape=(1,)), keras.layers.RepeatVector(10**12), "
     "keras.layers.GlobalAveragePooling1D()])\n"
     f"m.predict({ONE_ROW}, verbose=0)",
     "(node 'broadcast' of 'repeat_vector', f32[?,1000000000000,1]) in the body of %1 needs"),
], ids=["a broadcast feeding a reduction", "a pad output twice the memory",
        "two outputs of 0.6 times the memory", "RepeatVector(10**12) averaged"])
def test_a_run_beyond_the_machines_memory_is_refused_before_allocating(code, fragment):
    try:
        child = subprocess.run([sys.executable, "-c", CHILD, code, str(CHILD_ADDRESS_SPACE)],
                               capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the child ran for more than 60 s: the size was not refused")
    assert child.returncode == 0, child.stderr[-2000:]
    message = child.stdout.strip()
    assert fragment in message and "more than this machine's memory" in message, message
