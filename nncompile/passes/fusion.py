"""Operator fusion ("fuse"): group nodes into `fused` nodes, TVM/XLA style, by op-table fusion kind.

The result holds plain nodes and `fused` nodes whose bodies keep the contracts of
`nncompile/ir/ops/fused.py`. The rules, in the order the pass applies them:

1. Anchor groups ("matmul", "conv2d", "max_pool2d", "avg_pool2d"), in graph order. A matmul
   contracting the rows of two stacks of matrices (transpose_a; one batch shape) whose only
   reader sums over the batch axes takes that reduce_sum instead of an epilogue (the weight
   gradient of a Dense or recurrent layer on sequences: one product over all rows). Each anchor op
   starts a chain; the chain grows by the sole consumer of its running value while that consumer
   is an ELEMENTWISE op (not a constant) reading the running value exactly once and keeping the
   anchor's result shape, and the running value is not a graph output. Its other operands become
   group inputs (small constants are copied in). The chain stops at a value with several users,
   which becomes the group's one output, and at a consumer an earlier chain already took (two
   chains whose results meet only in one node, e.g. sub(dense(a), dense(b)): the earlier chain
   gets it, the later one's result becomes its input), so that chains never share a node.
2. Loop and reduction groups, rooted in reverse graph order at each ungrouped elementwise/broadcast
   op or reduce_* op. A root pulls in producers, latest first, but only a producer whose every
   consumer is already in the group and whose result is not a graph output, so no value is
   materialized for the group's sake and no group reads another group's middle. Pulled in:
   - on the root's index space S: elementwise/broadcast ops whose result has shape S exactly
     (smaller results, e.g. parameter-only math like rsqrt(variance), stay out rather than be
     recomputed at every element of S); and, once per group, a reduce_* op whose result has shape
     S, which makes the group a "reduction" with everything on S as its epilogue;
   - in a group without a reduction, slices along static axes whose result has shape S and whose
     input does not: the loop reads the slice in place (a recurrent cell's gates, each a block of
     columns of one product), and the sliced value stays an operand;
   - feeding the reduction (the prologue): elementwise/broadcast ops whose result has the
     reduction input's shape and whose consumers are all in the prologue or the reduction.
   argmax/argmin, softmax/log_softmax, other injective ops (reshape, transpose, concat, pad,
   gather, other slices), reductions not pulled into a group, and anything multi-result stay
   plain nodes here (rule 3 may still merge a concat with the loops computing its pieces).
3. Multi-output loops: a loop group (or lone elementwise/broadcast op) whose results are read only
   by loop groups or lone elementwise ops of the same shape merges with all of them when that
   creates no cycle between groups; its results are then computed in the same loop as their
   readers, and a merged group returns every result that is read outside it or is a graph output.
   This is how an op with several consumers is handled: it heads its own group (its result a group
   output) unless every consumer is a same-shaped loop, in which case it joins them. A concat of
   values of one shape S along an axis of static size counts as a loop on S here (stored piece by
   piece, `is_loop_concat`): the loops computing its pieces merge into it, so their results are
   written where the concat puts them (a recurrent cell's gate gradients, one product's operand);
   alone it stays a plain node.
4. Constants of at most SMALL_CONSTANT elements read by an elementwise/broadcast member are
   copied into the body (before their first use); a constant node stays in the graph only while
   something outside a body reads it.
5. A group of one op (constants not counted) stays a plain node, as does a group without operands,
   a dead group (no result read), or one whose body would use a symbolic dimension that no
   operand's type carries. Dead nodes inside a live loop group are dropped with it (DCE's job).

Why no cycle between groups: the groups of rules 1 and 2 are disjoint, each is left only through
one node (its root, its chain's end) that every member reaches, so a cycle between them would be
one in the graph; rule 3 merges only after checking that no path leaves the merged set and comes
back; rule 5 only splits groups into single nodes.

A fused node's loc is its first non-constant body node's (the anchor for anchored kinds). Body
inputs are named arg0, arg1, ... in order of first use; the nodes keep their locs.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from nncompile.ir.dims import symbols_of
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.fused import (ANCHOR_KINDS, REDUCE_OPS, is_loop_concat, is_pointwise, is_row_sum,
                                    is_static_slice)
from nncompile.ir.optable import OPS, Fusion, get_op, infer_types
from nncompile.ir.types import Shape
from nncompile.passes.manager import register_pass

SMALL_CONSTANT = 64   # elements: constants up to this size are copied into the bodies that read them

_PRE, _REDUCE, _POST = "prologue", "reduction", "post"   # where a member runs in its group


@dataclass(eq=False)
class _Group:
    kind: str
    members: list[Node]                               # non-constant nodes, in body order
    constants: set[Node] = field(default_factory=set)  # copied into the body


class _Uses:
    """Who reads each node's results: consumer nodes (once per read) and graph outputs."""

    def __init__(self, graph: Graph):
        self.index = {node: i for i, node in enumerate(graph.nodes)}
        self.consumers: dict[Node, list[Node]] = {node: [] for node in graph.nodes}
        for node in graph.nodes:
            for v in node.inputs:
                if v.producer is not None:
                    self.consumers[v.producer].append(node)
        self.escapes = {v.producer for v in graph.outputs if v.producer is not None}


