"""The pictures behind `nncompile dump --emit dot|svg|memory-svg`, checked in process."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from nncompile.cli import draw
from nncompile.ir import BATCH, Builder, f32
from nncompile.passes.manager import PassManager
from nncompile.passes.memory import plan_memory

SVG = "{http://www.w3.org/2000/svg}"


def _chain():
    """Three dense+softmax blocks and a residual add of the first block's result, so buffers
    of different sizes and lifetimes share the arena; fused and unfused kernels."""
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 8])
    h = x
    firsts = []
    for i, width in enumerate([16, 4, 16]):
        with b.loc(f"block{i}"):
            w = b.param(f"w{i}", rng.standard_normal((h.type.shape[1], width)).astype(np.float32))
            h = b.softmax(b.relu(b.matmul(h, w)))
            firsts.append(h)
    with b.loc("residual"):
        out = b.add(h, firsts[0])
    b.finish([b.reduce_sum(out, axes=[1])], ["y"])
    return PassManager(["dce", "fuse", "schedule"]).run(b.graph)


def _floats(element, *names):
    return [float(element.get(n)) for n in names]


@pytest.mark.parametrize("batch", [1, 5])
def test_memory_svg_draws_each_buffer_at_its_offset_and_lifetime(batch):
    graph = _chain()
    plan = plan_memory(graph, {BATCH: batch})
    assert len(plan.buffers) >= 3
    root = ET.fromstring(draw.memory_svg(plan))
    (plot,) = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "plot"]
    x0, y0, width, height = _floats(plot, "x", "y", "width", "height")
    top = max(plan.arena_bytes, plan.lower_bound)
    column = width / len(graph.nodes)
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "buffer"]
    assert len(bars) == len(plan.buffers)
    for bar, buffer in zip(bars, plan.buffers):
        expected = [x0 + buffer.first * column, y0 + height * (1 - (buffer.offset + buffer.size) / top),
                    (buffer.last - buffer.first + 1) * column, height * buffer.size / top]
        np.testing.assert_allclose(_floats(bar, "x", "y", "width", "height"), expected, atol=2e-3)
    (line,) = [l for l in root.iter(f"{SVG}line") if l.get("class") == "lower-bound"]
    y1, y2 = _floats(line, "y1", "y2")
    assert y1 == y2 == pytest.approx(y0 + height * (1 - plan.lower_bound / top), abs=2e-3)


def test_graph_dot_has_a_cluster_per_fused_node_and_typed_edges():
    graph = _chain()
    text = draw.graph_dot(graph)
    fused = [n for n in graph.nodes if n.op == "fused"]
    assert len(re.findall(r"subgraph cluster_\w+ \{", text)) == len(fused) >= 3
    declared = set(re.findall(r"^\s*(n\d+) \[", text, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+) \[label=\"([^\"]*)\"\];$", text, re.M)
    assert edges and all(a in declared and b in declared for a, b, _ in edges)
    assert {"f32[?,8]", "f32[8,16]", "f32[?,16]", "f32[?,4]", "f32[?]"} <= {label for *_, label in edges}
    assert text.count("{") == text.count("}")


def test_dot_to_svg_without_graphviz_names_the_program(monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(OSError, match="Graphviz program 'dot' is not installed"):
        draw.dot_to_svg("digraph g {}")
