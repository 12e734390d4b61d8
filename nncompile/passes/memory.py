"""The memory plan: one arena, an offset for every intermediate buffer (TFLite arena planner,
XLA heap simulator).

Every node of the scheduled graph is one kernel; kernel `i` is `graph.nodes[i]`. A node output
gets arena space unless it is a graph output (written straight into the caller's array). Graph
inputs and parameters are the caller's too. Two kinds of sharing cost no space:

- views: a `reshape` output is its input's bytes under another shape, so it takes its input's
  storage (arena, graph input, parameter or graph output) and extends that buffer's lifetime;
- in place: an elementwise kernel may write its result over an operand whose buffer dies at that
  kernel, when the two have the same shape and byte size (each element is read before the same
  element is written).

A program region (the body of `scan`) is planned in line: its kernels take positions right after
the node running it, followed by one position standing for the end of the loop, where every
step's results are read and the node's operands and results are still in use. The op's
`program_memory` rule says where the body's inputs live (a scan's carries in its carry results,
its invariants in its operands, slices of its operands in place or in buffers of their own) and
which body results are written into the node's results. So the body's other values get buffers
that every step reuses, and those buffers are free for the rest of the graph before and after
the loop. When blocks of the loop's rows run concurrently (`RegionMemory.concurrent`), each on its
own thread and at its own step, the body's values all live until the end of the loop: no two of
them share bytes.

A buffer lives from the kernel that first writes it to the last kernel that reads any value
stored in it, both inclusive. Buffers are placed best-fit in decreasing size order: each goes
into the smallest gap between the buffers already placed whose lifetimes overlap its own, or
after them all. `lower_bound` is the peak over kernels of the bytes live at once, so
`arena_bytes / lower_bound` says how much the placement (and alignment) wastes.
"""
from __future__ import annotations

import bisect
import enum
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from nncompile.ir.cost import shape_of
from nncompile.ir.errors import IRError, ShapeError, SizeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import Fusion, Region, RegionMemory, get_op, has_region, regions_of
from nncompile.ir.printer import region_names


class Home(enum.Enum):
    """Where a value's bytes live."""

    ARENA = "arena"
    INPUT = "input"
    PARAM = "param"
    OUTPUT = "output"


@dataclass(frozen=True)
class Location:
    """Where one value lives: `root` is the value that owns the storage (the graph input,
    parameter or graph output, or the first value written into the arena buffer); `offset` is
    the arena byte offset (0 outside the arena; a view always covers its root from byte 0)."""

    home: Home
    root: Value
    offset: int = 0


@dataclass
class Buffer:
    """One block of arena space and the values stored in it, in the order they are written."""

    values: list[Value]
    size: int
    first: int
    last: int
    offset: int = 0

    def overlaps(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    """The arena layout of one graph at concrete symbol sizes `env` (see the module doc)."""

    graph: Graph
    env: dict[str, int]
    alignment: int
    buffers: list[Buffer]            # in the order their first value is written
    locations: dict[Value, Location]
    view_of: dict[Value, Value]      # reshape output -> the reshape's input
    inplace_of: dict[Value, Value]   # kernel result -> the operand whose buffer it took
    offsets: dict[Value, int]        # every value living in the arena -> its byte offset
    arena_bytes: int
    lower_bound: int

    def where(self, value: Value) -> Location:
        """Where `value` lives; IRError for a value this graph does not define."""
        try:
            return self.locations[value]
        except KeyError:
            raise IRError(f"graph {self.graph.name!r}: the memory plan has no location for {value!r}; "
                          f"it is not an input or a node result of this graph") from None

    def table(self) -> str:
        """One row per buffer and value sharing it, then arena bytes vs the lower bound."""
        names = value_names(self.graph)
        header = ("value", "op", "shape", "bytes", "offset", "kernels", "shares")
        rows = []
        for buffer in sorted(self.buffers, key=lambda b: (b.offset, b.first)):
            for value in buffer.values:
                rows.append(self._row(value, names, f"{buffer.offset}", f"{buffer.first}..{buffer.last}"))
        for view in self.view_of:
            home = self.locations[view].home
            if home is not Home.ARENA:
                rows.append(self._row(view, names, f"({home.value})", ""))
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in [header, *rows]]
        ratio = self.arena_bytes / self.lower_bound if self.lower_bound else 1.0
        lines.append(f"arena {self.arena_bytes} bytes, lower bound {self.lower_bound} bytes, "
                     f"ratio {ratio:.3f}")
        return "\n".join(lines)

    def _row(self, value: Value, names: dict[Value, str], offset: str, kernels: str) -> tuple:
        node = value.producer
        op = "(step input)" if node is None else node.op + (f" ({node.loc})" if node.loc else "")
        shares = ""
        if value in self.view_of:
            shares = f"view of {names[self.view_of[value]]}"
        elif value in self.inplace_of:
            shares = f"in-place of {names[self.inplace_of[value]]}"
        return (names[value], op, str(value.type), nbytes(value, self.env), offset, kernels, shares)


