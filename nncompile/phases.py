"""Where compile time goes: each phase is timed where it runs, and added up for whoever asks.

    with phases.recorded() as times:        # {phase: Spent}, for compiles in this thread
        model.fit(x, y)
    print(phases.table(times))

The sites say `with phases.timed("passes"): ...`, or `phases.add(...)` for time spent elsewhere
(the LLVM worker measures its own). A phase opened inside another is taken out of the outer
one, so the phases of a compile never count a second twice and add up to the time they cover.
Timing costs two clock reads per phase, so it is always on.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Iterator

# The phases in pipeline order (a table lists them so; a phase not listed here goes last).
ORDER = ("trace", "passes", "plan", "LLVM IR", "LLVM worker", "LLVM parse", "LLVM optimisation",
         "machine code", "disk cache", "kernel library", "loading")


@dataclass
class Spent:
    """Seconds of one phase: wall clock, and CPU time of the thread (or process) that ran it."""

    wall: float = 0.0
    cpu: float = 0.0


class _Open(threading.local):
    def __init__(self):
        self.recorders: list[dict[str, Spent]] = []
        self.stack: list[str] = []


_OPEN = _Open()


@contextlib.contextmanager
def recorded() -> Iterator[dict[str, Spent]]:
    """Collect the phases run in this thread inside the block: {phase: Spent}."""
    times: dict[str, Spent] = {}
    _OPEN.recorders.append(times)
    try:
        yield times
    finally:   # by identity: list.remove would compare the dicts' contents
        _OPEN.recorders[:] = [r for r in _OPEN.recorders if r is not times]


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Time the block as `phase` (less the phases opened inside it)."""
    _OPEN.stack.append(phase)
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        _OPEN.stack.pop()
        add(phase, time.perf_counter() - wall, time.thread_time() - cpu)


def add(phase: str, wall: float, cpu: float, *, in_this_thread: bool = True) -> None:
    """Count `wall` and `cpu` seconds to `phase`, and take them out of the phase around it (the
    CPU seconds only if this thread spent them: the LLVM worker's are its process's own)."""
    if not _OPEN.recorders:
        return
    outer = _OPEN.stack[-1] if _OPEN.stack else None
    for times in _OPEN.recorders:
        spent = times.setdefault(phase, Spent())
        spent.wall += wall
        spent.cpu += cpu
        if outer is not None:
            around = times.setdefault(outer, Spent())
            around.wall -= wall
            around.cpu -= cpu if in_this_thread else 0.0


def table(times: dict[str, Spent], total_wall: float | None = None) -> str:
    """The phases as a text table, in pipeline order, with their total (and, given the wall
    time of the whole, what no phase covers)."""
    order = sorted(times, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))
    rows = [(p, times[p].wall, times[p].cpu) for p in order]
    wall = sum(r[1] for r in rows)
    rows.append(("phases", wall, sum(r[2] for r in rows)))
    if total_wall is not None:   # (no CPU time for it: nothing measured it)
        rows.append(("other (not in a phase)", total_wall - wall, float("nan")))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'phase':<{width}}  {'wall ms':>9}  {'CPU ms':>9}"]
    lines += [f"{name:<{width}}  {w * 1e3:>9.1f}  {'-' if c != c else f'{c * 1e3:.1f}':>9}" for name, w, c in rows]
    return "\n".join(lines)
