"""emit_gemm compiled and run against numpy: shapes around the tiles and blocks, transposes,
strided operands, K = 0, every epilogue form, the small-M, blocked, threaded and integer paths."""
import ctypes
import functools
import mmap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from llvmlite import ir

from nncompile.codegen import gemm, gemm_pack, gemm_rows, library, parallel, target
from nncompile.codegen.loops import for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError

P, I = ctypes.c_void_p, ctypes.c_int64
EDGES = [1, 3, 4, 5, 11, 12, 13, 17, 31, 32, 33, 63, 65, 239, 240, 241, 255, 256, 257]


def _relu(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    zero = ir.Constant(x.type, None)
    return b.select(b.fcmp_ordered(">", x, zero), x, zero)


# name -> (epilogue, numpy of (acc, operands), operand makers from (M, N, rng))
EPILOGUES = {
    "none": (None, lambda acc, ops: acc, []),
    "bias_relu": (gemm.Epilogue(((0, 1),), lambda b, acc, ops: _relu(b, b.fadd(acc, ops[0]))),
                  lambda acc, ops: np.maximum(acc + ops[0], 0), [lambda m, n, r: r.standard_normal(n)]),
    "residual": (gemm.Epilogue(((-1, 1),), lambda b, acc, ops: b.fadd(acc, ops[0])),
                 lambda acc, ops: acc + ops[0], [lambda m, n, r: r.standard_normal((m, n))]),
    "row_scale_and_scalar": (gemm.Epilogue(((1, 0), (0, 0)),
                                           lambda b, acc, ops: b.fadd(b.fmul(acc, ops[0]), ops[1])),
                             lambda acc, ops: acc * ops[0][:, None] + ops[1],
                             [lambda m, n, r: r.standard_normal(m), lambda m, n, r: r.standard_normal(1)]),
}


def _compiled(dtype: DType, transpose_a: bool, transpose_b: bool, epilogue: str, n_cols: int = 0,
              prepacked: bool = False):
    """The compiled GEMM; a residual epilogue's row stride is the residual's width `n_cols`
    (row stride -1 in EPILOGUES is that placeholder), and a transposed residual is stored (N, M).
    `prepacked`: B packed by `emit_pack_b` first, then the GEMM reading it packed. Only a
    residual's row stride is compiled in: the other epilogues share one kernel for every N. The
    host's blocking is part of the key: a test may change it."""
    return _compile(dtype, transpose_a, transpose_b, epilogue, n_cols if epilogue == "residual" else 0, prepacked,
                    gemm.tiling(dtype))


@functools.cache
def _compile(dtype: DType, transpose_a: bool, transpose_b: bool, epilogue: str, n_cols: int, prepacked: bool,
             tiling: gemm.Tiling):
    epi = EPILOGUES[epilogue][0]
    if epi is not None and epi.operands[0][0] == -1:
        epi = gemm.Epilogue(((n_cols, 1),), epi.apply)
    module = target.new_module("gemm_test")
    fn = gemm.emit_gemm(module, "gemm", dtype, transpose_a=transpose_a, transpose_b=transpose_b, epilogue=epi,
                        prepacked=prepacked)
    if prepacked:
        _emit_packing_caller(module, fn, dtype, transpose_b)
    jit = target.JitModule(object_code=library.compile_module(module))
    n_ops = len(epi.operands) if epi else 0
    return jit, ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, *[P] * n_ops)(
        jit.address("packed_gemm" if prepacked else "gemm"))


def _emit_packing_caller(module: ir.Module, gemm_fn: ir.Function, dtype: DType, transpose_b: bool) -> None:
    """`packed_gemm`: the GEMM's own arguments; packs B, calls the GEMM on the packed B, frees it."""
    fn = gemm.new_function(module, "packed_gemm", [a.type for a in gemm_fn.args[:-1]], internal=False)
    m, n, k, a, lda, b_ptr, ldb, *rest = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    packed = b.call(gemm_pack.emit_pack_b(module, dtype, transpose_b=transpose_b), [n, k, b_ptr, ldb])
    b.call(gemm_fn, [*fn.args, packed])
    b.call(gemm.libc(module)[1], [b.bitcast(packed, ir.IntType(8).as_pointer())])
    b.ret_void()


