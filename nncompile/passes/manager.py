"""The pass registry and the pass manager: run a named pipeline, verify, time, and dump the IR.

A pass is a function `Graph -> Graph` registered by name with `register_pass`. It may mutate
its argument and return it, or return a new graph. `PassManager` runs a list of passes by name,
verifies the graph before the first pass and after each one, times every pass, and can dump the
IR text after every pass, after named passes, or only after passes that changed the graph
(like MLIR's `-mlir-print-ir-after-all` and XLA's `--xla_dump_to`).

A pass sees one graph. The regions that are programs (the body of `scan`, Region.PROGRAM) are
graphs the op runs, so the manager runs each pass on them too, innermost last, after the graph
holding them; regions that are one kernel's inside (`fused`) are left alone.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nncompile import phases
from nncompile.ir.errors import IRError, VerifyError
from nncompile.ir.graph import Graph, Value
from nncompile.ir.optable import AttrKind, Region, get_op, has_region
from nncompile.ir.verifier import verify

PassFn = Callable[[Graph], Graph]


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: PassFn
    doc: str


PASSES: dict[str, PassInfo] = {}


def register_pass(name: str, *, doc: str) -> Callable[[PassFn], PassFn]:
    """Decorator registering `fn` as the pass `name`; the function is returned unchanged."""
    def register(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise IRError(f"pass {name!r} is registered twice")
        PASSES[name] = PassInfo(name, fn, doc)
        return fn
    return register


@dataclass(frozen=True)
class PassStat:
    """What one pass did in the last run: its time and the node counts around it."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    changed: bool


class PassManager:
    """Runs registered passes by name, in order.

    verify: verify after each pass too (None: when NNCOMPILE_VERIFY is "1"). The graph given
        to `run` is always verified: no pass or code generator ever sees an invalid graph.
    dump_dir: write `NNN-name.nnir` files there (None: NNCOMPILE_DUMP_DIR if set). With a dump
        dir and no selection, every pass is dumped; without one, selected passes print to stderr.
    print_after: "all" or the names of the passes to dump after.
    print_changed: dump only after passes that changed the graph.
    """

    def __init__(self, passes: Sequence[str] | str, *, verify: bool | None = None,
                 dump_dir: str | None = None, print_after: Sequence[str] | str = (),
                 print_changed: bool = False):
        self.passes = [passes] if isinstance(passes, str) else list(passes)
        self._infos = [_lookup(name) for name in self.passes]
        self.verify = os.environ.get("NNCOMPILE_VERIFY") == "1" if verify is None else verify
        if dump_dir is None:
            dump_dir = os.environ.get("NNCOMPILE_DUMP_DIR") or None
        self.dump_dir = dump_dir
        self.print_changed = print_changed
        self._print_after = self._selection(print_after)
        self.stats: list[PassStat] = []

    def _selection(self, print_after: Sequence[str] | str) -> set[str]:
        """The names of the passes to dump after (before filtering by print_changed)."""
        names = [print_after] if isinstance(print_after, str) else list(print_after)
        if names == ["all"] or (not names and (self.dump_dir or self.print_changed)):
            return set(self.passes)
        unknown = [n for n in names if n not in self.passes]
        if unknown:
            raise IRError(f"cannot print after pass {unknown[0]!r}: it is not in the pipeline; "
                          f"pipeline: {', '.join(self.passes)} (or 'all')")
        return set(names)

    @property
    def timings(self) -> list[tuple[str, float]]:
        """Seconds spent in each pass of the last run, in order."""
        return [(s.name, s.seconds) for s in self.stats]

    @phases.timed("passes")
    def run(self, graph: Graph) -> Graph:
        """Run the pipeline on `graph`; returns the last pass's result."""
        self.stats = []
        _verify(graph, "before the first pass")
        if self.dump_dir:
            self._write(0, "input", f"// input ({len(graph.nodes)} nodes)", graph)
        for index, info in enumerate(self._infos, start=1):
            graph = self._run_one(index, info, graph)
        return graph

    def _run_one(self, index: int, info: PassInfo, graph: Graph) -> Graph:
        name = info.name
        before, nodes_before = _fingerprint(graph), len(graph.nodes)
        start = time.perf_counter()
        result = run_with_programs(info, graph)
        seconds = time.perf_counter() - start
        changed = _fingerprint(result) != before
        self.stats.append(PassStat(name, seconds, nodes_before, len(result.nodes), changed))
        if self.verify:
            _verify(result, f"after pass {name!r}")
        if name in self._print_after and (changed or not self.print_changed):
            header = f"// after pass {name!r} ({len(result.nodes)} nodes, {seconds * 1e3:.2f} ms)"
            self._write(index, name, header, result)
        return result

    def _write(self, index: int, name: str, header: str, graph: Graph) -> None:
        text = f"{header}\n{graph}\n"
        if not self.dump_dir:
            sys.stderr.write(text)
            return
        os.makedirs(self.dump_dir, exist_ok=True)
        path = os.path.join(self.dump_dir, f"{index:03d}-{name}.nnir")
        # Write then rename so a reader never sees a half-written dump.
        fd, tmp = tempfile.mkstemp(dir=self.dump_dir, prefix=f".{index:03d}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def report(self) -> str:
        """A table of the last run: pass, time, node counts before -> after, changed."""
        rows = [(s.name, f"{s.seconds * 1e3:.2f}", f"{s.nodes_before} -> {s.nodes_after}",
                 "yes" if s.changed else "no") for s in self.stats]
        total = sum(s.seconds for s in self.stats) * 1e3
        rows.append(("total", f"{total:.2f}", "", ""))
        header = ("pass", "time ms", "nodes", "changed")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines = []
        for row in [header, *rows]:
            cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                     row[2].ljust(widths[2]), row[3].ljust(widths[3])]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def run_with_programs(info: PassInfo, graph: Graph) -> Graph:
    """Run the pass on `graph`, then on every program region of its nodes (recursively)."""
    result = info.fn(graph)
    if not isinstance(result, Graph):
        raise IRError(f"pass {info.name!r} returned {type(result).__name__}; expected a Graph")
    for node in result.nodes:
        if has_region(node, Region.PROGRAM):
            specs = get_op(node.op).attrs
            for key in sorted(k for k, spec in specs.items() if spec.kind is AttrKind.GRAPH):
                node.attrs[key] = run_with_programs(info, node.attrs[key])
    return result


