"""The host's kernel library (`codegen/library.py`): its GEMMs, declared by a module of our own
and run with their epilogues as tile functions, against numpy on every path (few rows, few
columns, A transposed, B packed before the call, K in several blocks, K = 0); models whose code
comes from the disk cache load the library kernels it calls, in a fresh process, and a corrupt
library entry is a miss."""
import ctypes
import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import llvmlite.binding as llvm
from llvmlite import ir

import nncompile
from nncompile.codegen import gemm, gemm_pack, library, target
from nncompile.ir import BATCH, Builder, f32
from nncompile.ir.dtypes import DType
from nncompile.runtime import disk_cache
from tests.codegen.test_gemm import EPILOGUES, _check, _strided

P, I = ctypes.c_void_p, ctypes.c_int64


@functools.cache
def _caller(dtype: DType, transpose_a: bool, transpose_b: bool, epilogue: str, n_cols: int,
            prepacked: bool, rows: int | None):
    """A module of ours with `call(m, n, k, a, lda, b, ldb, c, ldc, e0, ...)`: B packed first when
    `prepacked`, then the library GEMM, its epilogue (EPILOGUES) in a tile function."""
    epi = EPILOGUES[epilogue][0]
    if epi is not None and epi.operands[0][0] == -1:
        epi = gemm.Epilogue(((n_cols, 1),), epi.apply)
    module = target.new_module("library_test")
    kernel = library.shared_gemm(module, dtype, transpose_a=transpose_a, transpose_b=transpose_b,
                                 prepacked=prepacked, rows=rows, epilogue="tile" if epi is not None else None)
    assert kernel.is_declaration and kernel.name.startswith(library.PREFIX)
    ptr = kernel.args[3].type
    n_ops = len(epi.operands) if epi else 0
    fn = gemm.new_function(module, "call", [a.type for a in kernel.args[:9]] + [ptr] * n_ops, internal=False)
    m, n, k, a, lda, b_ptr, ldb, c, ldc, *operands = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    extra = []
    if epi is not None:
        tile = library.tile_function(module, "tile", dtype, epi)
        extra = library.tile_arguments(b, dtype, tile, list(operands))
    packed = [b.call(gemm_pack.emit_pack_b(module, dtype, transpose_b=transpose_b), [n, k, b_ptr, ldb])] \
        if prepacked else []
    b.call(kernel, [m, n, k, a, lda, b_ptr, ldb, c, ldc, *extra, *packed])
    if packed:
        b.call(gemm.libc(module)[1], [b.bitcast(packed[0], ir.IntType(8).as_pointer())])
    b.ret_void()
    library.ready()
    jit = target.JitModule(module)
    return jit, ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, *[P] * n_ops)(jit.address("call"))


def _run(m, n, k, transpose_a=False, transpose_b=False, epilogue="none", dtype=DType.f32, prepacked=False,
         rows=None):
    rng = np.random.default_rng(m * 1000 + n + k)
    np_type = dtype.numpy
    a = _strided(rng, *((k, m) if transpose_a else (m, k)), 2, np_type)
    b = _strided(rng, *((n, k) if transpose_b else (k, n)), 1, np_type)
    c_full = np.full((m, n + 3), np.nan, np_type)
    _, numpy_rule, makers = EPILOGUES[epilogue]
    operands = [np.ascontiguousarray(make(m, n, rng).astype(np_type)) for make in makers]
    _, fn = _caller(dtype, transpose_a, transpose_b, epilogue, n, prepacked, rows)
    item = a.itemsize
    fn(m, n, k, a.ctypes.data, a.strides[0] // item, b.ctypes.data, b.strides[0] // item,
       c_full.ctypes.data, c_full.strides[0] // item, *[o.ctypes.data for o in operands])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = numpy_rule((a64.T if transpose_a else a64) @ (b64.T if transpose_b else b64),
                      [o.astype(np.float64) for o in operands])
    assert np.isnan(c_full[:, n:]).all(), "wrote past the end of C's rows"
    _check(c_full[:, :n], want, dtype, k)


SHAPES = [(1, 196, 128), (1, 600, 500), (3, 17, 5), (4, 70, 300), (13, 33, 257), (241, 65, 300),
          (30, 40, 1700), (5, 70, 0), (50, 7, 40), (300, 300, 64)]


@pytest.mark.parametrize("epilogue", sorted(EPILOGUES))
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_library_gemm_with_tile_epilogue_matches_numpy(epilogue, m, n, k):
    _run(m, n, k, epilogue=epilogue)


@pytest.mark.parametrize("transposes", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(1, 130, 64), (3, 17, 5), (50, 7, 40), (241, 65, 300), (30, 40, 1700)])
@pytest.mark.parametrize("epilogue", ["none", "bias_relu"])
def test_transposed_operands(transposes, m, n, k, epilogue):
    _run(m, n, k, *transposes, epilogue=epilogue)