def _strided(rng, rows: int, cols: int, pad: int, dtype) -> np.ndarray:
    """A (rows, cols) view into a wider array, so its row stride is cols + pad."""
    return rng.standard_normal((rows, cols + pad)).astype(dtype)[:, :cols]


def run_gemm(dtype: DType, m: int, n: int, k: int, transpose_a=False, transpose_b=False, epilogue="none",
             pad=(0, 0, 0), seed=0, prepacked=False):
    """Compile and run one GEMM on random strided operands; returns (result, float64 numpy result)."""
    rng = np.random.default_rng(seed)
    np_type = dtype.numpy
    a = _strided(rng, *((k, m) if transpose_a else (m, k)), pad[0], np_type)
    b = _strided(rng, *((n, k) if transpose_b else (k, n)), pad[1], np_type)
    c_full = np.full((m, n + pad[2]), np.nan, np_type)
    _, numpy_rule, makers = EPILOGUES[epilogue]
    operands = [np.ascontiguousarray(make(m, n, rng).astype(np_type)) for make in makers]
    jit, fn = _compiled(dtype, transpose_a, transpose_b, epilogue, n, prepacked)
    item = a.itemsize
    fn(m, n, k, a.ctypes.data, a.strides[0] // item, b.ctypes.data, b.strides[0] // item,
       c_full.ctypes.data, c_full.strides[0] // item, *[o.ctypes.data for o in operands])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    acc = (a64.T if transpose_a else a64) @ (b64.T if transpose_b else b64)
    want = numpy_rule(acc, [o.astype(np.float64) for o in operands])
    assert np.isnan(c_full[:, n:]).all(), "wrote past the end of C's rows"
    return c_full[:, :n], want


def _check(got: np.ndarray, want: np.ndarray, dtype: DType, k: int) -> None:
    eps = 1e-6 if dtype is DType.f32 else 1e-14
    np.testing.assert_allclose(got, want, rtol=10 * eps, atol=eps * (k + 1) * 4)


@settings(max_examples=30, deadline=None)
@given(m=st.sampled_from(EDGES), n=st.sampled_from(EDGES), k=st.sampled_from(EDGES + [0, 767, 768, 769, 1600]),
       transposes=st.sampled_from([(False, False), (True, False), (False, True), (True, True)]),
       pad=st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)))
def test_f32_matches_numpy(m, n, k, transposes, pad):
    got, want = run_gemm(DType.f32, m, n, k, *transposes, pad=pad)
    _check(got, want, DType.f32, k)


@settings(max_examples=12, deadline=None)
@given(m=st.sampled_from(EDGES), n=st.sampled_from(EDGES), k=st.sampled_from(EDGES + [0, 800]),
       transposes=st.sampled_from([(False, False), (True, False), (False, True), (True, True)]))
def test_f64_matches_numpy(m, n, k, transposes):
    got, want = run_gemm(DType.f64, m, n, k, *transposes, pad=(1, 2, 3))
    _check(got, want, DType.f64, k)


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("m,n,k", [(1, 196, 128), (3, 17, 5), (13, 33, 257), (241, 65, 300), (30, 40, 1700),
                                   (5, 70, 0)])
def test_epilogues(epilogue, m, n, k):
    got, want = run_gemm(DType.f32, m, n, k, epilogue=epilogue)
    _check(got, want, DType.f32, k)


def test_k_zero_gives_epilogue_of_zero():
    got, want = run_gemm(DType.f32, 30, 40, 0, epilogue="bias_relu")
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert (got >= 0).all() and (got > 0).any()


