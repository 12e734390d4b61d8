"""The host's kernel library: float GEMMs and convolutions compiled once per host, shared by
every model.

A GEMM is thousands of lines of LLVM IR (packing, the register-tiled microkernels, the few-row and
few-column paths), and it was most of a model's compile time (the tutorial MLP's predict module:
8,700 of 9,200 lines), yet it is the same code in every model of a host. So each GEMM variant
(`GemmSpec`: dtype, transposes, B packed before a loop or not, a static few-row count, plain or
with an epilogue) is a module of its own, compiled the first time a model on this host needs it,
kept in the disk cache like model code (keyed by its name, the package, LLVM and the CPU) and
loaded once per process. Its entry is exported by symbol, as the thread pool's is, and model
modules only declare it (`shared_gemm`). M, N, K and the strides are run-time arguments: the paths a
call takes are chosen at run time, as they were for symbolic batch sizes. The convolution
(`ConvSpec`, `shared_conv2d`) takes its whole geometry at run time, one kernel per dtype and
register tile (`conv.wide_tile`).

Epilogues are the model's own: a library GEMM with one takes a tile function and its context
(`gemm.TILE_CALL`); it stores each finished tile of C and calls the function on it while the
tile is in L1. The model's module emits that function from the epilogue's element rules
(`tile_function`), once per distinct epilogue. The commonest ones, a bias and then maybe an
activation of ACTIVATIONS (Dense and Conv2D layers), are kernels of their own that apply them in
registers (`kernel_epilogue`), as a model's own GEMM did. A relu is a floor: the "bias" kernel
stores max(x + bias, floor), the floor an operand (`bias_kernel`), so that a model's linear and
relu layers call one kernel and a new host compiles one fewer (each is most of a second).

A kernel that this process does not have yet starts building (from the disk cache, or compiled)
in a thread of its own the moment a model declares it, beside the model's own compile; `ready`
loads them all, and must run before code calling them is loaded. Cached model code names the
library kernels it calls as undefined symbols of its object file: `load_needed` loads those.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from nncompile import phases
from nncompile.codegen import conv, gemm, gemm_rows, parallel, simd, target, winograd
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import for_range
from nncompile.ir import BATCH, Builder, get_op
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError

i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)
PREFIX = "nnc.gemm."
CONV_PREFIX = "nnc.conv2d."
# After a bias, the activations whose epilogue the library runs in registers: a tile function
# call costs 6-22% of a product of depth 27-64 and half of one of ten columns. Those after the
# first have kernels of their own ("bias_sigmoid"); relu is the "bias" kernel's floor.
ACTIVATIONS = ("relu", "sigmoid", "tanh")
_EPILOGUE = r"(?:\.(tile|residual|bias(?:_(?:" + "|".join(ACTIVATIONS[1:]) + r"))?))?"
_CONV_NAME = re.compile(r"nnc\.conv2d\.(f32|f64)(\.wide)?(\.packed)?(\.winograd)?" + _EPILOGUE)
_NAME = re.compile(r"nnc\.gemm\.(f32|f64)\.([nt])([nt])(\.packed)?(?:\.m([1-9]))?" + _EPILOGUE)


def kernel_epilogue(name: str | None, dtype: DType) -> gemm.Epilogue | None:
    """The epilogue a library kernel runs: none, a tile function's call ("tile"), a bias and a
    floor, maximum(x + bias, floor) ("bias"), a bias, a residual of C's shape and a floor,
    maximum(x + bias + residual, floor) ("residual": a ResNet block's last convolution), or a
    bias and then an activation ("bias_sigmoid", "bias_tanh"), by the op table's element rules,
    in registers."""
    if name is None:
        return None
    if name == "tile":
        return gemm.TILE_CALL
    activation = name.partition("_")[2]
    builder = Builder()
    x = builder.input("x", dtype[BATCH, 1])
    node = (builder.op(activation, x) if activation else builder.op("maximum", x, x)).producer
    residual = name == "residual"

    def apply(b: ir.IRBuilder, acc: ir.Value, ops: list[ir.Value]) -> ir.Value:
        total = gemm.add(b, acc, ops[0])
        if residual:
            total = gemm.add(b, total, ops[1])
        return get_op(node.op).lower(b, [total, *ops[1 + residual:]], node)

    if activation:
        return gemm.Epilogue(((0, 1),), apply)
    return gemm.Epilogue(((0, 1), (gemm.LDC, 1), (0, 0)) if residual else ((0, 1), (0, 0)), apply)


def bias_kernel(module: ir.Module, dtype: DType, activation: str | None,
                residual: ir.Value | None = None) -> tuple[str, list[ir.Value]]:
    """(the kernel epilogue, its operands after the bias) for a bias, a `residual` (a pointer to
    an array of C's shape, or None) and then `activation` (None or one of ACTIVATIONS; relu or
    None with a residual): relu and none are the "bias" or "residual" kernel with a floor of 0
    or of the dtype's least value (-inf for floats, which keeps NaN as relu does), a constant
    of `module`."""
    if activation not in (None, "relu"):
        return f"bias_{activation}", []
    least = 0 if activation else -np.inf if dtype.is_float else np.iinfo(dtype.numpy).min
    name = f"nnc.floor.{dtype}.{activation or 'none'}"
    floor = module.globals.get(name)
    if floor is None:
        floor = ir.GlobalVariable(module, scalar_type(dtype), name)
        floor.initializer = ir.Constant(scalar_type(dtype), least)
        floor.global_constant, floor.linkage = True, "internal"
    return ("bias", [floor]) if residual is None else ("residual", [residual, floor])



def _extra_arguments(name: str | None) -> int:
    """The kernel's arguments after C's (one per operand of its epilogue)."""
    return 0 if name is None else len(kernel_epilogue(name, DType.f32).operands)


@dataclass(frozen=True)
class GemmSpec:
    """One library GEMM: `gemm.emit_gemm` of these arguments with the `epilogue` so named."""
    dtype: DType
    transpose_a: bool = False
    transpose_b: bool = False
    prepacked: bool = False
    rows: int | None = None     # a static M of at most gemm_rows.SMALL_M: only the few-rows path
    epilogue: str | None = None

    @property
    def name(self) -> str:
        return (f"{PREFIX}{self.dtype}.{'t' if self.transpose_a else 'n'}{'t' if self.transpose_b else 'n'}"
                f"{'.packed' * self.prepacked}{f'.m{self.rows}' if self.rows else ''}"
                f"{f'.{self.epilogue}' if self.epilogue else ''}")

    @classmethod
    def parse(cls, name: str) -> "GemmSpec | None":
        match = _NAME.fullmatch(name)
        if match is None:
            return None
        dtype, ta, tb, packed, rows, epilogue_name = match.groups()
        return cls(DType(dtype), ta == "t", tb == "t", bool(packed), int(rows) if rows else None, epilogue_name)

    def emit(self, module: ir.Module) -> ir.Function:
        return gemm.emit_gemm(module, self.name, self.dtype, transpose_a=self.transpose_a,
                              transpose_b=self.transpose_b, prepacked=self.prepacked, rows=self.rows,
                              epilogue=kernel_epilogue(self.epilogue, self.dtype))

    def function_type(self) -> ir.FunctionType:
        ptr = scalar_type(self.dtype).as_pointer()
        extra = [ptr] * (_extra_arguments(self.epilogue) + self.prepacked)
        return ir.FunctionType(ir.VoidType(), [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64, *extra])


@dataclass(frozen=True)
class ConvSpec:
    """The library convolution of a dtype (`conv.emit_conv2d`) with the `epilogue` so named: the
    geometry is an argument, an array of `conv.GEOMETRY` words. `prepacked`: the weights come
    packed too, one more argument last (`conv.emit_conv2d`). `wide`: the kernel of the
    convolutions whose output channels fill the wide register tile (`conv.wide_tile`).
    `winograd`: F(2x2, 3x3) for the convolutions `winograd.eligible` says (prepacked: the
    filter's transform, `winograd.emit_conv2d`)."""
    dtype: DType
    epilogue: str | None = None
    prepacked: bool = False
    wide: bool = False
    winograd: bool = False

    @property
    def name(self) -> str:
        return (f"{CONV_PREFIX}{self.dtype}{'.wide' * self.wide}{'.packed' * self.prepacked}"
                f"{'.winograd' * self.winograd}{f'.{self.epilogue}' if self.epilogue else ''}")

    @classmethod
    def parse(cls, name: str) -> "ConvSpec | None":
        match = _CONV_NAME.fullmatch(name)
        if match is None:
            return None
        dtype, wide, packed, winograd_, epilogue = match.groups()
        if winograd_ and not packed:
            return None
        return cls(DType(dtype), epilogue, bool(packed), bool(wide), bool(winograd_))

    def emit(self, module: ir.Module) -> ir.Function:
        epilogue = kernel_epilogue(self.epilogue, self.dtype)
        if self.winograd:
            return winograd.emit_conv2d(module, self.name, self.dtype, epilogue, conv.tiling(self.dtype, self.wide))
        return conv.emit_conv2d(module, self.name, self.dtype, epilogue, prepacked=self.prepacked, wide=self.wide)

    def function_type(self) -> ir.FunctionType:
        ptr = scalar_type(self.dtype).as_pointer()
        return ir.FunctionType(ir.VoidType(), [i64, ptr, ptr, ptr, i64.as_pointer(),
                                               *[ptr] * (_extra_arguments(self.epilogue) + self.prepacked)])


Spec = GemmSpec | ConvSpec


def _parse(name: str) -> Spec | None:
    return GemmSpec.parse(name) or ConvSpec.parse(name)


def serves(dtype: DType) -> bool:
    """Whether the library has GEMMs of `dtype` (others are emitted into the model's module)."""
    return dtype in (DType.f32, DType.f64)


def shared_gemm(module: ir.Module, dtype: DType, *, transpose_a: bool = False, transpose_b: bool = False,
                prepacked: bool = False, rows: int | None = None, epilogue: str | None = None) -> ir.Function:
    """The GEMM a model's module calls (`gemm.emit_gemm`'s arguments and signature, with the
    library `epilogue` so named): the library's, declared, for float dtypes; for the others the
    module's own plain loop nest, made on first use. `rows`: M, when static. A library kernel
    not in this process yet starts building at once; `ready` waits for it."""
    spec = GemmSpec(dtype, transpose_a, transpose_b, prepacked, gemm_rows.static_rows(rows, transpose_b), epilogue)
    if not serves(dtype):
        return module.globals.get(spec.name) or spec.emit(module)
    return _declare(module, spec)


def shared_conv2d(module: ir.Module, dtype: DType, *, epilogue: str | None = None,
                  prepacked: bool = False, wide: bool = False, winograd: bool = False) -> ir.Function:
    """The library's convolution (`ConvSpec`), declared in `module`; f32 or f64 only."""
    return _declare(module, ConvSpec(dtype, epilogue, prepacked, wide, winograd))


def _declare(module: ir.Module, spec: Spec) -> ir.Function:
    existing = module.globals.get(spec.name)
    if existing is not None:
        return existing
    _request(spec)
    return ir.Function(module, spec.function_type(), spec.name)


def load_needed(object_code: bytes) -> None:
    """Load every library GEMM that `object_code` (a model's cached machine code) calls. Their
    names sit in its string table; a name that is not a valid spec is no kernel of ours."""
    for name in set(re.findall(rb"nnc\.(?:gemm|conv2d)\.[a-z0-9._]+", object_code)):
        spec = _parse(name.decode())
        if spec is not None:
            _request(spec)
    ready()


_loaded: dict[Spec, target.JitModule] = {}
_building: dict[Spec, concurrent.futures.Future] = {}
_lock = threading.Lock()
# Kernels build in threads, one LLVM worker process each (`llvm_worker`), beside the model's own
# compile: a cold host builds a training step's three or four GEMMs on every core.
_builders = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0))),
                                                  thread_name_prefix="nncompile-library")


