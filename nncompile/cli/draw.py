"""Pictures of a graph and of its memory plan, written by the project (no plotting library).

- `graph_dot(graph)`: Graphviz DOT text. Inputs and parameters are ellipses, each op a box, each
  fused node a cluster holding its body; every edge is labelled with the type of the value it
  carries (`f32[?,128]`). `dot_to_svg` renders it with the Graphviz `dot` program.
- `memory_svg(plan)`: the arena over time, as PyTorch's memory visualizer draws allocations:
  x is the kernel index, y the arena offset; each buffer is a bar from the kernel that first
  writes it to the last that reads it, at its offset and as tall as its size. A dashed line marks
  the lower bound (the peak of live bytes), the top of the plot the arena size.
"""
from __future__ import annotations

import shutil
import subprocess
from xml.sax.saxutils import escape

from nncompile.ir.graph import Graph, Value
from nncompile.passes.memory import MemoryPlan, value_names

# --- DOT ------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Dot:
    def __init__(self):
        self.lines: list[str] = []
        self.count = 0
        self.clusters = 0

    def node_id(self) -> str:
        self.count += 1
        return f"n{self.count}"

    def edge(self, source: str, target: str, value: Value, indent: str) -> None:
        self.lines.append(f"{indent}{source} -> {target} [label={_q(str(value.type))}];")


def graph_dot(graph: Graph) -> str:
    """The DOT text of `graph` (see the module doc)."""
    dot = _Dot()
    dot.lines += [f"digraph {_q(graph.name)} {{", "  rankdir=TB;",
                  '  node [shape=box, fontname="Helvetica", fontsize=10];',
                  '  edge [fontname="Helvetica", fontsize=9];']
    source: dict[Value, str] = {}
    for v in graph.inputs:
        source[v] = dot.node_id()
        style = ", style=filled, fillcolor=lightgrey" if v.is_param else ""
        dot.lines.append(f"  {source[v]} [shape=ellipse, label={_q(f'%{v.name}')}{style}];")
    _draw_nodes(dot, graph, source, "  ", path="")
    for name, v in zip(graph.output_names, graph.outputs):
        out = dot.node_id()
        dot.lines.append(f"  {out} [shape=ellipse, style=bold, label={_q(name)}];")
        dot.edge(source[v], out, v, "  ")
    dot.lines.append("}")
    return "\n".join(dot.lines) + "\n"


def _draw_nodes(dot: _Dot, graph: Graph, source: dict[Value, str], indent: str, path: str) -> None:
    """Every node of `graph`; `source` maps each value to the DOT node that produces it."""
    for number, node in enumerate(graph.nodes):
        name = f"{path}%{number}"
        if node.op == "fused":
            _draw_fused(dot, node, name, source, indent)
            continue
        box = dot.node_id()
        label = f"{name} {node.op}" + (f"\n{node.loc}" if node.loc else "")
        dot.lines.append(f"{indent}{box} [label={_q(label)}];")
        for v in dict.fromkeys(node.inputs):
            dot.edge(source[v], box, v, indent)
        for v in node.outputs:
            source[v] = box


def _draw_fused(dot: _Dot, node, name: str, source: dict[Value, str], indent: str) -> None:
    """A cluster with the body's nodes; edges from outside go to the body nodes that read them."""
    body = node.attrs["body"]
    title = f"{name} fused {node.attrs['kind']}" + (f" ({node.loc})" if node.loc else "")
    dot.clusters += 1
    dot.lines += [f"{indent}subgraph cluster_{dot.clusters} {{",
                  f"{indent}  label={_q(title)}; style=rounded; color=steelblue;"]
    inner: dict[Value, str] = {arg: source[outer] for arg, outer in zip(body.inputs, node.inputs)}
    _draw_nodes(dot, body, inner, indent + "  ", path=f"{name}.")
    dot.lines.append(f"{indent}}}")
    for outer, result in zip(node.outputs, body.outputs):
        source[outer] = inner[result]


def dot_to_svg(dot_text: str) -> str:
    """SVG rendered by Graphviz's `dot`; an OSError says how to do without it when it is missing."""
    program = shutil.which("dot")
    if program is None:
        raise OSError("the Graphviz program 'dot' is not installed (not found on PATH); install "
                      "Graphviz, or use --emit dot and render the text elsewhere")
    done = subprocess.run([program, "-Tsvg"], input=dot_text, capture_output=True, text=True)
    if done.returncode:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise OSError(f"Graphviz 'dot' failed: {message}")
    return done.stdout


# --- memory plan SVG -------------------------------------------------------------------------------

WIDTH, HEIGHT = 960, 480
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 40, 50
_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")


def memory_svg(plan: MemoryPlan) -> str:
    """An SVG of the memory plan (see the module doc); every buffer is a `rect class="buffer"`,
    the plot area a `rect class="plot"`, the lower bound a `line class="lower-bound"`."""
    kernels = max(len(plan.graph.nodes), 1)
    top = max(plan.arena_bytes, plan.lower_bound, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    column = plot_w / kernels

    def y(offset: float) -> float:
        return TOP + plot_h * (1 - offset / top)

    names = value_names(plan.graph)
    ratio = plan.arena_bytes / plan.lower_bound if plan.lower_bound else 1.0
    bound = ", ".join(f"{symbol} = {size}" for symbol, size in plan.env.items())
    sizes = escape(f" ({bound})") if bound else ""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, sans-serif" font-size="11">',
             f'<text x="{LEFT}" y="{TOP - 16}" font-size="13">{escape(plan.graph.name)}: arena '
             f'{plan.arena_bytes} bytes, lower bound {plan.lower_bound} bytes (ratio {ratio:.3f}), '
             f'{len(plan.buffers)} buffers{sizes}</text>',
             f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
             f'fill="#fafafa" stroke="#999"/>']
    for i, buffer in enumerate(plan.buffers):
        values = ", ".join(names[v] for v in buffer.values)
        tip = (f"{values}: {buffer.size} bytes at offset {buffer.offset}, "
               f"kernels {buffer.first}..{buffer.last}")
        parts.append(
            f'<rect class="buffer" x="{LEFT + buffer.first * column:.3f}" '
            f'y="{y(buffer.offset + buffer.size):.3f}" width="{(buffer.last - buffer.first + 1) * column:.3f}" '
            f'height="{plot_h * buffer.size / top:.3f}" fill="{_COLORS[i % len(_COLORS)]}" '
            f'fill-opacity="0.8" stroke="white" stroke-width="0.5"><title>{escape(tip)}</title></rect>')
    bound = y(plan.lower_bound)
    parts += [f'<line class="lower-bound" x1="{LEFT}" y1="{bound:.3f}" x2="{LEFT + plot_w}" y2="{bound:.3f}" '
              f'stroke="black" stroke-dasharray="6,4"/>',
              f'<text x="{LEFT - 6}" y="{bound + 4:.3f}" text-anchor="end">lower bound</text>',
              f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top} B</text>',
              f'<text x="{LEFT - 6}" y="{TOP + plot_h + 4}" text-anchor="end">0</text>',
              f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">kernel '
              f'(0..{kernels - 1}, in execution order)</text>',
              f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
              f'transform="rotate(-90 14 {TOP + plot_h / 2})">arena offset (bytes)</text>',
              "</svg>"]
    return "\n".join(parts) + "\n"