@pytest.mark.parametrize("m,n,k", [(1, 128, 784), (2, 10, 128), (4, 257, 33), (3, 1, 1)])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_small_m_path(m, n, k, transpose_a):
    got, want = run_gemm(DType.f32, m, n, k, transpose_a=transpose_a, pad=(3, 1, 2))
    _check(got, want, DType.f32, k)


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("dtype, n, k, transpose_a", [(DType.f32, 257, 300, False), (DType.f32, 512, 128, True),
                                                     (DType.f32, 40, 1700, False), (DType.f64, 200, 170, True)])
def test_one_row_times_a_large_b_is_split_between_threads(epilogue, dtype, n, k, transpose_a):
    """B of at least ROW_SPLIT_BYTES: the columns are shared by the threads (ragged shares)."""
    assert n * k * dtype.itemsize >= gemm_rows.ROW_SPLIT_BYTES
    got, want = run_gemm(dtype, 1, n, k, transpose_a=transpose_a, epilogue=epilogue, pad=(2, 3, 1))
    _check(got, want, dtype, k)


@pytest.mark.parametrize("m,n,k,transpose_b", [(1, 512, 128, False), (1, 257, 1700, True), (2, 40, 769, False),
                                               (3, 33, 5, True), (4, 300, 129, False), (1, 7, 3, False),
                                               (64, 512, 128, False), (29, 100, 1600, True)])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_b_packed_once_is_read_packed(m, n, k, transpose_b, transpose_a):
    """The prepacked GEMM (a loop's weights packed before it): the few-row paths read B's
    panels (ragged last panel, several K blocks, one row split between the threads), the
    blocked path takes the packed B as its own."""
    got, want = run_gemm(DType.f32, m, n, k, transpose_a, transpose_b, "bias_relu", pad=(1, 2, 3), prepacked=True)
    _check(got, want, DType.f32, k)


@pytest.mark.parametrize("m,n,k", [(600, 300, 900), (5, 1000, 400), (40, 900, 64)])
def test_threaded_sizes_split_by_rows_or_columns(m, n, k):
    got, want = run_gemm(DType.f32, m, n, k, epilogue="bias_relu")
    _check(got, want, DType.f32, k)


def test_strided_epilogue_operand_is_gathered():
    """An operand read with column stride M (a transposed (N, M) array) goes through per-lane loads."""
    m, n, k = 37, 45, 20
    module = target.new_module("gather")
    epi = gemm.Epilogue(((1, m),), lambda b, acc, ops: b.fsub(acc, ops[0]))
    gemm.emit_gemm(module, "g", DType.f32, epilogue=epi)
    jit = target.JitModule(object_code=library.compile_module(module))
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, P)(jit.address("g"))
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (k, n)))
    residual_t = rng.standard_normal((n, m)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    fn(m, n, k, a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, residual_t.ctypes.data)
    _check(c, a.astype(np.float64) @ b - residual_t.T, DType.f32, k)


@pytest.mark.parametrize("dtype", [DType.i32, DType.i64, DType.i8])
@pytest.mark.parametrize("transposes", [(False, False), (True, True)])
def test_integer_dtypes_are_exact(dtype, transposes):
    m, n, k = 7, 19, 23
    rng = np.random.default_rng(4)
    module = target.new_module("ints")
    epi = gemm.Epilogue(((0, 1),), lambda b, acc, ops: b.add(acc, ops[0]))
    gemm.emit_gemm(module, "g", dtype, transpose_a=transposes[0], transpose_b=transposes[1], epilogue=epi)
    jit = target.JitModule(module)
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, P)(jit.address("g"))
    a = rng.integers(-100, 100, (k, m) if transposes[0] else (m, k)).astype(dtype.numpy)
    b = rng.integers(-100, 100, (n, k) if transposes[1] else (k, n)).astype(dtype.numpy)
    bias = rng.integers(-100, 100, n).astype(dtype.numpy)
    c = np.zeros((m, n), dtype.numpy)
    fn(m, n, k, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], c.ctypes.data, n, bias.ctypes.data)
    want = (a.T if transposes[0] else a) @ (b.T if transposes[1] else b) + bias   # wraps like numpy
    np.testing.assert_array_equal(c, want)