def value_names(graph: Graph, prefix: str = "") -> dict[Value, str]:
    """Values named as the IR text names them: `%input`, `%N`, `%N#i` (N = node index); the
    values of a program region as `%N/body:%M`."""
    names = {v: f"{prefix}%{v.name}" for v in graph.inputs}
    for number, node in enumerate(graph.nodes):
        for v in node.outputs:
            names[v] = f"{prefix}%{number}" if len(node.outputs) == 1 else f"{prefix}%{number}#{v.index}"
        if has_region(node, Region.PROGRAM):
            for region in regions_of(node):
                names.update(value_names(region, f"{prefix}%{number}/{region.name}:"))
    return names


def nbytes(value: Value, env: Mapping[str, int]) -> int:
    """Bytes of `value` with its symbolic dimensions bound by `env`."""
    return math.prod(shape_of(value, env)) * value.type.dtype.itemsize


# --- what this machine can hold -------------------------------------------------------------------

@functools.cache
def machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(plan: MemoryPlan, memory: int | None = None) -> None:
    """Refuse, before anything is allocated, a run at the plan's sizes that needs more than
    `memory` bytes (default: this machine's): a single value that large, or the inputs,
    parameters, arena and outputs together. Values inside fused bodies count too: fusion only
    spares storing them, and whether a graph runs must not depend on what fusion chose (nor
    may a loop over more elements than memory holds run for hours)."""
    memory = machine_memory() if memory is None else memory
    where = f"graph {plan.graph.name!r} at sizes {plan.env}"
    limit = f"more than this machine's memory ({_shown(memory)})"
    labels = dict(_every_value(plan.graph, value_names(plan.graph)))
    for value, label in labels.items():
        if nbytes(value, plan.env) > memory:
            raise SizeError(f"{where}: {label} needs {_shown(nbytes(value, plan.env))}, {limit}")
    roots = {loc.root for loc in plan.locations.values() if loc.home is not Home.ARENA}
    parts = [(nbytes(v, plan.env), label) for v, label in labels.items() if v in roots]
    parts.append((plan.arena_bytes, "the arena"))
    total = sum(size for size, _ in parts)
    if total > memory:
        size, label = max(parts, key=lambda part: part[0])
        raise SizeError(f"{where}: the inputs, parameters, arena and outputs need {_shown(total)} "
                        f"together, {limit}; the largest is {label}, {_shown(size)}")


def _every_value(graph: Graph, names: dict[Value, str]) -> Iterator[tuple[Value, str]]:
    """Every value of `graph` and of the regions of its nodes, with its label in messages."""
    yield from ((v, f"input %{v.name} ({v.type})") for v in graph.inputs)
    for node in graph.nodes:
        for v in node.outputs:
            yield v, f"{names[v]} ({node.describe()}, {v.type})"
        for region in (node.attrs[k] for k in region_names(node.op)):
            outer = names[node.outputs[0]].split("#")[0]
            for v, label in _every_value(region, value_names(region)):
                yield v, f"{label} in the {region.name} of {outer}"


def _shown(size: int) -> str:
    return f"{size / 2**30:.3g} GiB ({size} bytes)"


def is_view(node: Node, graph_outputs: set[Value]) -> bool:
    """A reshape is a view unless its result is a graph output (which the kernel must write)."""
    return node.op == "reshape" and node.outputs[0] not in graph_outputs


def is_elementwise_safe(node: Node) -> bool:
    """Kernels that read each element of an operand only to write the same element of the
    result, so the result may overwrite a same-shaped operand."""
    opdef = get_op(node.op)
    if opdef.region is Region.KERNEL:
        return opdef.extra["elementwise_when"](node)
    return opdef.fusion is Fusion.ELEMENTWISE


