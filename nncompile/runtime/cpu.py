"""The CPU runtime: compile a graph to native code and run it with one native call.

    >>> exe = nncompile.compile(graph, target="cpu")
    >>> y = exe(x)                       # one array per output (a list for several)
    >>> exe.run({"input_layer": x})      # {output name: array}

Compilation runs a named pipeline (`passes.pipelines`), hoists the remaining constants
into bound parameters, plans memory, and builds one LLVM module (`codegen.cpu`). Compiled code is
kept on disk (`runtime.disk_cache`: keyed by the scheduled graph, the package's source, the LLVM
version and the host CPU, checked before use), so a second process loads the machine code and
skips LLVM altogether.

A symbolic batch dimension is bound per call: the native code takes the sizes as arguments, and
the memory plan (arena offsets, a few microseconds to make) is made once per distinct size.
Parameters are bound by reference: in-place updates of the arrays are seen by the next call.
"""
from __future__ import annotations

import collections
import ctypes
import functools
import math
import os
import threading
import weakref
from typing import Mapping, Sequence

import numpy as np

from nncompile.codegen import cpu as codegen
from nncompile.codegen import parallel, target
from nncompile.codegen.target import JitModule
from nncompile.ir.dims import dim_value
from nncompile.ir.errors import ShapeError, VerifyError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import Region, get_op, has_region, regions_of
from nncompile.ir.sizes import check_sizes, fitting_env
from nncompile.ir.types import bind_shape, resolve_shape
from nncompile.ir.verifier import check_param
from nncompile.passes.manager import PassManager
from nncompile.passes.pipelines import pipeline as named_pipeline
from nncompile.passes.memory import Home, MemoryPlan, check_fits, is_elementwise_safe, plan_memory, value_names
from nncompile.runtime import disk_cache, reference
from nncompile.runtime.reference import bind_inputs

_ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
_STEPS_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
# Symbol size used to decide, once per compile, which buffers share memory (the decision depends
# on shapes only, not on sizes; every later plan is checked against it).
_PROBE_SIZE = 3
# Bindings (arena and pointer table) kept per executable, for the most recent input shapes.
_BINDINGS_KEPT = 4
# Outputs up to this size are written into the binding and copied out (see _Binding).
KEPT_OUTPUT_BYTES = 16 << 10


def compile(graph: Graph, target: str = "cpu", *, pipeline: str = "inference",
            verify: bool | None = None, dump_dir: str | None = None) -> "Executable":
    """Compile `graph` for `target` ("cpu") into an `Executable`, running the passes of the
    named `pipeline` ("inference", "training" or "codegen"; see `passes.pipelines.describe()`).

    `dump_dir` (default: NNCOMPILE_DUMP_DIR) receives the IR after every pass, in a folder named
    after the graph (`main` for a traced model, `train_step`, `test_step`)."""
    if target != "cpu":
        raise ValueError(f"compile: unknown target {target!r}; expected 'cpu'")
    dump_dir = dump_dir or os.environ.get("NNCOMPILE_DUMP_DIR") or None
    passes = PassManager(named_pipeline(pipeline), verify=verify,
                         dump_dir=os.path.join(dump_dir, graph.name) if dump_dir else "")
    return Executable(passes.run(graph.copy()), passes)


def _hoist_constants(graph: Graph) -> Graph:
    """Constants left outside fused bodies become bound parameters, so no kernel computes them.
    A program region's constants become operands of the node running it first (`_lift`)."""
    _lift_program_constants(graph)
    keep = []
    for node in graph.nodes:
        if node.op != "constant":
            keep.append(node)
            continue
        name = f"const{len(graph.inputs)}"
        value = graph.add_input(name, node.outputs[0].type, param=True)
        graph.params[name] = np.array(node.attrs["value"], order="C")  # keeps rank 0, unlike ascontiguousarray
        _replace_uses(graph, node.outputs[0], value)
    graph.nodes = keep
    return graph


def _lift_program_constants(graph: Graph) -> None:
    """Move the constants of every program region (innermost first) out into `graph`, before
    the node running the region, which passes them in as invariant operands."""
    nodes = []
    for node in graph.nodes:
        if has_region(node, Region.PROGRAM):
            add_invariant = get_op(node.op).extra["add_invariant"]
            for region in regions_of(node):
                _lift_program_constants(region)
                for const in [n for n in region.nodes if n.op == "constant"]:
                    outer = Node("constant", [], const.attrs, [const.outputs[0].type], const.loc)
                    nodes.append(outer)
                    _replace_uses(region, const.outputs[0], add_invariant(node, outer.outputs[0]))
                region.nodes = [n for n in region.nodes if n.op != "constant"]
        nodes.append(node)
    graph.nodes = nodes


