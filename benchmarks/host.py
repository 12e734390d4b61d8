"""What the benchmarks say about the machine they ran on."""
from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name (`lscpu`'s "Model name"), e.g. 'Intel(R) Xeon(R) Processor'."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"
