"""Named pipelines: the ordered passes `nncompile.compile` and the `nncompile` command run.

    >>> from nncompile.passes.pipelines import pipeline
    >>> pipeline("codegen")
    ('dce', 'fuse', 'schedule')
"""
from __future__ import annotations

from dataclasses import dataclass

from nncompile.ir.errors import IRError
from nncompile.passes.manager import PASSES


@dataclass(frozen=True)
class Pipeline:
    name: str
    passes: tuple[str, ...]
    doc: str


# The simplifying passes run before fusion: remove-noops and fold-constants first, so that
# simplify sees constants (a reshaped 1.0 is a 1.0) and plain producers; cse after simplify,
# which makes equal nodes of different ones (two broadcasts of equal constants); dce last.
# fold-batchnorm is registered but in no default pipeline: fusion already applies a
# BatchNormalization as the conv/matmul epilogue in the same pass over the activations, and
# folding adds two kernels per layer (the scaled weights and the shift; measured 2 -> 4 kernels
# for Conv2D+BatchNormalization) to save three register operations per element.
_SIMPLIFY = ("dce", "remove-noops", "fold-constants", "simplify", "cse")
PIPELINES: dict[str, Pipeline] = {p.name: p for p in [
    Pipeline("inference", (*_SIMPLIFY, "crop-borders", "gather-first", "gather-in-scan", "layout", "dce", "fuse",
                           "schedule"),
             "Prediction: simplify the graph, compute from the weights what can be (once), fuse, "
             "and order the kernels."),
    Pipeline("training", (*_SIMPLIFY, "scan-sums", "layout", "dce", "fuse", "schedule"),
             "A training step: only exact rewrites, nothing that assumes inference-mode layers "
             "(never fold-batchnorm: batch statistics)."),
    Pipeline("codegen", ("dce", "fuse", "schedule"),
             "Only what code generation needs: dead code removed, fused, scheduled."),
]}


def pipeline(name: str) -> tuple[str, ...]:
    """The pass names of the pipeline `name`; an IRError lists the valid names."""
    try:
        return PIPELINES[name].passes
    except KeyError:
        raise IRError(f"unknown pipeline {name!r}; valid pipelines: {', '.join(PIPELINES)}") from None


def describe() -> str:
    """Every pipeline with its passes, then every registered pass with what it does; one line each."""
    width = max(len(n) for n in [*PIPELINES, *PASSES])
    lines = ["pipelines:"]
    lines += [f"  {p.name.ljust(width)}  {' -> '.join(p.passes)}" for p in PIPELINES.values()]
    lines.append("passes:")
    lines += [f"  {info.name.ljust(width)}  {info.doc}" for info in sorted(PASSES.values(), key=lambda i: i.name)]
    return "\n".join(lines)
