"""gather-in-scan: a loop over an Embedding's gathered rows gathers each step's rows itself
(`passes/gather_in_scan.py`), on rows of threads and in a team of threads that splits the units
(`codegen/scan_team.py`). Expected values are numpy loops written from Keras's equations, or the
reference interpreter on the graph before the pass."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.codegen import parallel
from nncompile.codegen.scan_team import unit_split
from nncompile.ir import BATCH, Builder, TensorType, f32, i32
from nncompile.ir.ops.scan import independent_rows
from nncompile.passes import PassManager
from nncompile.passes.pipelines import pipeline
from nncompile.runtime.reference import run
from tests.keras import recurrent_reference as ref
from tests.runtime.cpu_harness import lstm_body
from tests.runtime.test_scan_team import CELLS

VOCAB, DIM, STEPS = 3000, 64, 9   # CELLS: the team's cells (LSTM, a ragged LSTM, GRU, SimpleRNN)


def _scan(graph):
    return next(n for n in graph.nodes if n.op == "scan")


def _gathers_in_team(exe) -> bool:
    """Whether the loop runs as a team whose blocks read the table's rows themselves."""
    node = _scan(exe.graph)
    split = unit_split(node, independent_rows(node))
    return split is not None and bool(split.gathers) and ".team" in exe._module_text


def test_the_loop_reads_tokens_and_gathers_its_rows_in_the_body():
    model = keras.Sequential([keras.Input((STEPS,), dtype="int32"), keras.layers.Embedding(VOCAB, DIM),
                              keras.layers.LSTM(128)])
    passes = pipeline("inference")
    graph = PassManager([*passes[:passes.index("gather-in-scan") + 1], "dce"], verify=True).run(nncompile.trace(model))
    node = _scan(graph)
    assert "gather" not in [n.op for n in graph.nodes]
    body = node.attrs["body"]
    assert body.nodes[0].op == "gather" and body.nodes[0].inputs[0] is body.inputs[-1]
    assert node.inputs[2].type == TensorType(i32, (STEPS, BATCH)) and node.inputs[-1].type.shape == (VOCAB, 512)
    assert node.attrs["cell"] == ""   # its operands are no longer an LSTM's


def _looped_rows(returned_too: bool = False):
    b = Builder()
    tokens = b.input("tokens", i32[STEPS, BATCH])
    table = b.param("table", np.ones((40, 8), np.float32))
    rows = b.op("gather", table, tokens, allow_negative=False)
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, 8]), body.input("x", f32[BATCH, 8])
    new = body.tanh(body.add(h, x))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, 8])
    final, = b.scan(zero, rows, body=body.finish([new]), num_carry=1, num_scanned=1)
    return b.finish([final, rows] if returned_too else [final], ["h", "rows"][:1 + returned_too])


def test_rows_read_elsewhere_too_are_left_where_they_are():
    graph = PassManager(["gather-in-scan", "dce"], verify=True).run(_looped_rows(returned_too=True))
    assert [n.op for n in graph.nodes].count("gather") == 1 and _scan(graph).inputs[1].type.dtype is f32
    moved = PassManager(["gather-in-scan", "dce"], verify=True).run(_looped_rows())
    assert "gather" not in [n.op for n in moved.nodes]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch", [1, 2, 3, 64])