def plan_memory(graph: Graph, env: Mapping[str, int], alignment: int = 64) -> MemoryPlan:
    """Lay out every intermediate value of `graph` (in its node order) in one arena.

    `env` binds the symbolic dimensions to sizes; every offset is a multiple of `alignment`.
    """
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment < 1:
        raise IRError(f"plan_memory: alignment must be an int >= 1 (bytes), got {alignment!r}")
    for symbol, size in env.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ShapeError(f"plan_memory: size of symbol {symbol!r} must be an int >= 0, got {size!r}")
    env = dict(env)
    state = _assign(graph, graph.nodes, env)
    lower = _peak(state.buffers, state.kernels)
    arena = _place(state.buffers, alignment)
    offsets = {v: b.offset for b in state.buffers for v in b.values}
    locations = {v: Location(loc.home, loc.root, offsets.get(loc.root, 0))
                 for v, loc in state.locations.items()}
    return MemoryPlan(graph, env, alignment, state.buffers, locations, state.view_of,
                      state.inplace_of, offsets, arena, lower)


def peak_live_bytes(graph: Graph, env: Mapping[str, int], nodes: Sequence[Node] | None = None) -> int:
    """The lower bound of the arena if the kernels ran in the order `nodes` (default: the graph's)."""
    nodes = graph.nodes if nodes is None else list(nodes)
    state = _assign(graph, nodes, dict(env))
    return _peak(state.buffers, state.kernels)


# --- assignment: which buffer each value lives in -----------------------------------------------

@dataclass
class _State:
    buffers: list[Buffer]
    locations: dict[Value, Location]   # offsets filled in after placement
    view_of: dict[Value, Value]
    inplace_of: dict[Value, Value]
    kernels: int = 0                   # positions in the walk, program regions' kernels included
    written_into: dict[Value, Value] = field(default_factory=dict)   # body result -> outer value


@dataclass
class _Enter:
    """The start of a program region: where its inputs and some results live (RegionMemory);
    `outputs` are its inputs that get buffers of their own."""

    memory: RegionMemory
    inputs: tuple = ()

    @property
    def outputs(self) -> list[Value]:
        return self.memory.own
    op: str = "(enter)"

    def describe(self) -> str:
        return "the start of a program region"


@dataclass
class _Leave:
    """The end of a program region's loop: what every step reads until the loop ends."""

    inputs: list[Value]
    outputs: tuple = ()
    op: str = "(leave)"

    def describe(self) -> str:
        return "the end of a program region"


def _walk(nodes: Sequence[Node]) -> list:
    """The kernels in the order they run, program regions in line (see the module doc)."""
    out: list = []
    for node in nodes:
        out.append(node)
        if not has_region(node, Region.PROGRAM):
            continue
        for region, memory in zip(regions_of(node), get_op(node.op).extra["program_memory"](node)):
            out.append(_Enter(memory))
            out += _walk(region.nodes)
            kept = [*region.outputs, *node.inputs, *node.outputs]
            if memory.concurrent:
                kept += [v for inner in region.nodes for v in inner.outputs]
            out.append(_Leave(kept))
    return out


def _assign(graph: Graph, nodes: Sequence[Node], env: dict[str, int]) -> _State:
    """Walk the kernels in order: views join their source, results join a dying operand's
    buffer when they may, other results open a new buffer."""
    outputs = set(graph.outputs)
    nodes = _walk(nodes)
    last = _last_uses(nodes)
    state = _State([], {}, {}, {}, len(nodes))
    locations = state.locations
    for v in graph.inputs:
        locations[v] = Location(Home.PARAM if v.is_param else Home.INPUT, v)
    buffer_of: dict[Value, Buffer] = {}
    for i, node in enumerate(nodes):
        if isinstance(node, _Enter):
            _enter(node, i, state, buffer_of, last, env)
            continue
        for v in node.inputs:
            if v not in locations:
                raise IRError(f"graph {graph.name!r}: {node.describe()} (kernel {i}) reads {v!r}, "
                              f"which no earlier kernel or graph input defines")
        if is_view(node, outputs):
            source, result = node.inputs[0], node.outputs[0]
            locations[result] = locations[source]
            state.view_of[result] = source
            if source in buffer_of:
                _join(buffer_of, buffer_of[source], result, last)
            continue
        taken: set[int] = set()
        for result in node.outputs:
            if result in outputs:
                locations[result] = Location(Home.OUTPUT, result)
                continue
            if result in state.written_into:
                outer = state.written_into[result]
                locations[result] = locations[outer]
                if outer in buffer_of:
                    _join(buffer_of, buffer_of[outer], result, last)
                continue
            size = nbytes(result, env)
            operand = _inplace_operand(node, result, size, i, buffer_of, taken)
            if operand is not None:
                buffer = buffer_of[operand]
                taken.add(id(buffer))
                state.inplace_of[result] = operand
                _join(buffer_of, buffer, result, last)
                locations[result] = Location(Home.ARENA, buffer.values[0])
                continue
            buffer = Buffer([result], size, i, last.get(result, i))
            state.buffers.append(buffer)
            buffer_of[result] = buffer
            locations[result] = Location(Home.ARENA, result)
    return state