def run_pipeline(graph: Graph, passes: Sequence[str] | str, **options) -> Graph:
    """Run `passes` on `graph` with a PassManager built from `options`."""
    return PassManager(passes, **options).run(graph)


def _lookup(name: str) -> PassInfo:
    try:
        return PASSES[name]
    except (KeyError, TypeError):
        raise IRError(f"unknown pass {name!r}; valid passes: {', '.join(sorted(PASSES))}") from None


def _verify(graph: Graph, when: str) -> None:
    try:
        verify(graph)
    except VerifyError as e:
        raise VerifyError(f"{when}: {e}") from None


def _fingerprint(graph: Graph) -> tuple:
    """A comparable summary of the graph's structure: equal exactly when the graphs are.

    Values are numbered by first appearance so that a rebuilt but identical graph compares equal.
    """
    ids: dict[Value, int] = {}

    def ref(v: Value) -> int:
        return ids.setdefault(v, len(ids))

    inputs = tuple((v.name, str(v.type), v.is_param, ref(v)) for v in graph.inputs)
    nodes = tuple((n.op, n.loc, tuple(ref(v) for v in n.inputs),
                   tuple(sorted((k, _attr_key(a)) for k, a in n.attrs.items())),
                   tuple((str(v.type), ref(v)) for v in n.outputs)) for n in graph.nodes)
    outputs = tuple(zip(graph.output_names, (ref(v) for v in graph.outputs)))
    return graph.name, inputs, nodes, outputs, tuple(sorted(graph.updates.items()))


def _attr_key(value) -> tuple:
    if isinstance(value, Graph):
        return ("Graph", _fingerprint(value))
    if isinstance(value, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).hexdigest()
        return ("ndarray", value.dtype.str, value.shape, digest)
    return (type(value).__name__, repr(value))
