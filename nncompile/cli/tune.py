"""`nncompile tune`: measure this host's best f32 GEMM blocking and keep it (`runtime/tuning.py`),
then build the kernel library's common kernels for it (`codegen/library.py`)."""
from __future__ import annotations

import argparse
import time

from nncompile.codegen import blocking, gemm, host, library
from nncompile.ir.dtypes import DType
from nncompile.runtime import disk_cache, tuning


def _in_use() -> str:
    t = gemm.tiling(DType.f32)
    return f"MR {t.mr} x NR {t.nr}, KC {t.kc}, MC {t.mc}"


def _table(result: tuning.Result) -> list[str]:
    shapes = list(next(iter(result.gflops.values())))
    lines = ["| KC | MC | " + " | ".join(f"{m}x{n}x{k} GFLOP/s" for m, n, k in shapes) + " |",
             "|---|---|" + "---|" * len(shapes)]
    for trial, per_shape in result.gflops.items():
        mark = " (best)" if trial == result.best else ""
        lines.append(f"| {trial.kc} | {trial.mc}{mark} | "
                     + " | ".join(f"{per_shape[s]:.1f}" for s in shapes) + " |")
    return lines


def tune(args: argparse.Namespace) -> int:
    print(f"host: {host.describe()}")
    mr, nr = tuning.register_tile()
    derived = tuning.derived()
    tuned = blocking.tuned(mr, nr)
    print(f"derived from the caches: KC {derived.kc}, MC {derived.mc}; tuned: "
          + (f"KC {tuned.kc}, MC {tuned.mc}" if tuned else "none"))
    if args.show:
        print(f"in use (f32): {_in_use()}")
        return 0
    result = tuning.tune(tuning.QUICK_SHAPES if args.quick else tuning.SHAPES, rounds=args.rounds)
    print("\n".join(_table(result)))
    if blocking.tuned(mr, nr) != result.best and blocking.tuning_enabled():
        raise OSError(f"could not write the tuning entry into {disk_cache.directory()}")
    where = f"kept in {disk_cache.directory()}"
    print(f"best: KC {result.best.kc}, MC {result.best.mc}, {where}"
          + ("" if blocking.tuning_enabled() else f" ({blocking.TUNE_ENV}=0: not used now)"))
    kernels = library.common_kernels()
    start = time.perf_counter()
    library.build(kernels)
    print(f"kernel library: {len(kernels)} common kernels built for this blocking in "
          f"{time.perf_counter() - start:.1f} s, {where}")
    return 0