def common_kernels() -> list[Spec]:
    """The kernels most models call: the f32 products of a Dense layer forwards (with each kind
    of epilogue) and backwards, at any batch and at batch 1, and the convolution."""
    f32 = DType.f32
    forward = [GemmSpec(f32, rows=rows, epilogue=kind) for rows in (None, 1) for kind in (None, "tile", "bias")]
    backward = [GemmSpec(f32, transpose_a=True), GemmSpec(f32, transpose_b=True)]
    tiles = (False, True) if gemm.register_tile(wide=True) != gemm.register_tile() else (False,)
    return forward + backward + [ConvSpec(f32, kind, wide=wide) for kind in (None, "tile", "bias") for wide in tiles]


def build(specs: list[Spec]) -> None:
    """Build (or read from the disk cache) and load `specs`' kernels now, on every core: what
    `nncompile tune` does for `common_kernels`, so that a first model does not wait for them."""
    for spec in specs:
        _request(spec)
    ready()


def _request(spec: Spec) -> None:
    """Start building `spec`'s kernel unless this process has it or is building it."""
    parallel.prepare()     # the kernels call the pool: loading them waits for it
    with _lock:
        if spec not in _loaded and spec not in _building:
            _building[spec] = _builders.submit(_object_code, spec)


def _object_code(spec: Spec) -> bytes:
    """`spec`'s machine code, from the disk cache or compiled (in a builder thread)."""
    from nncompile.runtime import disk_cache     # runtime imports codegen, not the other way round

    def emit_and_compile() -> bytes:
        module = target.new_module(spec.name)
        spec.emit(module)
        return compile_module(module)
    return disk_cache.host_object_code(f"kernel library\n{spec.name}\n{gemm.tilings_key()}", emit_and_compile)