def _enter(enter: _Enter, index: int, state: _State, buffer_of: dict[Value, Buffer],
           last: dict[Value, int], env: dict[str, int]) -> None:
    for inner, outer in enter.memory.shares:
        state.locations[inner] = state.locations[outer]
        if outer in buffer_of:
            _join(buffer_of, buffer_of[outer], inner, last)
    state.written_into.update(enter.memory.results_in)
    for value in enter.outputs:
        buffer = Buffer([value], nbytes(value, env), index, last.get(value, index))
        state.buffers.append(buffer)
        buffer_of[value] = buffer
        state.locations[value] = Location(Home.ARENA, value)


def _last_uses(nodes: Sequence[Node]) -> dict[Value, int]:
    """Index of the last kernel reading each value. Reads through a view need no extra care: the
    reshape itself reads its source, so the buffer is live when the view joins and extends it."""
    last: dict[Value, int] = {}
    for i, node in enumerate(nodes):
        for v in node.inputs:
            last[v] = i
    return last


def _join(buffer_of: dict[Value, Buffer], buffer: Buffer, value: Value, last: dict[Value, int]) -> None:
    buffer.values.append(value)
    buffer.last = max(buffer.last, last.get(value, buffer.last))
    buffer_of[value] = buffer


def _inplace_operand(node: Node, result: Value, size: int, index: int, buffer_of: dict[Value, Buffer],
                     taken: set[int]) -> Value | None:
    """The first operand whose arena buffer `result` may take at kernel `index`, if any."""
    if not is_elementwise_safe(node):
        return None
    for operand in node.inputs:
        buffer = buffer_of.get(operand)
        # Another operand reading this buffer is a view of it with as many elements, so it can
        # broadcast to the result's shape only by leading 1s: each element is read in place.
        if (buffer is not None and id(buffer) not in taken and buffer.last == index
                and buffer.size == size and operand.type.shape == result.type.shape):
            return operand
    return None


# --- the lower bound and placement ------------------------------------------------------------

def _peak(buffers: Sequence[Buffer], kernels: int) -> int:
    """The largest sum of sizes of the buffers live at one kernel."""
    delta = [0] * (kernels + 1)
    for b in buffers:
        delta[b.first] += b.size
        delta[b.last + 1] -= b.size
    peak = live = 0
    for change in delta:
        live += change
        peak = max(peak, live)
    return peak


def _place(buffers: Sequence[Buffer], alignment: int) -> int:
    """Best-fit offsets, largest buffer first; returns the arena size in bytes."""
    placed: list[Buffer] = []       # sorted by offset
    keys: list[int] = []
    arena = 0
    for buffer in sorted(buffers, key=lambda b: (-b.size, b.first)):
        if buffer.size == 0:
            buffer.offset = 0       # no bytes, so no conflict; still a valid aligned offset
            continue
        buffer.offset = _best_fit(buffer, placed, alignment)
        at = bisect.bisect_right(keys, buffer.offset)
        keys.insert(at, buffer.offset)
        placed.insert(at, buffer)
        arena = max(arena, buffer.offset + buffer.size)
    return arena


def _best_fit(buffer: Buffer, placed: Sequence[Buffer], alignment: int) -> int:
    """The aligned start of the smallest gap among overlapping buffers that fits, else the end."""
    best, best_gap = None, math.inf
    cursor = 0
    for other in placed:
        if not buffer.overlaps(other):
            continue
        start = -(-cursor // alignment) * alignment
        gap = other.offset - start
        if buffer.size <= gap < best_gap:
            best, best_gap = start, gap
        cursor = max(cursor, other.offset + other.size)
    return best if best is not None else -(-cursor // alignment) * alignment