@pytest.mark.parametrize("m,n,k", [(2, 130, 64), (97, 200, 800), (1, 64, 128)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_b_packed_before_the_call(m, n, k, transpose_b):
    _run(m, n, k, transpose_b=transpose_b, epilogue="bias_relu", prepacked=True)


@pytest.mark.parametrize("rows", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [5, 16, 64, 100, 300])
def test_static_few_rows_with_any_width(rows, n):
    """The few-rows kernels for a static M take N at run time: chunks of ever fewer vectors."""
    _run(rows, n, 37, epilogue="bias_relu", rows=rows)


def test_f64_kernels():
    for shape in [(1, 33, 20), (13, 33, 257), (50, 7, 40)]:
        _run(*shape, epilogue="row_scale_and_scalar", dtype=DType.f64)


_MODEL = textwrap.dedent("""
    import numpy as np
    from nncompile import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(7, activation="tanh")])
    x = np.random.default_rng(0).standard_normal((9, 20)).astype(np.float32)
    y = model.predict(x, verbose=0)
    w0, b0, w1, b1 = model.get_weights()
    want = np.tanh(np.maximum(x @ w0 + b0, 0) @ w1 + b1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    print("ok")
""")


def _predict_in_fresh_process(cache: pathlib.Path) -> None:
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", _MODEL], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_cached_model_loads_the_library_kernels_it_calls(tmp_path):
    _predict_in_fresh_process(tmp_path)                        # compiles the library kernels and the model
    kernels = sorted((tmp_path / disk_cache.HOST_FOLDER).glob("*.o"))
    models = sorted(tmp_path.glob("*.o"))
    assert kernels and models
    _predict_in_fresh_process(tmp_path)                        # both from the cache
    for entry in kernels:                                      # the model from the cache, the library rebuilt
        entry.unlink()
    _predict_in_fresh_process(tmp_path)
    assert sorted((tmp_path / disk_cache.HOST_FOLDER).glob("*.o")) == kernels


def test_a_corrupt_library_entry_is_a_miss(tmp_path):
    _predict_in_fresh_process(tmp_path)
    for entry in (tmp_path / disk_cache.HOST_FOLDER).glob("*.o"):
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    _predict_in_fresh_process(tmp_path)


_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh}


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("m,n,k", [(1, 130, 64), (3, 17, 5), (50, 7, 40), (241, 65, 300), (30, 40, 1700)])
def test_bias_and_activation_run_in_registers(activation, m, n, k):
    """A bias then no activation or relu is the "bias" kernel with a floor (-inf or 0); a NaN
    in A stays NaN in its row, as numpy's maximum keeps it."""
    rng = np.random.default_rng(m + n + k)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    a[m // 2, k // 2] = np.nan
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.full((m, n), 7.0, np.float32)
    module = target.new_module("library_register_test")
    kind, floor = library.bias_kernel(module, DType.f32, activation)
    kernel = library.shared_gemm(module, DType.f32, epilogue=kind)
    library.ready()
    floors = [np.array(0.0 if activation else -np.inf, np.float32)] if floor else []
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, *[P] * (1 + len(floors)))(llvm.address_of_symbol(kernel.name))
    fn(m, n, k, a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, bias.ctypes.data, *[f.ctypes.data for f in floors])
    want = a.astype(np.float64) @ b + bias
    want = _ACTIVATIONS[activation](want) if activation else want
    assert (kind == "bias") == (activation in (None, "relu"))
    assert np.isnan(c[m // 2]).all() and not np.isnan(np.delete(c, m // 2, axis=0)).any()
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * (k + 1))


@pytest.mark.parametrize("activation, kernel", [("relu", "bias"), ("identity", "bias"), ("exp", "tile")])
def test_a_dense_layer_calls_the_register_kernel_or_a_tile_function(activation, kernel):
    rng = np.random.default_rng(0)
    w, bias = rng.standard_normal((20, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    builder = Builder()
    x = builder.input("x", f32[BATCH, 20])
    y = builder.add(builder.matmul(x, builder.param("w", w)), builder.param("b", bias))
    y = y if activation == "identity" else builder.op(activation, y)
    exe = nncompile.compile(builder.finish([y], ["y"]))
    assert f'declare void @"nnc.gemm.f32.nn.{kernel}"' in exe.llvm_ir()
    data = rng.standard_normal((5, 20)).astype(np.float32)
    want = data.astype(np.float64) @ w + bias
    want = {"relu": lambda v: np.maximum(v, 0), "identity": lambda v: v, "exp": np.exp}[activation](want)
    np.testing.assert_allclose(exe(data), want, rtol=1e-5, atol=1e-5)


def test_spec_names_round_trip():
    for spec in [library.GemmSpec(DType.f32), library.GemmSpec(DType.f64, True, True, True, 3, "tile"),
                 library.GemmSpec(DType.f32, False, True, epilogue="bias_tanh"),
                 library.ConvSpec(DType.f64, "bias"), library.ConvSpec(DType.f32),
                 library.ConvSpec(DType.f32, "residual", prepacked=True, wide=True),
                 library.GemmSpec(DType.f32, epilogue="residual")]:
        assert library.GemmSpec.parse(spec.name) == spec or library.ConvSpec.parse(spec.name) == spec
    assert library.GemmSpec.parse("nnc.gemm.i32.nn") is None
    assert library.GemmSpec.parse("nnc.gemm.f32.nn.junk") is None
    assert library.GemmSpec.parse("nnc.gemm.f32.nn.bias_relu") is None     # relu is the bias kernel's floor


def test_build_loads_kernels_into_the_process_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path))
    specs = [library.GemmSpec(DType.f64, transpose_a=True, epilogue="bias"), library.ConvSpec(DType.f64, "bias_tanh")]
    fresh = [spec for spec in specs if spec not in library._loaded]    # another test may have built one
    library.build(specs)
    assert all(spec in library._loaded for spec in specs)
    assert len(list((tmp_path / disk_cache.HOST_FOLDER).glob("*.o"))) == len(fresh)
    assert all(isinstance(spec, (library.GemmSpec, library.ConvSpec)) for spec in library.common_kernels())


def _residual_model(case, rng):
    """(graph, inputs, float64 numpy result) of a product whose epilogue adds a residual or
    applies a relu without a bias, as ResNet blocks and bias-free layers do."""
    from tests.codegen.test_conv import numpy_conv
    builder = Builder()
    if case.startswith("conv"):
        channels = 64 if "64" in case else 32
        data = rng.standard_normal((3, 9, 11, channels)).astype(np.float32)
        w = rng.standard_normal((3, 3, channels, channels)).astype(np.float32) / 10
        bias = rng.standard_normal(channels).astype(np.float32)
        x = builder.input("x", f32[BATCH, 9, 11, channels])
        y = builder.op("conv2d", x, builder.param("w", w), pads=(1, 1, 1, 1))
        product = numpy_conv(data.astype(np.float64), w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        residual_value, residual = data, x
    else:
        cols = 12 if "skinny" in case else 70
        data = rng.standard_normal((37, 300)).astype(np.float32)
        residual = rng.standard_normal((37, cols)).astype(np.float32)
        w = rng.standard_normal((300, cols)).astype(np.float32) / 10
        bias = rng.standard_normal(cols).astype(np.float32)
        x = builder.input("x", f32[BATCH, 300])
        y = builder.matmul(x, builder.param("w", w))
        product = data.astype(np.float64) @ w
        residual_value, residual = residual, builder.input("r", f32[BATCH, cols])
    want = product
    for step in case.split("_")[1:]:
        if step == "bias":
            y, want = builder.add(y, builder.param("b", bias)), want + bias
        elif step == "residual":
            y, want = builder.add(y, residual), want + residual_value
        elif step == "relu":
            y, want = builder.op("relu", y), np.maximum(want, 0)
    inputs = [data] if case.startswith("conv") else [data, residual_value]
    return builder.finish([y], ["y"]), inputs, want


@pytest.mark.parametrize("case, kernel", [
    ("conv64_bias_residual_relu", "residual"), ("conv_residual", "residual"), ("conv_relu", "bias"),
    ("dense_bias_residual_relu", "residual"), ("dense_residual", "residual"), ("dense_relu", "bias"),
    ("denseskinny_bias_residual_relu", "residual"), ("dense_residual_bias_relu", "tile"),
    ("conv_residual_bias", "tile")])
def test_residual_and_bias_free_epilogues_run_in_registers(case, kernel):
    """A bias, then a residual of the result's shape, then relu, each but one maybe absent, is
    the "bias" or "residual" kernel (a missing bias reads zeros); in another order, a tile
    function. On every path: the convolution (wide tile at 64 channels), a GEMM's tiles, its
    few-column path (the residual read down C's rows at C's row stride)."""
    graph, inputs, want = _residual_model(case, np.random.default_rng(len(case)))
    exe = nncompile.compile(graph)
    declared = [line for line in exe.llvm_ir().splitlines() if line.startswith("declare") and "nnc." in line]
    assert any(line.split('"')[1].endswith(f".{kernel}") for line in declared), declared
    for rows in (1, 3) if case.startswith("conv") else (1, 5, 37):
        got = exe(*[a[:rows] for a in inputs])
        np.testing.assert_allclose(got, want[:rows], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 130, 64), (3, 17, 5), (50, 7, 40), (241, 65, 300), (90, 12, 700)])
def test_residual_kernel_reads_the_residual_at_cs_row_stride(transpose_a, m, n, k):
    """The "residual" kernel, maximum(A @ B + bias + R, floor), on every path of the GEMM (few
    rows, few columns with A transposed, which reads R down its columns, the tiles), with R
    read at C's row stride, an argument."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    b, bias = rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    c = np.full((m, n), 7.0, np.float32)
    module = target.new_module("library_residual_test")
    kernel = library.shared_gemm(module, DType.f32, transpose_a=transpose_a, epilogue="residual")
    library.ready()
    floor = np.array(0.0, np.float32)
    fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, P, P, P)(llvm.address_of_symbol(kernel.name))
    fn(m, n, k, a.ctypes.data, m if transpose_a else k, b.ctypes.data, n, c.ctypes.data, n,
       bias.ctypes.data, r.ctypes.data, floor.ctypes.data)
    want = np.maximum((a.T if transpose_a else a).astype(np.float64) @ b + bias + r, 0)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * (k + 1))