@pytest.mark.parametrize("dtype", [DType.bool, DType.f16])
def test_unsupported_dtype_is_named(dtype):
    with pytest.raises(IRError, match=f"emit_gemm 'g': dtype {dtype}"):
        gemm.emit_gemm(target.new_module("bad"), "g", dtype)


@pytest.mark.parametrize("n", [1, 3, 5, 8, 9, 16, 17])
@pytest.mark.parametrize("m,k", [(1, 3), (5, 17), (17, 257), (257, 16), (9, 33)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_skinny_n_path(m, k, n, transpose_b):
    """N <= SKINNY_N with a row-major A (vectorized over K, lanes summed), around its thresholds."""
    got, want = run_gemm(DType.f32, m, n, k, transpose_b=transpose_b, pad=(2, 1, 3), epilogue="bias_relu")
    _check(got, want, DType.f32, k)


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
def test_skinny_n_epilogues_and_f64(epilogue, dtype):
    for m, n, k in [(257, 10, 2304), (31, 3, 0), (6, 7, 9)]:
        got, want = run_gemm(dtype, m, n, k, epilogue=epilogue, pad=(1, 0, 2))
        _check(got, want, dtype, k)


@pytest.mark.parametrize("m,n,k", [(257, 128, 784), (17, 33, 3), (784, 17, 256), (13, 128, 1537)])
@pytest.mark.parametrize("transposes", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
def test_unpacked_a_and_even_k_blocks(m, n, k, transposes, dtype):
    """A small enough to be read in place (DIRECT_A_BYTES), with K split into even blocks."""
    got, want = run_gemm(dtype, m, n, k, *transposes, epilogue="bias_relu", pad=(3, 2, 1))
    _check(got, want, dtype, k)


def test_large_a_is_still_packed():
    m, n, k = 600, 40, 600          # A is 1.4 MB > DIRECT_A_BYTES: the packed path
    assert m * k * 4 > gemm.DIRECT_A_BYTES
    for transposes in [(False, False), (True, False)]:
        got, want = run_gemm(DType.f32, m, n, k, *transposes, epilogue="bias_relu")
        _check(got, want, DType.f32, k)


@pytest.mark.parametrize("m,n,k", [(128, 512, 4100), (241, 100, 2000), (13, 70, 21000)])
@pytest.mark.parametrize("transposes", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype,epilogue", [(DType.f32, "bias_relu"), (DType.f64, "residual")])
def test_deep_product_of_few_rows_packs_b_in_each_task(m, n, k, transposes, dtype, epilogue):
    """A packed, C's rows one block (at most the host's MC) that no thread shares when the column
    panels split evenly (a weight gradient over many rows): each task packs the panels of B it
    reads, K block by K block, ragged columns padded with zeros."""
    t = gemm.tiling(dtype)
    m = min(m, t.mc)
    assert m * k * t.itemsize > gemm.DIRECT_A_BYTES and k > t.kc
    got, want = run_gemm(dtype, m, n, k, *transposes, epilogue=epilogue, pad=(1, 3, 2))
    _check(got, want, dtype, k)


@pytest.mark.parametrize("m,n,extra_k", [(128, 512, 123), (37, 100, 6001), (1000, 24, 2000)])
@pytest.mark.parametrize("transposes", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
def test_deep_product_with_small_c_shares_k_between_threads(m, n, extra_k, transposes, dtype):
    """No epilogue, A one block (at most the host's MC rows), C no bigger than an A block, K of two
    KC blocks per thread and more (a weight gradient over many rows): each thread sums its part of
    K, into C or into a block of partial sums the driver adds to C; ragged rows, columns and
    parts of K."""
    threads, t = parallel.num_threads(), gemm.tiling(dtype)
    if threads == 1:
        pytest.skip("one thread: nothing to share")
    m = min(m, t.mc)
    n = min(n, t.mc * t.kc // m)
    k = max(2 * threads * t.kc, gemm.DIRECT_A_BYTES // (m * t.itemsize) + 1) + extra_k
    if k * n * t.itemsize > 64 << 20:
        pytest.skip("a host with this many threads needs a B of more than 64 MB")
    got, want = run_gemm(dtype, m, n, k, *transposes, pad=(2, 1, 3))
    _check(got, want, dtype, k)


@pytest.mark.parametrize("n", [1, 3, 5, 8, 9, 12, 13, 16, 17])
@pytest.mark.parametrize("m,k", [(5, 3), (17, 257), (257, 16), (33, 1), (1000, 130)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_skinny_n_transposed_a_path(m, k, n, transpose_b):
    """N <= SKINNY_N with A stored K x M (vectorized over M, scattered into C), around its
    thresholds: column widths, row blocks, the thread split."""
    got, want = run_gemm(DType.f32, m, n, k, transpose_a=True, transpose_b=transpose_b, pad=(2, 1, 3),
                         epilogue="bias_relu")
    _check(got, want, DType.f32, k)


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
def test_skinny_n_transposed_a_epilogues_and_f64(epilogue, dtype):
    for m, n, k in [(257, 10, 256), (31, 3, 0), (40, 16, 1)]:
        got, want = run_gemm(dtype, m, n, k, transpose_a=True, epilogue=epilogue, pad=(1, 0, 2))
        _check(got, want, dtype, k)


@pytest.mark.parametrize("rows", [1, 3])
def test_known_few_rows_emit_only_their_path(rows):
    """M known when compiling and at most SMALL_M (a batch-1 model, a recurrent step's block):
    no blocked GEMM, no few-column kernels; the product as numpy's, N split between the
    threads for one row of a large B."""
    module = target.new_module("gemm_rows_known")
    gemm.emit_gemm(module, "g", DType.f32, rows=rows)
    names = [g.name for g in module.global_values]
    assert not any(part in name for name in names for part in (".tiles", ".driver", ".skinny")), names
    jit = target.JitModule(object_code=library.compile_module(module))
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I)(jit.address("g"))
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((rows, 200)).astype(np.float32), rng.standard_normal((200, 600)).astype(np.float32)
    c = np.empty((rows, 600), np.float32)
    fn(rows, 600, 200, a.ctypes.data, 200, b.ctypes.data, 600, c.ctypes.data, 600)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m,n,k", [(130, 205, 300), (128, 97, 2500), (300, 130, 50), (320, 250, 1600)])
@pytest.mark.parametrize("transposes", [(False, False), (True, False), (False, True)])
def test_rows_of_tiles_pass_over_column_chunks(monkeypatch, m, n, k, transposes):
    """Chunks of NC columns narrower than C (three panels here, on any host): each row of tiles
    passes over a chunk before the next chunk, the last chunk and its last panel ragged; B packed
    shared (A read in place; A packed, several K blocks, threads' column shares ending inside a
    chunk) and NC_own columns at a time in the task (few rows, deep K)."""
    nr = gemm.tiling(DType.f32).nr
    monkeypatch.setattr(gemm.blocking, "columns", lambda kc, itemsize, nr_: 3 * nr_)
    assert gemm.tiling(DType.f32).nc == 3 * nr < n
    got, want = run_gemm(DType.f32, m, n, k, *transposes, epilogue="bias_relu", pad=(1, 2, 3))
    _check(got, want, DType.f32, k)


def _before_an_unreadable_page(values: np.ndarray) -> tuple[np.ndarray, mmap.mmap]:
    """A copy of `values` whose last byte is the last before a page that faults when read (keep
    the map alive while the array is used)."""
    page = mmap.PAGESIZE
    total = -(-values.nbytes // page) * page + page
    memory = mmap.mmap(-1, total)
    start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(start + total - page, page, 0) == 0     # PROT_NONE
    copy = np.frombuffer(memory, values.dtype, values.size, total - page - values.nbytes).reshape(values.shape)
    copy[...] = values
    return copy, memory


@pytest.mark.parametrize("m", [33, 34, 35, 36, 29])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_a_read_in_place_is_never_read_past_its_last_row(m, transpose_a):
    """A small A is read in place (`gemm_driver._emit_tiles`): a last tile of fewer rows than
    the register tile (9 to 12 rows: the full microkernel, 5: the short one) must re-read A's
    last row, not the memory after it, which here is an unreadable page."""
    n, k = 40, 20
    rng = np.random.default_rng(m)
    a, memory = _before_an_unreadable_page(rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32))
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    _, fn = _compiled(DType.f32, transpose_a, False, "none")
    fn(m, n, k, a.ctypes.data, a.shape[1], b.ctypes.data, n, c.ctypes.data, n)
    _check(c, (a.T if transpose_a else a).astype(np.float64) @ b, DType.f32, k)
    del a
    memory.close()


def _at_alignment(values: np.ndarray, offset_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `values` starting `offset_bytes` past a 64-byte boundary (and its buffer)."""
    buffer = np.zeros(values.nbytes + 128, np.uint8)
    start = (-buffer.ctypes.data) % 64 + offset_bytes
    copy = buffer[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
    copy[...] = values
    return copy, buffer


@pytest.mark.parametrize("m,k,transpose_a", [(40, 100, False), (37, 1700, False), (24, 2000, True),
                                              (300, 64, True), (13, 5, False)])
@pytest.mark.parametrize("offset,row_pad", [(0, 0), (16, 0), (0, 16)])
@pytest.mark.parametrize("epilogue", ["none", "bias_relu"])
def test_b_of_one_panel_is_read_as_its_own_packing(m, k, transpose_a, offset, row_pad, epilogue):
    """A row-major B of exactly NR columns, rows NR apart, on 64 bytes is read in place
    (`gemm_driver._packed_already`); off 64 bytes, or with rows further apart (still on 64
    bytes), it is packed as before: all as numpy."""
    n = gemm.tiling(DType.f32).nr
    rng = np.random.default_rng(k)
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    rows, keep = _at_alignment(rng.standard_normal((k, n + row_pad)).astype(np.float32), offset)
    b = rows[:, :n]
    _, numpy_rule, makers = EPILOGUES[epilogue]
    operands = [np.ascontiguousarray(make(m, n, rng).astype(np.float32)) for make in makers]
    c = np.full((m, n), np.nan, np.float32)
    _, fn = _compiled(DType.f32, transpose_a, False, epilogue, n)
    fn(m, n, k, a.ctypes.data, a.shape[1], b.ctypes.data, n + row_pad, c.ctypes.data, n,
       *[o.ctypes.data for o in operands])
    want = numpy_rule((a.T if transpose_a else a).astype(np.float64) @ b, [o.astype(np.float64) for o in operands])
    _check(c, want, DType.f32, k)


@functools.cache
def _loop_gemm(dtype: DType, transpose_a: bool, transpose_b: bool, epilogue: str, n: int, columns: int | None):
    epi = EPILOGUES[epilogue][0]
    if epi is not None and epi.operands[0][0] == -1:
        epi = gemm.Epilogue(((n, 1),), epi.apply)
    module = target.new_module("loop_gemm_test")
    gemm.emit_loop_gemm(module, "g", dtype, transpose_a=transpose_a, transpose_b=transpose_b, epilogue=epi,
                        columns=columns)
    jit = target.JitModule(module)
    return jit, ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, *[P] * (len(epi.operands) if epi else 0))(
        jit.address("g"))


@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
@pytest.mark.parametrize("transposes", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("n,static", [(1, True), (3, True), (8, True), (13, True), (16, False), (17, False),
                                      (33, True)])
@pytest.mark.parametrize("epilogue", ["none", "bias_relu", "residual"])
def test_loop_gemm_sums_each_element_in_order(dtype, transposes, n, static, epilogue):
    """The tiny products' loop nest, a vector of C's columns at a time (fewer lanes when N is
    known and small, scalars for one column): bitwise a sum over k in order, as a numpy loop
    in the dtype adds it, with strided operands and the epilogue; nothing past C's rows."""
    rng = np.random.default_rng(n)
    for m, k in [(1, 1), (5, 8), (4, 0), (3, 13)]:
        a = _strided(rng, *((k, m) if transposes[0] else (m, k)), 2, dtype.numpy)
        b = _strided(rng, *((n, k) if transposes[1] else (k, n)), 3, dtype.numpy)
        c = np.full((m, n + 5), np.nan, dtype.numpy)
        _, numpy_rule, makers = EPILOGUES[epilogue]
        operands = [np.ascontiguousarray(make(m, n, rng).astype(dtype.numpy)) for make in makers]
        _, fn = _loop_gemm(dtype, *transposes, epilogue, n, n if static else None)
        item = a.itemsize
        fn(m, n, k, a.ctypes.data, a.strides[0] // item, b.ctypes.data, b.strides[0] // item,
           c.ctypes.data, c.strides[0] // item, *[o.ctypes.data for o in operands])
        a_rows, b_rows = (a.T if transposes[0] else a), (b.T if transposes[1] else b)
        acc = np.zeros((m, n), dtype.numpy)
        for kk in range(k):
            acc = acc + a_rows[:, kk:kk + 1] * b_rows[kk:kk + 1, :]
        np.testing.assert_array_equal(c[:, :n], numpy_rule(acc, operands))
        assert np.isnan(c[:, n:]).all(), "wrote past the end of C's rows"


def _emit_add_1000_tile(module: ir.Module, dtype: DType) -> None:
    """`tile(ctx, c, ldc, row, col, rows, cols)`: adds 1000 to each element of the tile it is
    given and counts the visit in ctx, an int64 array of C's shape and row stride."""
    ty = gemm.scalar_type(dtype)
    fn = ir.Function(module, gemm.tile_type(ty), "tile")
    ctx, c, ldc, row, col, rows, cols = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    counts = b.bitcast(ctx, ir.IntType(64).as_pointer())
    thousand = ir.Constant(ty, 1000) if dtype.is_int else ir.Constant(ty, 1000.0)
    with for_range(b, rows, name="r") as r, for_range(b, cols, name="c") as col_in_tile:
        at = gemm.at(b, c, b.add(b.mul(r, ldc), col_in_tile))
        b.store(gemm.add(b, b.load(at), thousand), at)
        seen = gemm.at(b, counts, b.add(b.mul(b.add(row, r), ldc), b.add(col, col_in_tile)))
        b.store(b.add(b.load(seen), ir.Constant(ir.IntType(64), 1)), seen)
    b.ret_void()


@pytest.mark.parametrize("dtype,loop", [(DType.i32, False), (DType.i8, False), (DType.f32, True),
                                        (DType.f64, True)])
@pytest.mark.parametrize("n", [1, 7, 40, 1000])
def test_loop_nest_gives_a_tile_function_each_element_once(dtype, loop, n):
    """A tile-function epilogue after the loop nest (the integer GEMM, the tiny products) hears of
    each element of C once, after its sum: C = A @ B + 1000 exactly."""
    module = target.new_module("tile_once")
    emit = gemm.emit_loop_gemm if loop else gemm.emit_gemm
    emit(module, "g", dtype, epilogue=gemm.TILE_CALL)
    _emit_add_1000_tile(module, dtype)
    jit = target.JitModule(module)
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, P, P)(jit.address("g"))
    rng = np.random.default_rng(n)
    m, k = 3, 4
    a = rng.integers(-3, 4, (m, k)).astype(dtype.numpy)
    b = rng.integers(-3, 4, (k, n)).astype(dtype.numpy)
    c = np.zeros((m, n + 2), dtype.numpy)
    visits = np.zeros((m, n + 2), np.int64)
    fn(m, n, k, a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n + 2, jit.address("tile"), visits.ctypes.data)
    want = (a.astype(np.int64) @ b.astype(np.int64) + 1000).astype(dtype.numpy)   # i8 wraps as numpy does
    np.testing.assert_array_equal(c[:, :n], want)
    assert not c[:, n:].any()
    np.testing.assert_array_equal(visits[:, :n], 1)