def compile_module(module: ir.Module) -> bytes:
    """The machine code of a module of kernels, made as the library's are: every internal
    function is inlined into its callers once, then optimized once (`llvm_worker.LIBRARY_PASSES`)."""
    for function in module.functions:
        if function.blocks and function.linkage == "internal":
            function.attributes.add("alwaysinline")
    text = str(module)
    try:
        return target.compile_object(text, "library")
    except IRError:     # its worker died (killed, out of memory): a fresh one takes it once more
        return target.compile_object(text, "library")


def ready() -> None:
    """Load and export every kernel requested so far, waiting for those still building: call it
    before loading code that calls them. A build that failed raises here (and is tried again at
    the next request)."""
    with phases.timed("kernel library"):
        while True:
            with _lock:
                if not _building:
                    return
                spec, future = next(iter(_building.items()))
            try:
                obj = future.result()
            finally:
                with _lock:
                    _building.pop(spec, None)
            with _lock:
                if spec not in _loaded:
                    jit = target.JitModule(object_code=obj)
                    llvm.add_symbol(spec.name, jit.address(spec.name))
                    _loaded[spec] = jit


def tile_function(module: ir.Module, name: str, dtype: DType, epilogue: gemm.Epilogue) -> ir.Function:
    """`void name(i8* ctx, T* c, i64 ldc, i64 row, i64 col, i64 rows, i64 cols)` (`gemm.tile_type`):
    apply `epilogue` in place to the rows x cols tile at `c`, which is C[row, col]; ctx holds the
    epilogue's operand pointers (`gemm.pack_fields`), read at C's coordinates with their strides.
    Made once per module for each name."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    ty = scalar_type(dtype)
    fn = gemm.new_function(module, name, gemm.tile_type(ty).args)
    ctx, c, ldc, row, col, rows, cols = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lanes = target.vector_lanes(dtype.itemsize)
    ptrs = gemm.unpack_fields(b, ctx, [ty.as_pointer()] * len(epilogue.operands))
    with for_range(b, rows, name="r") as r:
        c_row = gemm.at(b, c, b.mul(r, ldc))
        with for_range(b, cols, step=lanes, name="c") as j:
            valid = b.sub(cols, j)
            mask = simd.lane_mask(b, valid, lanes)
            at_row, at_col = b.add(row, r), b.add(col, j)
            values = [gemm.operand(b, p, s, at_row, at_col, lanes, valid, ldc=ldc)
                      for p, s in zip(ptrs, epilogue.operands)]
            ptr = gemm.at(b, c_row, j)
            simd.masked_store(b, epilogue.apply(b, simd.masked_load(b, ptr, mask), values), ptr, mask)
    b.ret_void()
    return fn


def tile_arguments(b: ir.IRBuilder, dtype: DType, tile: ir.Function, operands: list[ir.Value]) -> list[ir.Value]:
    """The two trailing arguments of a library GEMM with an epilogue: the tile function and its
    context (the operand pointers), each passed as a T* like any epilogue operand."""
    ptr = scalar_type(dtype).as_pointer()
    return [b.bitcast(tile, ptr), b.bitcast(gemm.pack_fields(b, operands), ptr)]