def test_embedding_then_recurrent_layer_predicts_as_numpy(cell, batch):
    layer, step, states = CELLS[cell]
    model = keras.Sequential([keras.Input((STEPS,), dtype="int32"), keras.layers.Embedding(VOCAB, DIM), layer()])
    rng = np.random.default_rng(batch)
    table = (rng.standard_normal((VOCAB, DIM)) * 0.3).astype(np.float32)
    model.layers[0].set_weights([table])
    weights = ref.randomize(model.layers[1], rng, scale=0.2)
    step = step(weights)
    exe = nncompile.compile(nncompile.trace(model))
    assert "gather" not in [n.op for n in exe.graph.nodes]
    if cell.startswith("lstm") and parallel.num_threads() > 1:
        assert _gathers_in_team(exe)
    tokens = rng.integers(0, VOCAB, (batch, STEPS)).astype(np.int32)
    units = model.layers[1].get_weights()[1].shape[0]
    want, _, _ = ref.run(step, table[tokens].astype(np.float64), ref.zeros_like_states(batch, [units] * states),
                         backwards="backwards" in cell)
    ref.close(exe(tokens), want)
    for bad in (VOCAB, -1):
        tokens[-1, STEPS // 2] = bad
        with pytest.raises(ValueError, match="gather.*out of range"):
            exe(tokens)


def _lstm_over_table_rows(units: int = 128, vocab: int = 50):
    """An LSTM step scanned over rows of a table picked by tokens that may count from the end."""
    rng = np.random.default_rng(0)
    b = Builder()
    tokens = b.input("tokens", i32[STEPS, BATCH])
    table = b.param("table", rng.standard_normal((vocab, 4 * units)).astype(np.float32))
    recurrent = b.param("recurrent", rng.standard_normal((units, 4 * units)).astype(np.float32) * 0.05)
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, units])
    rows = b.op("gather", table, tokens, allow_negative=True)
    h, c = b.scan(zero, zero, rows, recurrent, body=lstm_body(units, "h,c"), num_carry=2, num_scanned=1)
    return b.finish([h, c], ["h", "c"])


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_tokens_counting_from_the_end_pick_the_same_rows_as_the_reference(batch):
    graph = _lstm_over_table_rows()
    tokens = np.random.default_rng(batch).integers(-50, 50, (STEPS, batch)).astype(np.int32)
    want = run(graph, {"tokens": tokens})
    exe = nncompile.compile(graph)
    if parallel.num_threads() > 1 and batch <= 2:
        assert _gathers_in_team(exe)
    for got, expected in zip(exe(tokens), want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    tokens[STEPS - 1, batch - 1] = -51
    with pytest.raises(ValueError, match="gather.*out of range"):
        exe(tokens)


def test_rows_gathered_batch_major_and_scanned_along_axis_1_match_the_reference():
    """Tokens (batch, steps) gathered to (batch, steps, 8) and scanned along axis 1: each step
    gathers its column of tokens."""
    b = Builder()
    tokens = b.input("tokens", i32[BATCH, STEPS])
    table = b.param("table", np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    rows = b.op("gather", table, tokens, allow_negative=True)
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, 8]), body.input("x", f32[BATCH, 8])
    new = body.tanh(body.add(body.mul(h, body.scalar(0.5, h)), x))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, 8])
    final, seq = b.scan(zero, rows, body=body.finish([new, new]), num_carry=1, num_scanned=1, axis=1)
    graph = b.finish([final, seq], ["h", "seq"])
    moved = PassManager(["gather-in-scan", "dce"], verify=True).run(graph.copy())
    assert "gather" not in [n.op for n in moved.nodes]
    tokens_in = np.random.default_rng(1).integers(-40, 40, (5, STEPS)).astype(np.int32)
    want = run(graph, {"tokens": tokens_in})
    for got, expected in zip(nncompile.compile(graph)(tokens_in), want):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_in_use() -> int:
    """Bytes the C heap has handed out (glibc's mallinfo2: small chunks plus mmapped ones)."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc's mallinfo2 reads the heap")
@pytest.mark.parametrize("batch", [3, 64])
def test_a_token_out_of_range_midway_frees_the_loops_buffers(batch):
    """A step's gather that fails leaves the loop early: the weights it packed and the spare
    carry buffers must be freed on the way out (each call leaked about 33 KB at batch 64 and
    1 KB at batch 3)."""
    model = keras.Sequential([keras.Input((STEPS,), dtype="int32"), keras.layers.Embedding(50, DIM),
                              keras.layers.LSTM(128)])
    exe = nncompile.compile(nncompile.trace(model))
    tokens = np.random.default_rng(0).integers(0, 50, (batch, STEPS)).astype(np.int32)
    tokens[-1, STEPS - 2] = 50

    def fail() -> None:
        with pytest.raises(ValueError, match="gather.*out of range"):
            exe(tokens)

    for _ in range(5):
        fail()
    before = _heap_in_use()
    for _ in range(200):
        fail()
    assert _heap_in_use() - before < 2 ** 16