def _replace_uses(graph: Graph, old: Value, new: Value) -> None:
    for node in graph.nodes:
        node.inputs = [new if v is old else v for v in node.inputs]
    graph.outputs = [new if v is old else v for v in graph.outputs]


def _shares(plan: MemoryPlan) -> dict[Value, Value]:
    """value -> the value owning its memory, for values that do not own theirs."""
    return {v: loc.root for v, loc in plan.locations.items() if loc.root is not v}


class _Binding:
    """Everything that depends on the symbol sizes: the memory plan, the arena, the pointer table."""

    def __init__(self, exe: "Executable", env: dict[str, int], plan: MemoryPlan | None = None):
        self.env = env
        check_sizes(exe.graph, env)
        self.plan = plan or plan_memory(exe.graph, env)
        if _shares(self.plan) != exe.shares:
            raise ShapeError(f"graph {exe.graph.name!r}: buffer sharing changed with sizes {env}")
        check_fits(self.plan)
        self.arena = np.empty(self.plan.arena_bytes + 64, np.uint8)
        base = self.arena.ctypes.data
        base += -base % 64
        self.pointers = np.zeros(len(exe.layout.roots), np.uint64)
        for slot, root in enumerate(exe.layout.roots):
            loc = self.plan.where(root)
            if loc.home is Home.ARENA:
                self.pointers[slot] = base + loc.offset
            elif loc.home is Home.PARAM:
                self.pointers[slot] = exe.params[root.name].ctypes.data
        for i, param in exe._in_place.items():
            self.pointers[exe.layout.slots[exe.graph.outputs[i]]] = exe.params[param].ctypes.data
        self.sizes = np.array([dim_value(s, env) for s in exe.layout.symbols] or [0], np.int64)
        self.key = tuple(env.values())
        self.outputs = [(resolve_shape(v.type.shape, env), v.type.dtype.numpy) for v in exe.graph.outputs]
        # Small outputs are written into buffers of the binding and copied out: a copy costs less
        # than a new array's address (see address()).
        self.kept = {}
        for i, _ in exe._owned:
            shape, dtype = self.outputs[i]
            if math.prod(shape) * dtype.itemsize <= KEPT_OUTPUT_BYTES:
                buffer = np.empty(shape, dtype)
                self.kept[i] = (buffer, address(buffer))
        self.args = (self.pointers.ctypes.data, self.sizes.ctypes.data)

    def private(self, exe: "Executable") -> "_Binding":
        """A binding with the same plan but an arena and pointer table of its own."""
        return _Binding(exe, self.env, self.plan)


