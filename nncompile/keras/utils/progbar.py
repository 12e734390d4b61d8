"""Keras's progress bar (`keras.utils.Progbar`)."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Iterable, Sequence

import numpy as np

# The clock of the progress bar; a module attribute so that tests can drive it.
_clock = time.time


def _write(message: str) -> None:
    sys.stdout.write(message)
    sys.stdout.flush()


def _format_metric(value: float, signed: bool = True) -> str:
    # Keras switches to scientific notation for small values; the one-line-per-epoch form
    # (verbose=2) compares the signed value, so negative numbers print in e-notation there.
    small = abs(value) <= 1e-3 if signed else value <= 1e-3
    return f" {value:.4e}" if small else f" {value:.4f}"


def _format_time(time_per_unit: float, unit_name: str) -> str:
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"


def _format_eta(eta: float) -> str:
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


def _interactive_stdout() -> bool:
    """Whether stdout shows a line redrawn in place as one line: a terminal, a notebook or
    PyCharm's console. Keras 3 also counts every POSIX process, which fills files, pipes and CI
    logs with backspaces and colour codes; tf.keras 2 asked `isatty`, as this does."""
    return (getattr(sys.stdout, "isatty", lambda: False)() or "ipykernel" in sys.modules
            or "PYCHARM_HOSTED" in os.environ)


class Progbar:
    """Keras 3's progress bar, byte for byte: verbose=1 redraws one line
    (`16/16 ━━━━━━━━━━━━━━━━━━━━ 0s 2ms/step - loss: 0.6737`, ANSI-styled), at most once every
    `interval` seconds and always on the final update; verbose=2 prints one line when finished
    (`16/16 - 0s - 2ms/step - loss: 0.6737`). When stdout is not interactive (a file, a pipe),
    verbose=1 prints that plain line too. Values of metrics not in `stateful_metrics` are
    averaged over the steps they were reported for; the final update shows them as given.
    """

    def __init__(self, target: int | None, width: int = 20, verbose: int = 1,
                 interval: float = 0.05, stateful_metrics: Iterable[str] | None = None,
                 unit_name: str = "step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self._dynamic_display = _interactive_stdout()
        self._seen_so_far = 0
        self._values: dict[str, list[float]] = {}
        self._values_order: list[str] = []
        self._start = _clock()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0

    def update(self, current: int, values: Sequence[tuple[str, float]] | None = None,
               finalize: bool | None = None) -> None:
        """Advance to step `current` (1-based) with `(name, value)` pairs for this step."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._accumulate(current, values or [], finalize)
        self._seen_so_far = current
        now = _clock()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1 and self._dynamic_display:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw_line(current, now, time_per_unit, finalize)
        elif self.verbose in (1, 2) and finalize:
            # verbose=2, or a bar that cannot be redrawn in place: one plain line at the end.
            target = self.target or current
            digits = int(math.log10(max(target, 1))) + 1
            line = f"{current:{digits}d}/{target} - {now - self._start:.0f}s"
            line += f" -{_format_time(time_per_unit, self.unit_name)}"
            line += "".join(f" - {k}:{_format_metric(self._average(k), signed=False)}"
                            for k in self._values_order)
            _write(line + "\n")
        self._last_update = now

    def add(self, n: int, values: Sequence[tuple[str, float]] | None = None) -> None:
        """Advance by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _accumulate(self, current: int, values, finalize: bool) -> None:
        for name, value in values:
            if name not in self._values_order:
                self._values_order.append(name)
            if name in self.stateful_metrics or finalize:
                self._values[name] = [value, 1]
                continue
            weight = max(current - self._seen_so_far, 1)
            total = self._values.setdefault(name, [0.0, 0])
            total[0] += value * weight
            total[1] += weight

    def _average(self, name: str) -> float:
        total, count = self._values[name]
        return float(np.mean(total)) / max(1, count)

    def _draw_line(self, current: int, now: float, time_per_unit: float, finalize: bool) -> None:
        message = "\b" * self._prev_total_width + "\r"
        # ANSI escapes (bold, green, grey) take no columns: `hidden` counts their characters.
        hidden = 0
        if self.target:
            digits = int(math.log10(self.target)) + 1
            bar = f"\x1b[1m{current:{digits}d}/{self.target}\x1b[0m "
            hidden += 8
            done = int(self.width * float(current) / self.target)
            if done > 0:
                bar += f"\33[32m{'━' * done}\x1b[0m"
                hidden += 9
            bar += f"\33[37m{'━' * (self.width - done)}\x1b[0m"
            hidden += 9
        else:
            bar = "%7d/Unknown" % current
        if self.target and not finalize:
            info = f" \x1b[1m{_format_eta(time_per_unit * (self.target - current))}\x1b[0m"
        else:
            info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
        hidden += 8
        info += _format_time(time_per_unit, self.unit_name)
        info += "".join(f" - {k}:{_format_metric(self._average(k))}" for k in self._values_order)
        total_width = len(bar) + len(info) - hidden
        message += bar + info + " " * max(self._prev_total_width - total_width, 0)
        _write(message + ("\n" if finalize else ""))
        self._prev_total_width = total_width

    def _estimate_step_duration(self, current: int, now: float) -> float:
        # The first step (tracing, compiling, warming caches) is left out once there are others.
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