def _shape(node: Node) -> Shape:
    return node.outputs[0].type.shape


def _single(node: Node) -> bool:
    return len(node.outputs) == 1


def _is_small_constant(node: Node | None) -> bool:
    return node is not None and node.op == "constant" and node.attrs["value"].size <= SMALL_CONSTANT


# --- 1. anchors and their epilogues ---------------------------------------------------------------

def _epilogue_step(last: Node, uses: _Uses, anchor: Node, taken: set[Node]) -> Node | None:
    """The consumer that extends an anchor chain ending at `last`, if there is one. The anchor
    accumulates in the group's output, so an epilogue must keep the anchor's shape and dtype."""
    readers = uses.consumers[last]
    if last in uses.escapes or len(readers) != 1:
        return None
    (user,) = readers
    ok = (user not in taken and _single(user) and user.op != "constant"
          and OPS[user.op].fusion is Fusion.ELEMENTWISE
          and user.inputs.count(last.outputs[0]) == 1 and _shape(user) == _shape(anchor)
          and user.outputs[0].type.dtype == anchor.outputs[0].type.dtype)
    return user if ok else None


def _row_sum(node: Node, uses: _Uses) -> Node | None:
    """The reduce_sum over all batch axes that is the sole reader of a matmul contracting its
    operands' rows (transpose_a, both of one batch shape): one product over every row."""
    readers = uses.consumers[node]
    if node in uses.escapes or len(readers) != 1:
        return None
    (user,) = readers
    return user if is_row_sum(node, user) else None


def _anchor_groups(graph: Graph, uses: _Uses) -> list[_Group]:
    """Rule 1. Each chain leaves only through its last node and every member reaches it, so
    disjoint chains cannot form a cycle; a node in two chains would (each needs the other)."""
    groups, taken = [], set()
    for node in graph.nodes:
        if node.op == "matmul" and (total := _row_sum(node, uses)) is not None and total not in taken:
            taken.update((node, total))
            groups.append(_Group("matmul", [node, total]))
        elif node.op in ANCHOR_KINDS:
            chain = [node]
            while (step := _epilogue_step(chain[-1], uses, node, taken)) is not None:
                chain.append(step)
            taken.update(chain)
            groups.append(_Group(node.op, chain))
    return groups


# --- 2. loops and reductions, grown from their roots ------------------------------------------------

def _can_root(node: Node) -> bool:
    return _single(node) and (is_pointwise(node) or node.op in REDUCE_OPS)


def _grow(root: Node, uses: _Uses, taken: set[Node]) -> _Group:
    """The group rooted at `root`: producers pulled in latest first (see rule 2)."""
    space = {root: _REDUCE if root.op in REDUCE_OPS else _POST}
    reduction = root if root.op in REDUCE_OPS else None
    heap: list[int] = []

    def push_producers(node: Node) -> None:
        for v in node.inputs:
            if v.producer is not None:
                heapq.heappush(heap, -uses.index[v.producer])

    push_producers(root)
    nodes = list(uses.index)
    while heap:
        node = nodes[-heapq.heappop(heap)]
        if node in space or node in taken or not _single(node) or node in uses.escapes:
            continue
        readers = uses.consumers[node]
        if any(r not in space for r in readers):
            continue
        sides = {_POST if space[r] == _POST else _PRE for r in readers}
        if len(sides) != 1:
            continue
        side = sides.pop()
        if side == _PRE and is_pointwise(node) and _shape(node) == reduction.inputs[0].type.shape:
            space[node] = _PRE
        elif side == _POST and is_pointwise(node) and _shape(node) == _shape(root):
            space[node] = _POST
        elif (side == _POST and reduction is None and node.op in REDUCE_OPS and _shape(node) == _shape(root)
              and node.outputs[0].type.dtype == root.outputs[0].type.dtype
              and not any(n.op == "slice" for n in space)):
            # The reduction accumulates in the group's one output, so that output keeps its dtype.
            reduction = node
            space[node] = _REDUCE
        elif (side == _POST and reduction is None and is_static_slice(node) and _shape(node) == _shape(root)
              and node.inputs[0].type.shape != _shape(root)):
            space[node] = _POST
            continue   # its input is read in place: an operand, never a member
        else:
            continue
        push_producers(node)
    order = {_PRE: 0, _REDUCE: 1, _POST: 2}
    members = sorted(space, key=lambda n: (order[space[n]], uses.index[n]))
    return _Group("reduction" if reduction is not None else "loop", members)