class Executable:
    """A compiled graph. Call it with the data inputs in order, or `run` it with a dict.

    `compile` makes one; `Executable(graph, passes)` makes one from a graph that `passes` (a
    pipeline ending with "fuse" and "schedule") already produced, e.g. to inspect the IR first."""

    def __init__(self, graph: Graph, passes: PassManager):
        self.graph = graph = _hoist_constants(graph.copy())
        self.pass_report = passes.report()
        self.params = {v.name: _bindable(graph, v) for v in graph.param_inputs}
        self.shares = _shares(plan_memory(graph, fitting_env(graph, _PROBE_SIZE)))
        self.layout = codegen.make_layout(graph, self.shares)
        self._key = disk_cache.entry_key("\n".join([str(graph), repr(sorted((str(k), str(v)) for k, v in
                                                                              _named(graph, self.shares)))]))
        self._jit = self._load()
        self._entry = _ENTRY_TYPE(self._jit.address(codegen.ENTRY))
        self._call_with_arrays = None
        if _DATA_OFFSET is not None and len(graph.data_inputs) <= codegen.CALL_INPUTS_MAX:
            self._call_with_arrays = ctypes.CFUNCTYPE(
                ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                *[ctypes.py_object] * len(graph.data_inputs))(self._jit.address(codegen.CALL))
        self._steps = _STEPS_TYPE(self._jit.address(codegen.STEPS))
        self._inputs = graph.data_inputs
        self._input_slots = [self.layout.slots[v] for v in self._inputs]
        outputs = graph.outputs
        self._in_place = {i: graph.updates[name] for i, name in enumerate(graph.output_names)
                          if name in graph.updates and _writes_in_place(graph, outputs[i], graph.updates[name])}
        owned = [i for i, v in enumerate(outputs) if i not in self._in_place
                 and v.producer is not None and outputs.index(v) == i]
        self._owned = [(i, self.layout.slots[outputs[i]]) for i in owned]
        self._copied = [i for i in range(len(outputs)) if i not in owned and i not in self._in_place]
        # updates that could not be written in place are copied into their parameters after a call
        self._copied_updates = [(i, graph.updates[name]) for i, name in enumerate(graph.output_names)
                                if name in graph.updates and i not in self._in_place]
        self._returned = [i for i, name in enumerate(graph.output_names) if name not in graph.updates]
        self._bindings: dict[tuple, _Binding] = {}
        self._busy = threading.Lock()          # held by the call using the shared arena
        self._binding_lock = threading.Lock()

    def _load(self) -> JitModule:
        """Machine code from the disk cache when it has this module (`from_cache`), else compiled."""
        cached = disk_cache.read(self._key)
        self.from_cache = cached is not None
        if cached is not None:
            parallel.install()   # cached code may call the thread pool: its symbol must resolve
            return JitModule(object_code=cached)
        jit = JitModule(self._module_text)
        disk_cache.write(self._key, jit.object_code)
        return jit

    @property
    def object_code(self) -> bytes:
        """The machine code (an ELF object file for the host CPU), as kept in the disk cache."""
        return self._jit.object_code

    @functools.cached_property
    def _module_text(self) -> str:
        return str(codegen.build_module(self.graph, self.layout))

    # running ------------------------------------------------------------------------------
    def __call__(self, *arrays: np.ndarray):
        outs = self._execute(arrays)
        return outs[0] if len(outs) == 1 else outs

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on inputs given by name; returns the outputs by name."""
        if not isinstance(inputs, Mapping):
            raise TypeError(f"run() takes a dict of input name -> array; received {type(inputs).__name__}")
        values, _ = bind_inputs(self.graph, inputs, self.params)
        outs = self._execute([values[v] for v in self._inputs])
        return dict(zip((self.graph.output_names[i] for i in self._returned), outs))

    def _execute(self, arrays: Sequence) -> list[np.ndarray]:
        if len(arrays) != len(self._inputs):
            raise ShapeError(f"graph {self.graph.name!r} takes {len(self._inputs)} inputs "
                             f"({', '.join(v.name for v in self._inputs)}), got {len(arrays)}")
        arrays = [_checked_array(v, a) for v, a in zip(self._inputs, arrays)]
        shapes = tuple([a.shape for a in arrays])
        binding = self._bindings.get(shapes) or self._bind(shapes, arrays)
        if self._busy.acquire(blocking=False):
            try:
                outs, status = self._call(binding, arrays)
            finally:
                self._busy.release()
        else:   # another thread is running on the shared arena: this call gets its own
            outs, status = self._call(binding.private(self), arrays)
        if status:
            raise self._kernel_error(status, arrays)
        for i in self._copied:
            outs[i] = np.array(self._value_of(self.graph.outputs[i], arrays, outs))
        for i, param in self._copied_updates:
            np.copyto(self.params[param], outs[i])
        return [outs[i] for i in self._returned]

    def run_steps(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run the graph once per step in one native call: each input has a leading axis of steps
        (`arrays[i][k]` is input i of step k), each returned output too. Parameter updates take
        effect from one step to the next, as if the steps were separate calls."""
        if len(arrays) != len(self._inputs):
            raise ShapeError(f"graph {self.graph.name!r} takes {len(self._inputs)} inputs "
                             f"({', '.join(v.name for v in self._inputs)}), got {len(arrays)}")
        arrays = [_checked_array(v, a) if np.ndim(a) else np.asarray(a) for v, a in zip(self._inputs, arrays)]
        counts = {a.shape[0] if a.ndim else -1 for a in arrays}
        if len(counts) != 1 or -1 in counts:
            raise ShapeError(f"run_steps: every input needs the same leading axis of steps; got "
                             f"shapes {[a.shape for a in arrays]}")
        count = counts.pop()
        if self._copied or self._copied_updates or count == 0:
            per_step = [self._execute([a[k] for a in arrays]) for k in range(count)]
            return [np.stack([outs[i] for outs in per_step]) for i in range(len(self._returned))]
        firsts = [a[0] for a in arrays]
        shapes = tuple([a.shape for a in firsts])
        binding = self._bindings.get(shapes) or self._bind(shapes, firsts)
        with self._busy:
            outs, strides = self._point(binding, arrays, count)
            status = self._steps(binding.pointers.ctypes.data, binding.sizes.ctypes.data, count,
                                 strides.ctypes.data)
        if status:
            raise self._kernel_error(status, firsts)
        return [outs[i] for i in self._returned]

    def _point(self, binding: _Binding, arrays: list[np.ndarray], count: int):
        """Point the table at stepped inputs and fresh stepped outputs; the byte strides."""
        strides = np.zeros(len(binding.pointers), np.int64)
        for slot, array in zip(self._input_slots, arrays):
            binding.pointers[slot] = array.ctypes.data
            strides[slot] = array[0].nbytes
        outs: list = [None] * len(binding.outputs)
        for i, slot in self._owned:
            shape, dtype = binding.outputs[i]
            outs[i] = np.empty((count,) + shape, dtype)
            binding.pointers[slot] = outs[i].ctypes.data
            strides[slot] = outs[i][0].nbytes if count else 0
        return outs, strides

    def _call(self, binding: _Binding, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """Point the table at the inputs and fresh outputs, and make the one native call."""
        pointers = binding.pointers
        outs: list = [None] * len(binding.outputs)
        kept = binding.kept
        for i, slot in self._owned:
            if i in kept:
                pointers[slot] = kept[i][1]   # run_steps may have pointed the slot elsewhere
            else:
                shape, dtype = binding.outputs[i]
                outs[i] = np.empty(shape, dtype)
                pointers[slot] = address(outs[i])
        if self._call_with_arrays is None:
            for slot, array in zip(self._input_slots, arrays):
                pointers[slot] = address(array)
            status = self._entry(*binding.args)
        else:   # the native code reads the inputs' data pointers itself
            status = self._call_with_arrays(*binding.args, _DATA_OFFSET, *arrays)
        for i, (buffer, _) in kept.items():
            outs[i] = buffer.copy()
        return outs, status

    def _bind(self, shapes: tuple, arrays: list[np.ndarray]) -> _Binding:
        """The binding for inputs of these shapes: checked against the graph's input types once,
        made once per distinct symbol sizes, and kept for the last few shapes seen."""
        env = _bind_symbols(self._inputs, arrays)
        sizes = tuple(env.values())
        with self._binding_lock:
            binding = next((b for b in self._bindings.values() if b.key == sizes), None) or _Binding(self, env)
            self._bindings[shapes] = binding
            while len(self._bindings) > _BINDINGS_KEPT:
                del self._bindings[next(iter(self._bindings))]
        return binding

    def _value_of(self, v: Value, arrays: Sequence[np.ndarray], outs: list[np.ndarray]) -> np.ndarray:
        """An output no kernel writes: a parameter, an input, or a value output twice."""
        if v.is_param:
            return self.params[v.name]
        if v in self._inputs:
            return arrays[self._inputs.index(v)]
        return outs[self.graph.outputs.index(v)]

    def _kernel_error(self, status: int, arrays: Sequence[np.ndarray]) -> ShapeError:
        """The error of a kernel that refused its input (an index out of range): the reference
        interpreter, run on the same inputs, says exactly which value and where."""
        try:
            reference.run(self.graph, arrays, self.params)
        except ShapeError as e:
            return e
        node = [n for n in self.graph.nodes if n.op != "constant"][status - 1]
        return ShapeError(f"{node.describe()}: an index is out of range")

    # inspection ---------------------------------------------------------------------------
    def llvm_ir(self, optimized: bool = False) -> str:
        """The LLVM IR of the module, as generated or after LLVM's O3 pipeline."""
        return target.optimized(self._module_text) if optimized else self._module_text

    def assembly(self) -> str:
        """The host assembly of the optimized module."""
        return target.assembly(self._module_text)

    def memory_plan(self, **sizes: int) -> MemoryPlan:
        """The memory plan at the given symbol sizes (the batch '?' is `batch`), default 1."""
        env = {s: sizes.get("batch" if s == "?" else s, 1) for s in codegen.graph_symbols(self.graph)}
        return plan_memory(self.graph, env)


def _writes_in_place(graph: Graph, value: Value, param: str) -> bool:
    """Whether the kernel making `value` may write it straight into parameter `param`'s array:
    no later kernel reads the parameter's old content, the writer reads it only element by
    element, and the value is not also another output."""
    writer = value.producer
    if writer is None or graph.outputs.count(value) > 1:
        return False
    old = graph.input(param)
    at = graph.nodes.index(writer)
    for i, node in enumerate(graph.nodes):
        if old in node.inputs and (i > at or (i == at and not is_elementwise_safe(node))):
            return False
    return True


def _named(graph: Graph, shares: dict[Value, Value]):
    names = value_names(graph)
    return ((names[v], names[r]) for v, r in shares.items())


def _bindable(graph: Graph, v: Value) -> np.ndarray:
    """The array bound to parameter `v`, checked against its type before any native code reads it;
    parameters that a run updates must be writable."""
    if v.name not in graph.params:
        raise VerifyError(f"graph {graph.name!r}: parameter {v.name!r} ({v.type}) has no bound array")
    array = graph.params[v.name] = check_param(graph, v)   # a scalar becomes a rank-0 array
    if not (array.flags.c_contiguous and array.flags.aligned):
        raise ShapeError(f"parameter {v.name!r} must be a C-contiguous, aligned numpy array to be "
                         f"bound by reference")
    if v.name in graph.updates.values() and not array.flags.writeable:
        raise ShapeError(f"parameter {v.name!r} is updated by the graph but bound to a read-only array")
    return array


_BYTE = ctypes.c_char * 1


def _data_offset() -> int | None:
    """Where a numpy array object keeps its data pointer (the field `PyArray_DATA` reads), found
    on probe arrays; None, and the runtime asks each array instead, if it is not found."""
    probes = [np.arange(n, dtype=np.float32) for n in (3, 5)]
    for offset in range(8, 72, 8):
        if all(ctypes.c_void_p.from_address(id(p) + offset).value == p.ctypes.data for p in probes):
            return offset
    return None


_DATA_OFFSET = _data_offset()


def address(array: np.ndarray) -> int:
    """The address of an array's first byte; through the buffer protocol, which costs half of
    `array.ctypes.data`, except for read-only and empty arrays."""
    try:
        return ctypes.addressof(_BYTE.from_buffer(array))
    except (TypeError, ValueError):
        return array.ctypes.data


def _checked_array(v: Value, array) -> np.ndarray:
    """`array` as the C-contiguous array of `v`'s dtype the native code reads, or a clear error."""
    if type(array) is np.ndarray and array.dtype == v.type.dtype.numpy and array.flags.c_contiguous:
        return array
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.dtype != v.type.dtype.numpy:
        raise ShapeError(f"input {v.name!r}: expected dtype {v.type.dtype}, received {array.dtype}")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def _bind_symbols(inputs: Sequence[Value], arrays: Sequence[np.ndarray]) -> dict[str, int]:
    env: dict[str, int] = {}
    for v, array in zip(inputs, arrays):
        bind_shape(v.type.shape, array.shape, env, f"input {v.name!r}")
    return env


_COMPILED: "collections.OrderedDict[tuple, Executable]" = collections.OrderedDict()
_COMPILED_MAX = 64
_BY_GRAPH: "weakref.WeakKeyDictionary[Graph, Executable]" = weakref.WeakKeyDictionary()
BACKENDS = ("cpu", "reference")


def backend() -> str:
    """The backend that runs models: NNCOMPILE_BACKEND ("cpu", the default, or "reference")."""
    name = os.environ.get("NNCOMPILE_BACKEND") or "cpu"
    if name not in BACKENDS:
        raise ValueError(f"NNCOMPILE_BACKEND is {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def executable(graph: Graph) -> "Executable | reference.Interpreter":
    """What runs `graph` on the selected backend: compiled code, made once per process and found
    again by the graph object itself (a model's cached trace) or by its text and parameter arrays
    (layers called eagerly build a fresh but equal graph on every call); or the interpreter."""
    if backend() == "reference":
        return reference.Interpreter(graph)
    exe = _BY_GRAPH.get(graph)
    if exe is not None:
        return exe
    key = (str(graph), tuple((n, id(a)) for n, a in graph.params.items()))
    exe = _COMPILED.get(key)
    if exe is None:
        # A graph with parameter updates is a training step: its pipeline keeps batch statistics.
        exe = _COMPILED[key] = compile(graph, pipeline="training" if graph.updates else "inference")
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    _BY_GRAPH[graph] = exe
    return exe


def run_graph(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run `graph` on `arrays` with the selected backend; one array per output."""
    outs = executable(graph)(*arrays)
    return outs if isinstance(outs, list) else [outs]
