"""GEMM cache blocking (KC, MC, NC and the depth of B panels a task packs itself) for the host:
derived from its cache sizes, or measured (KC and MC).

Derived (`derive`, `columns`, `own_panel_depth`), after the Goto/BLIS analysis of the GEMM's loops
(`gemm_driver.py`) (B packed in K blocks of KC, A packed MC rows at a time, the microkernel run
over every MR x NR tile, each row of tiles over NC columns of B before the next row):

- KC: the KC x NR micro-panel of B takes twice the L1d. BLIS keeps it within L1; on Zen 5 (48 KB
  L1d, 1 MB L2) KC = 768, twice L1, measured 3-6% faster at n >= 1024 than KC = 256 (C is read and
  written K/KC times, and the hardware prefetcher streams the panel from L2). A multiple of 16,
  at most KC_MAX.
- MC: the MC x KC block of A and one B micro-panel fill half the L2 (the rest holds the NC
  columns of B panels in use and the rows of C being updated), rounded to the nearest multiple
  of MR, at most MC_MAX.

- NC: a row of tiles (one MR x KC panel of A, in L1) passes over NC columns of B's panels
  before the next row starts; they take a quarter of the L2, beside the A block (a multiple of
  NR, at least NR). Column panels outermost instead (NC = NR), each tile read its A panel and a
  KC x NR panel of B from L2 and wrote C 12 rows apart: 6400x128 @ 128x1024 and 2048^3 ran
  12-20% slower on an Emerald Rapids Xeon (2 MB L2: NC 160 at KC 768; 128 to 320 measured alike).

- KC when a task packs B's panels itself just before its tiles read them (a weight gradient:
  few rows of A, deep K): a panel takes two thirds of the L1d, so the tiles read it from L1 (256
  for 48 KB; 128 x 3200 @ 3200 x 512 on a core 135 -> 143 GFLOP/s, 256 rows 136 -> 158, against
  KC 768). It packs NC_own columns at a time, a quarter of the L2 at that depth, as NC (512 on
  the Xeon, 256 on Zen 5's 1 MB; the Xeon measured 256 and 512 alike).

That gives Zen 5's measured best, KC 768 and MC 144 for f32 (the A block 432 KB, the B
micro-panel 96 KB), and KC 768, MC 312 for an Emerald Rapids Xeon's 48 KB L1d and 2 MB L2. B is
packed whole (NC only orders the tiles), so the L3 does not enter.

Measured (`nncompile tune`, `runtime/tuning.py`): a short search over candidates around the
derived values, whose winner for f32 is kept in the cache directory under a key of the CPU model,
the code generator's CPU and features, the package version and LLVM. NNCOMPILE_TUNE=0 ignores it.
The entry is read with the disk cache's checks (`runtime.disk_cache`): a bad, truncated, foreign
or unreadable entry, or one whose values do not fit this register tile, is a miss and the derived
values are used. Tuning never runs on its own: a search costs seconds, a compile should not.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from typing import Iterator

import llvmlite
import llvmlite.binding as llvm

from nncompile.codegen import host
from nncompile.runtime import disk_cache

TUNE_ENV = "NNCOMPILE_TUNE"
TUNING_SUFFIX = ".tuning"
KC_MIN, KC_MAX = 64, 1024   # depths outside were never measured; a tuned entry outside is refused
MC_MAX = 4096


@dataclass(frozen=True)
class Blocking:
    kc: int   # depth of a packed block of A and B
    mc: int   # rows of a packed block of A (a multiple of MR)


def derive(caches: host.Caches, itemsize: int, mr: int, nr: int) -> Blocking:
    """KC and MC from the cache sizes (see the module's docstring)."""
    b_panel_row = nr * itemsize
    kc = min(max(2 * caches.l1d // b_panel_row // 16 * 16, KC_MIN), KC_MAX)
    a_block = caches.l2 // 2 - kc * b_panel_row
    mc = min(max(round(a_block / (kc * itemsize) / mr), 1), MC_MAX // mr) * mr
    return Blocking(kc=kc, mc=mc)


def columns(kc: int, itemsize: int, nr: int) -> int:
    """NC for depth `kc` from the host's L2 (see the module's docstring)."""
    return max(host.caches().l2 // 4 // (kc * itemsize) // nr, 1) * nr


def own_panel_depth(itemsize: int, nr: int) -> int:
    """KC when a task packs each B panel just before its tiles read it (see the module's docstring)."""
    return min(max(2 * host.caches().l1d // 3 // (nr * itemsize) // 16 * 16, KC_MIN), KC_MAX)


def tuning_enabled() -> bool:
    """NNCOMPILE_TUNE: 1 (the default) uses tuned blocking where `nncompile tune` left some, 0 never."""
    value = os.environ.get(TUNE_ENV) or "1"
    if value not in ("0", "1"):
        raise ValueError(f"{TUNE_ENV} is {value!r}; expected 0 (derived blocking only) or 1 (tuned, the default)")
    return value == "1"


def tuning_key() -> str:
    """The tuning entry's key: the CPU model, the code generator's CPU and features (a forced
    NNCOMPILE_CPU level has entries of its own), the package version and LLVM."""
    cpu, features = host.host_cpu()
    text = "\n".join(["tuning", host.model_name(), cpu, features, importlib.metadata.version("nncompile"),
                      llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info))])
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _valid(entry: object, mr: int, nr: int) -> bool:
    """Whether a decoded entry is tuned blocking for this register tile, within sane bounds."""
    if not isinstance(entry, dict) or entry.get("mr") != mr or entry.get("nr") != nr:
        return False
    kc, mc = entry.get("kc"), entry.get("mc")
    return (type(kc) is int and type(mc) is int and KC_MIN <= kc <= KC_MAX
            and mr <= mc <= MC_MAX and mc % mr == 0)


@functools.cache
def _tuned_entry() -> object:
    data = disk_cache.read(tuning_key(), TUNING_SUFFIX)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def tuned(mr: int, nr: int) -> Blocking | None:
    """The f32 blocking `nncompile tune` measured best on this host, if tuning is on and its
    entry is sound and made for this register tile."""
    if not tuning_enabled():
        return None
    entry = _tuned_entry()
    return Blocking(kc=entry["kc"], mc=entry["mc"]) if _valid(entry, mr, nr) else None


def store(best: Blocking, mr: int, nr: int, measured: dict) -> None:
    """Keep `best` as this host's tuned f32 blocking, with what the search measured (for people)."""
    entry = {"kc": best.kc, "mc": best.mc, "mr": mr, "nr": nr, "cpu": host.describe(), "measured": measured}
    disk_cache.write(tuning_key(), json.dumps(entry, sort_keys=True).encode(), TUNING_SUFFIX)
    _tuned_entry.cache_clear()


_trial: list[Blocking] = []


@contextlib.contextmanager
def trial(blocking: Blocking) -> Iterator[None]:
    """Code generated inside uses `blocking` for f32 (the search compiles each candidate so)."""
    _trial.append(blocking)
    try:
        yield
    finally:
        _trial.pop()


def choose(itemsize: int, mr: int, nr: int) -> Blocking:
    """The blocking of `itemsize`-byte floats: a candidate on trial, else tuned (f32), else derived."""
    if itemsize == 4:
        chosen = _trial[-1] if _trial else tuned(mr, nr)
        if chosen is not None:
            return chosen
    return derive(host.caches(), itemsize, mr, nr)