def _rooted_groups(graph: Graph, uses: _Uses, taken: set[Node]) -> list[_Group]:
    groups = []
    for node in reversed(graph.nodes):
        if node not in taken and _can_root(node):
            group = _grow(node, uses, taken)
            taken.update(group.members)
            groups.append(group)
    return groups


# --- 3. multi-output loops ------------------------------------------------------------------------

class _Partition:
    """Every non-constant node's unit: its group, or a group of its own while it stands alone."""

    def __init__(self, graph: Graph, uses: _Uses, groups: list[_Group]):
        self.uses = uses
        self.unit: dict[Node, _Group] = {}
        for group in groups:
            for node in group.members:
                if node in self.unit:   # it would be emitted twice, or tie the groups in a cycle
                    raise ShapeError(f"fusion put {node.describe()} in two groups (a bug in the fusion pass)")
                self.unit[node] = group
        for node in graph.nodes:
            if node not in self.unit and node.op != "constant":
                loop = is_pointwise(node) and _single(node) or is_loop_concat(node)
                self.unit[node] = _Group("loop" if loop else "plain", [node])

    def groups(self) -> list[_Group]:
        return list(dict.fromkeys(self.unit.values()))

    def readers(self, group: _Group) -> set[_Group]:
        """The other units that read a result of `group`."""
        found = {self.unit[r] for n in group.members for r in self.uses.consumers[n] if r in self.unit}
        found.discard(group)
        return found

    def closes_cycle(self, merged: list[_Group]) -> bool:
        """Whether some unit outside `merged` is reachable from it and reaches back into it."""
        inside = set(merged)
        seen: set[_Group] = set()
        frontier = [r for g in merged for r in self.readers(g) if r not in inside]
        while frontier:
            group = frontier.pop()
            if group in seen:
                continue
            seen.add(group)
            for r in self.readers(group):
                if r in inside:
                    return True
                frontier.append(r)
        return False

    def merge(self, merged: list[_Group]) -> _Group:
        members = sorted((n for g in merged for n in g.members), key=self.uses.index.__getitem__)
        group = _Group("loop", members)
        for node in members:
            self.unit[node] = group
        return group


def _merge_loops(partition: _Partition) -> None:
    def loop_shape(group: _Group) -> Shape | None:
        if group.kind != "loop":
            return None
        computed = [n for n in group.members if n.op != "concat"]
        return _shape(computed[-1]) if computed else group.members[0].inputs[0].type.shape

    pending = sorted(partition.groups(), key=lambda g: partition.uses.index[g.members[0]])
    while pending:
        group = pending.pop(0)
        if partition.unit[group.members[0]] is not group or loop_shape(group) is None:
            continue
        readers = partition.readers(group)
        if not readers or any(loop_shape(r) != loop_shape(group) for r in readers):
            continue
        merged = [group, *readers]
        if not partition.closes_cycle(merged) and not _reads_a_concat(merged):
            pending.insert(0, partition.merge(merged))


def _reads_a_concat(groups: list[_Group]) -> bool:
    """Whether a member of `groups` reads a concat among them (through a slice: the concat is
    stored piece by piece, so its loop never holds the whole of it)."""
    stored = {n.outputs[0] for g in groups for n in g.members if n.op == "concat"}
    return any(v in stored for g in groups for n in g.members for v in n.inputs)


# --- 4, 5. bodies and the new graph ---------------------------------------------------------------

def _absorb_constants(group: _Group) -> None:
    group.constants = {v.producer for node in group.members if is_pointwise(node)
                       for v in node.inputs if _is_small_constant(v.producer)}


def _outputs(group: _Group, uses: _Uses) -> list[Value]:
    inside = set(group.members)
    return [node.outputs[0] for node in group.members
            if node in uses.escapes or any(r not in inside for r in uses.consumers[node])]


def _operands(group: _Group) -> list[Value]:
    inside = set(group.members) | group.constants
    seen: dict[Value, None] = {}
    for node in group.members:
        for v in node.inputs:
            if v.producer not in inside:
                seen.setdefault(v)
    return list(seen)


