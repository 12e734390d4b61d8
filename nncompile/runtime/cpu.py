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
Parameters are bound by reference: in-place updates of the arrays are seen by the next call. A
graph that updates no parameter keeps the weights its products read as B packed between calls;
their arrays are then read-only, written through `runtime.weights.writing` (or `Variable.assign`),
which makes the next call pack them again.
"""
from __future__ import annotations

import collections
import ctypes
import functools
import os
import threading
import types
import weakref
from typing import Mapping, Sequence

import numpy as np
from llvmlite import ir as llvm_ir

from nncompile import phases
from nncompile.codegen import cpu as codegen
from nncompile.codegen import gemm, library, target
from nncompile.codegen.target import JitModule
from nncompile.ir.errors import ShapeError, VerifyError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import Region, get_op, has_region, regions_of
from nncompile.ir.sizes import fitting_env
from nncompile.ir.verifier import check_param
from nncompile.passes.manager import PassManager
from nncompile.passes.pipelines import pipeline as named_pipeline
from nncompile.passes.memory import MemoryPlan, is_elementwise_safe, plan_memory, value_names
from nncompile.passes.prepare import split_prepared
from nncompile.runtime import binding as binding_module, disk_cache, reference, weights
from nncompile.runtime.binding import Binding, bind_symbols, checked_array, shares

_ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
_STEPS_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
# Symbol size used to decide, once per compile, which buffers share memory (the decision depends
# on shapes only, not on sizes; every later plan is checked against it).
_PROBE_SIZE = 3
# Bindings (arena and pointer table) kept per executable, for the most recent input shapes.
_BINDINGS_KEPT = 4


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


class Executable:
    """A compiled graph. Call it with the data inputs in order, or `run` it with a dict.

    `compile` makes one; `Executable(graph, passes)` makes one from a graph that `passes` (a
    pipeline ending with "fuse" and "schedule") already produced, e.g. to inspect the IR first."""

    def __init__(self, graph: Graph, passes: PassManager):
        self.pass_report = passes.report()
        with phases.timed("plan"):
            graph, prepared = split_prepared(_hoist_constants(graph.copy()))
            self.graph = graph
            # read-only: the bindings point at these arrays, so none may be replaced (updated in place)
            self.params = types.MappingProxyType({v.name: _bindable(graph, v) for v in graph.param_inputs})
            probe = fitting_env(graph, _PROBE_SIZE)
            self.shares = shares(plan_memory(graph, probe))
            self.layout = codegen.make_layout(graph, self.shares)
            self._key = disk_cache.entry_key("\n".join([str(graph), repr(sorted((str(k), str(v)) for k, v in
                                                                              _named(graph, self.shares))),
                                                         gemm.tilings_key()]))
        # the values made from the weights alone, made again when they change (passes/prepare.py)
        self.prepared = None if prepared is None else Executable(prepared, PassManager(()))
        self._keep_packed()
        self._jit = self._load()
        self._inputs = graph.data_inputs
        self._input_names = [v.name for v in self._inputs]
        self._dtypes = [v.type.dtype.numpy for v in self._inputs]
        self.input_slots = [self.layout.slots[v] for v in self._inputs]
        with phases.timed("loading"):
            self._entry_points()
        self._route_outputs()
        self._bindings: dict[tuple, Binding] = {}
        self._one_input = (len(self._inputs) == 1 and not self._updates and self._returns_all
                           and not self._copied and not self._copied_updates)
        self._busy = threading.Lock()          # held by the call using the shared arena
        self._binding_lock = threading.Lock()

    def _keep_packed(self) -> None:
        """Memory for the weights kept packed between calls (`codegen.cpu.Layout.packed`), packed
        before the first call and again after weights changed (`runtime/weights.py`), after the
        prepared values are made again."""
        self._prepares = bool(self.layout.packed) or self.prepared is not None
        self._packed_at = -1        # the weights' generation they were last packed at
        self._packing = threading.Lock()
        self._packed_memory = [np.empty(size + 64, np.uint8) for size in codegen.packed_sizes(self.layout)]
        self.packed_addresses = [m.ctypes.data + -m.ctypes.data % 64 for m in self._packed_memory]
        for v in self.layout.packed:
            weights.keep(self.params[v.name])
        self._updates = bool(self.graph.updates)

    def _prepare(self, binding: Binding) -> None:
        """Make the prepared values and pack the kept weights again if the weights changed since."""
        with self._packing:
            seen = weights.generation
            if self._packed_at != seen:
                self.make_prepared()
                self._prepare_native(*binding.args)
                self._packed_at = seen

    def make_prepared(self) -> None:
        """Compute the prepared values (`passes/prepare.py`) from the weights as they are now into
        their parameters (calls do this themselves when the weights changed; `nncompile compile`
        does it before writing the parameters)."""
        if self.prepared is not None:
            for name, array in self.prepared.run({}).items():
                # a prepared value that a product reads as B is kept packed, so read-only
                with weights.writing(self.params[name], changes=False) as value:
                    np.copyto(value, array)

    def _entry_points(self) -> None:
        """The native functions: the entry, the stepped entry, and the one-call entry taking the
        frame and the input arrays (`native_call`; None where the arrays' data offset was not
        found or the graph has more inputs than it takes: bindings then fill the table)."""
        self.entry = _ENTRY_TYPE(self._jit.address(codegen.ENTRY))
        self._steps = _STEPS_TYPE(self._jit.address(codegen.STEPS))
        self._prepare_native = _ENTRY_TYPE(self._jit.address(codegen.PREPARE))
        self.native_call = None
        if binding_module.DATA_OFFSET is not None and len(self._inputs) <= codegen.CALL_INPUTS_MAX:
            self.native_call = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p,
                                                *[ctypes.py_object] * len(self._inputs))(
                self._jit.address(codegen.CALL))

    def _route_outputs(self) -> None:
        """Where each output comes from: written by a kernel into memory of its own (`owned`),
        into its parameter's array (`in_place_slots`), or copied after the call."""
        graph, outputs = self.graph, self.graph.outputs
        self._in_place = in_place = {i: graph.updates[name] for i, name in enumerate(graph.output_names)
                                     if name in graph.updates and
                                     _writes_in_place(graph, outputs[i], graph.updates[name])}
        self.in_place_slots = [(self.layout.slots[outputs[i]], param) for i, param in in_place.items()]
        owned = [i for i, v in enumerate(outputs) if i not in in_place
                 and v.producer is not None and outputs.index(v) == i]
        self.owned = [(i, self.layout.slots[outputs[i]]) for i in owned]
        self._copied = [i for i in range(len(outputs)) if i not in owned and i not in in_place]
        # updates that could not be written in place are copied into their parameters after a call
        self._copied_updates = [(i, graph.updates[name]) for i, name in enumerate(graph.output_names)
                                if name in graph.updates and i not in in_place]
        self._returned = [i for i, name in enumerate(graph.output_names) if name not in graph.updates]
        self._returned_names = [graph.output_names[i] for i in self._returned]
        self._returns_all = len(self._returned) == len(outputs)

    def _load(self) -> JitModule:
        """Machine code from the disk cache when it has this module (`from_cache`), else compiled."""
        with phases.timed("disk cache"):
            cached = disk_cache.read(self._key)
        self.from_cache = cached is not None
        if cached is not None:
            library.load_needed(cached)     # the library kernels it calls (JitModule: the rest)
            return JitModule(object_code=cached)
        target.start_worker()   # it starts while the module is built
        object_code = target.compile_object(self._module())
        library.ready()     # the library kernels it calls, built meanwhile
        jit = JitModule(object_code=object_code)
        with phases.timed("disk cache"):
            disk_cache.write(self._key, jit.object_code)
        return jit

    @property
    def object_code(self) -> bytes:
        """The machine code (an ELF object file for the host CPU, or the object files of a module
        compiled in parts, packed: `module_parts.unpack`), as kept in the disk cache."""
        return self._jit.object_code

    def _module(self) -> llvm_ir.Module:
        with phases.timed("LLVM IR"):
            return codegen.build_module(self.graph, self.layout)

    @functools.cached_property
    def _module_text(self) -> str:
        module = self._module()
        with phases.timed("LLVM IR"):
            return str(module)

    # running ------------------------------------------------------------------------------
    def __call__(self, *arrays: np.ndarray):
        outs = self._call_one(arrays[0]) if self._one_input and len(arrays) == 1 else self._execute(arrays)
        return outs[0] if len(outs) == 1 else outs

    def _call_one(self, array) -> list[np.ndarray]:
        """`_execute` for one array, where the graph takes one data input and returns only what its
        kernels write (a model's predict): the same checks in fewer steps (the MNIST MLP's batch-1
        call: 6.2 -> 5.5 us, of which 3.2 native). Anything else (another dtype or layout, a new
        shape, weights changed, the arena busy) goes the whole way."""
        if type(array) is np.ndarray and array.dtype is self._dtypes[0] and array.flags.c_contiguous:
            binding = self._bindings.get((array.shape,))
            if binding is not None and (not self._prepares or self._packed_at == weights.generation) \
                    and self._busy.acquire(False):
                try:
                    outs, status = binding.call((array,))
                finally:
                    self._busy.release()
                if status:
                    raise self._kernel_error(status, (array,))
                return outs
        return self._execute((array,))

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on inputs given by name; returns the outputs by name."""
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise TypeError(f"run() takes a dict of input name -> array; received {type(inputs).__name__}")
        try:
            arrays = [inputs[name] for name in self._input_names]
        except KeyError:
            arrays = None
        if arrays is None or len(inputs) != len(arrays):   # a name missing or unknown: say which
            values, _ = reference.bind_inputs(self.graph, inputs, self.params)
            arrays = [values[v] for v in self._inputs]
        return dict(zip(self._returned_names, self._execute(arrays)))

    def _execute(self, arrays: Sequence) -> list[np.ndarray]:
        """Check the inputs, run, and return the outputs that are not parameter updates.

        A call checks every input's type, dtype and contiguity (an array of the input's dtype
        object, C-contiguous, passes at once; anything else goes through `checked_array`), and
        finds the binding by the tuple of input shapes: the shapes were checked against the
        graph's types when that binding was made, so an unseen shape is checked before it runs."""
        if len(arrays) != len(self._inputs):
            raise ShapeError(f"graph {self.graph.name!r} takes {len(self._inputs)} inputs "
                             f"({', '.join(self._input_names)}), got {len(arrays)}")
        for array, dtype in zip(arrays, self._dtypes):
            if type(array) is not np.ndarray or array.dtype is not dtype or not array.flags.c_contiguous:
                arrays = [checked_array(v, a) for v, a in zip(self._inputs, arrays)]
                break
        binding = self._bindings.get(tuple([a.shape for a in arrays])) or self._bind(arrays)
        if self._prepares and self._packed_at != weights.generation:
            self._prepare(binding)
        if self._busy.acquire(False):   # positional: a keyword costs a tenth of the check
            try:
                outs, status = binding.call(arrays)
            finally:
                self._busy.release()
        else:   # another thread is running on the shared arena: this call gets its own
            outs, status = binding.private(self).call(arrays)
        if self._updates:
            weights.changed()
        if status:
            raise self._kernel_error(status, arrays)
        if self._copied or self._copied_updates:
            self._complete(outs, arrays)
        return outs if self._returns_all else [outs[i] for i in self._returned]

    def _complete(self, outs: list, arrays: Sequence[np.ndarray]) -> None:
        """Fill in the outputs no kernel wrote, and copy updates not written in place."""
        for i in self._copied:
            outs[i] = np.array(self._value_of(self.graph.outputs[i], arrays, outs))
        for i, param in self._copied_updates:
            with weights.writing(self.params[param]) as array:
                np.copyto(array, outs[i])

    def run_steps(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run the graph once per step in one native call: each input has a leading axis of steps
        (`arrays[i][k]` is input i of step k), each returned output too. Parameter updates take
        effect from one step to the next, as if the steps were separate calls."""
        if len(arrays) != len(self._inputs):
            raise ShapeError(f"graph {self.graph.name!r} takes {len(self._inputs)} inputs "
                             f"({', '.join(self._input_names)}), got {len(arrays)}")
        arrays = [checked_array(v, a) if np.ndim(a) else np.asarray(a) for v, a in zip(self._inputs, arrays)]
        counts = {a.shape[0] if a.ndim else -1 for a in arrays}
        if len(counts) != 1 or -1 in counts:
            raise ShapeError(f"run_steps: every input needs the same leading axis of steps; got "
                             f"shapes {[a.shape for a in arrays]}")
        count = counts.pop()
        if self._copied or self._copied_updates or count == 0:
            per_step = [self._execute([a[k] for a in arrays]) for k in range(count)]
            return [np.stack([outs[i] for outs in per_step]) for i in range(len(self._returned))]
        firsts = [a[0] for a in arrays]
        binding = self._bindings.get(tuple([a.shape for a in firsts])) or self._bind(firsts)
        if self._prepares and self._packed_at != weights.generation:
            self._prepare(binding)
        with self._busy:
            try:
                outs, strides = self._point(binding, arrays, count)
                status = self._steps(*binding.args, count, strides.ctypes.data)
            finally:
                binding.restore_kept()
                if self._updates:
                    weights.changed()
        if status:
            raise self._kernel_error(status, firsts)
        return [outs[i] for i in self._returned]

    def _point(self, binding: Binding, arrays: list[np.ndarray], count: int):
        """Point the table at stepped inputs and fresh stepped outputs; the byte strides."""
        strides = np.zeros(len(binding.pointers), np.int64)
        for slot, array in zip(self.input_slots, arrays):
            binding.pointers[slot] = array.ctypes.data
            strides[slot] = array[0].nbytes
        outs: list = [None] * len(binding.outputs)
        for i, slot in self.owned:
            shape, dtype = binding.outputs[i]
            outs[i] = np.empty((count,) + shape, dtype)
            binding.pointers[slot] = outs[i].ctypes.data
            strides[slot] = outs[i][0].nbytes if count else 0
        return outs, strides

    def _bind(self, arrays: list[np.ndarray]) -> Binding:
        """The binding for inputs of these shapes: checked against the graph's input types once,
        made once per distinct symbol sizes, and kept for the last few shapes seen."""
        env = bind_symbols(self._inputs, arrays)
        sizes = tuple(env.values())
        with self._binding_lock:
            binding = next((b for b in self._bindings.values() if b.key == sizes), None) or Binding(self, env)
            self._bindings[tuple([a.shape for a in arrays])] = binding
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
        """The LLVM IR of the module, as generated or after LLVM's pipeline (`target.optimized`)."""
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
    if v.name in graph.updates.values() and not array.flags.writeable and not weights.is_kept(array):
        raise ShapeError(f"parameter {v.name!r} is updated by the graph but bound to a read-only array")
    return array


_COMPILED: "collections.OrderedDict[tuple, Executable]" = collections.OrderedDict()
_COMPILED_MAX = 64
# id(graph) -> (a weak reference to the graph, its executable). Not a WeakKeyDictionary: its
# lookups compare the graphs with ==, which is a structural comparison of the whole graph.
_BY_GRAPH: "dict[int, tuple[weakref.ref, Executable]]" = {}
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
    known = _BY_GRAPH.get(id(graph))
    if known is not None and known[0]() is graph:
        return known[1]
    key = (str(graph), tuple((n, id(a)) for n, a in graph.params.items()))
    exe = _COMPILED.get(key)
    if exe is None:
        # A graph with parameter updates is a training step: its pipeline keeps batch statistics.
        exe = _COMPILED[key] = compile(graph, pipeline="training" if graph.updates else "inference")
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    _remember(graph, exe)
    return exe


def _remember(graph: Graph, exe: Executable) -> None:
    """Find `exe` by `graph`'s identity for as long as the graph lives."""
    key = id(graph)

    def forget(ref: weakref.ref) -> None:
        if _BY_GRAPH.get(key, (None,))[0] is ref:   # not a later graph given the same id
            _BY_GRAPH.pop(key, None)

    _BY_GRAPH[key] = (weakref.ref(graph, forget), exe)


def run_graph(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run `graph` on `arrays` with the selected backend; one array per output."""
    outs = executable(graph)(*arrays)
    return outs if isinstance(outs, list) else [outs]