def _runnable(group: _Group, uses: _Uses) -> bool:
    """Rule 5: worth a fused node (not dead), and its body binds every symbol from its operands."""
    operands = _operands(group)
    bound = {s for v in operands for d in v.type.shape for s in symbols_of(d)}
    used = {s for n in group.members for d in _shape(n) for s in symbols_of(d)}
    return len(group.members) > 1 and bool(operands) and used <= bound and bool(_outputs(group, uses))


def _build_fused(group: _Group, uses: _Uses, outer: dict[Value, Value]) -> Node:
    body = Graph("body")
    inner: dict[Value, Value] = {}
    operands = _operands(group)
    for i, v in enumerate(operands):
        inner[v] = body.add_input(f"arg{i}", v.type)
    for node in group.members:
        for v in node.inputs:
            if v not in inner:     # a copied constant, placed before its first reader
                copy = body.append(Node("constant", [], v.producer.attrs, [v.type], v.producer.loc))
                inner[v] = copy.outputs[0]
        copy = body.append(Node(node.op, [inner[v] for v in node.inputs], node.attrs,
                                [v.type for v in node.outputs], node.loc))
        inner.update(zip(node.outputs, copy.outputs))
    results = _outputs(group, uses)
    body.set_outputs([inner[v] for v in results])
    attrs = {"kind": group.kind, "body": body}
    where = f"fused group at {group.members[0].describe()}"
    types = infer_types(get_op("fused"), [v.type for v in operands], attrs, where)
    fused = Node("fused", [outer[v] for v in operands], attrs, types, group.members[0].loc)
    outer.update(zip(results, fused.outputs))
    return fused


def _schedule(units: list[_Group], uses: _Uses) -> list[_Group]:
    """Units in a topological order, each as close to its last member's old place as it can be."""
    unit_of = {node: u for u in units for node in u.members}
    needs = {u: {unit_of[v.producer] for n in u.members for v in n.inputs
                 if v.producer in unit_of and unit_of[v.producer] is not u
                 and v.producer not in u.constants} for u in units}
    readers: dict[_Group, list[_Group]] = {u: [] for u in units}
    for u, deps in needs.items():
        for d in deps:
            readers[d].append(u)
    waiting = {u: len(deps) for u, deps in needs.items()}
    position = {u: uses.index[u.members[-1]] for u in units}   # unique: units share no node
    number = {u: i for i, u in enumerate(units)}
    ready = [(position[u], number[u]) for u in units if waiting[u] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(units[i])
        for r in readers[units[i]]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, (position[r], number[r]))
    if len(order) != len(units):
        raise ShapeError("fusion formed a cycle between groups (a bug in the fusion pass)")
    return order


def _partition(graph: Graph, uses: _Uses) -> list[_Group]:
    """The final units: fused groups and plain nodes (as groups of kind "plain")."""
    groups = _anchor_groups(graph, uses)
    taken = {node for g in groups for node in g.members}
    partition = _Partition(graph, uses, groups + _rooted_groups(graph, uses, taken))
    _merge_loops(partition)
    units = []
    for group in partition.groups():
        _absorb_constants(group)
        if group.kind != "plain" and _runnable(group, uses):
            units.append(group)
        else:
            units += [_Group("plain", [node]) for node in group.members]
    copied_only = {c for u in units if u.kind != "plain" for c in u.constants}
    plain_readers = {v.producer for u in units for n in u.members for v in n.inputs
                     if v.producer is not None and v.producer not in u.constants}
    for node in graph.nodes:
        if node.op == "constant" and (node in plain_readers or node in uses.escapes
                                      or node not in copied_only):
            units.append(_Group("plain", [node]))
    return units


@register_pass("fuse", doc="Group elementwise chains, reductions and matmul/conv/pool epilogues "
                           "into fused nodes.")
def fuse(graph: Graph) -> Graph:
    """A new graph of plain and `fused` nodes computing what `graph` computes (rules above)."""
    uses = _Uses(graph)
    result = Graph(graph.name)
    outer: dict[Value, Value] = {}
    for v in graph.inputs:
        outer[v] = result.add_input(v.name, v.type, param=v.is_param)
    for unit in _schedule(_partition(graph, uses), uses):
        if unit.kind == "plain":
            (node,) = unit.members
            copy = Node(node.op, [outer[v] for v in node.inputs], node.attrs,
                        [v.type for v in node.outputs], node.loc)
            outer.update(zip(node.outputs, copy.outputs))
            result.append(copy)
        else:
            result.append(_build_fused(unit, uses, outer))
    result.set_outputs([outer[v] for v in graph.outputs], graph.output_names)
    result.updates = dict(graph.updates)
    result.params = dict(graph.params)
    return result
