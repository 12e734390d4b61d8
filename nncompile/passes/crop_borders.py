"""crop-borders: compute only the rows and columns of an image that something reads.

A convolution or pooling without padding reads the rows [0, (out - 1) * stride + span) of its
input, where span is the window's extent (dilated for a convolution); a pooling of a map whose
size the stride does not divide leaves the last rows unread: Conv2D(3) -> MaxPooling2D(2) on a
15 x 15 map computes 13 x 13 outputs and pools 12 x 12 of them. This pass follows what is read
back from the graph's outputs (a demanded extent per NHWC value: the largest any reader needs)
and remakes the convolutions, poolings and elementwise ops between them on the demanded rows and
columns only, slicing where a value is larger than its readers need (at the latest the graph's
input). Every output is computed from the same inputs by the same operations, so results are
bitwise the same.

On Keras's MNIST convnet (28 x 28, Conv(3)-Pool(2)-Conv(3)-Pool(2)) the first convolution makes
24 x 24 of its 26 x 26 outputs and the second 10 x 10 of 11 x 11; on the peers' CIFAR CNN
(32 x 32) 28 x 28 of 30 x 30 and 12 x 12 of 13 x 13 (the Winograd convolution: 36 tiles of 49).

Only ops whose reads are known take part; any other reader (a reshape, a reduction, a gradient
op, a graph output) demands the whole value. So the pass is in the inference pipeline, and a
training step's forward pass is cropped (`crop`) before autodiff sees it (`keras/training.py`),
its backward ops then skipping the borders too: the weight gradients then sum fewer zero terms,
in other blocks, so they agree with the step built whole to rounding.
"""
from __future__ import annotations

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import Fusion, get_op
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter

Extent = tuple[int, int]    # rows, columns: the prefix of an NHWC value's height and width


def _spatial(v: Value) -> Extent | None:
    """(height, width) of a rank-4 value whose height and width are static."""
    if v.type.rank != 4 or not all(isinstance(d, int) for d in v.type.shape[1:3]):
        return None
    return v.type.shape[1], v.type.shape[2]


def _window(node: Node) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(span, stride) per axis of an unpadded convolution or pooling, else None."""
    if node.op == "conv2d":
        (kh, kw), (dh, dw) = node.inputs[1].type.shape[:2], node.attrs["dilations"]
        span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    elif node.op in ("max_pool2d", "avg_pool2d"):
        span = tuple(node.attrs["window"])
    else:
        return None
    if any(node.attrs["pads"]) or not all(isinstance(s, int) for s in span) or _spatial(node.inputs[0]) is None:
        return None
    return span, tuple(node.attrs["strides"])


def _elementwise_inputs(node: Node) -> list[bool] | None:
    """For an elementwise op over an NHWC value: which inputs are images of its height and width
    (the others are broadcast over them); None when it is not one or an input is neither."""
    out = node.outputs[0]
    if get_op(node.op).fusion is not Fusion.ELEMENTWISE or len(node.outputs) != 1 or _spatial(out) is None:
        return None
    spatial = []
    for v in node.inputs:
        padded = (1,) * (4 - v.type.rank) + tuple(v.type.shape)
        if v.type.rank == 4 and tuple(padded[1:3]) == tuple(out.type.shape[1:3]):
            spatial.append(True)
        elif v.type.rank <= 4 and padded[1] == 1 and padded[2] == 1:
            spatial.append(False)
        else:
            return None
    return spatial if any(spatial) else None


def _needs(node: Node, demanded: Extent) -> list[Extent | None]:
    """The extent of each input that `node` reads to make `demanded` of its output (None: not an
    image input; the whole of any input when the node is not one this pass remakes)."""
    window = _window(node)
    if window is not None:
        (span_h, span_w), (sh, sw) = window
        return [((demanded[0] - 1) * sh + span_h, (demanded[1] - 1) * sw + span_w)] + [None] * (len(node.inputs) - 1)
    spatial = _elementwise_inputs(node)
    if spatial is not None:
        return [demanded if s else None for s in spatial]
    return [_spatial(v) for v in node.inputs]


def demanded_extents(graph: Graph, roots: list[Value] | None = None) -> dict[Value, Extent]:
    """The extent of each NHWC value that its readers read, the largest over them; `roots` (by
    default the graph's outputs) are read whole."""
    roots = graph.outputs if roots is None else roots
    demand: dict[Value, Extent] = {v: _spatial(v) for v in roots if _spatial(v) is not None}

    def need(v: Value, extent: Extent) -> None:
        old = demand.get(v)
        demand[v] = extent if old is None else (max(old[0], extent[0]), max(old[1], extent[1]))

    for node in reversed(graph.nodes):
        out = node.outputs[0] if len(node.outputs) == 1 else None
        made = demand.get(out) if out is not None else None
        full = _spatial(out) if out is not None else None
        for v, extent in zip(node.inputs, _needs(node, made or full) if full is not None else
                             [_spatial(v) for v in node.inputs]):
            if extent is not None:
                need(v, extent)
    return demand


def _prefix(rw: Rewriter, v: Value, extent: Extent, loc: str) -> Value:
    """`v` cut to its first rows and columns (itself when it has exactly those)."""
    if _spatial(v) == extent:
        return v
    return rw.emit("slice", [v], loc, starts=[0, 0], ends=list(extent), axes=[1, 2], steps=[1, 1])


def crop(graph: Graph, roots: list[Value]) -> None:
    """Remake `graph`'s nodes so that each computes the extent read of it; `roots` (its outputs,
    or what a graph being built will read: a training step's loss) are read whole and keep
    their values, as does every node whose output keeps its shape."""
    demand = demanded_extents(graph, roots)
    if all(_spatial(v) == extent for v, extent in demand.items()):
        return
    rw = Rewriter(graph)
    for node in graph.nodes:
        out = node.outputs[0] if len(node.outputs) == 1 else None
        target = demand.get(out) if out is not None else None
        # a smaller output: the node remade on its inputs cut to what it reads (judged on the
        # inputs as they were); else the node itself, on its inputs as remade (a convolution or
        # pooling makes the same output from an input cut below its old extent)
        if target is not None and target != _spatial(out) and \
                (_window(node) is not None or _elementwise_inputs(node) is not None):
            cut = [rw.value(v) if extent is None else _prefix(rw, rw.value(v), extent, node.loc)
                   for v, extent in zip(node.inputs, _needs(node, target))]
            rw.alias[out] = rw.emit(node.op, cut, node.loc, **node.attrs)
            continue
        node.inputs = [rw.value(v) for v in node.inputs]
        rw.nodes.append(node)
    graph.nodes = rw.nodes


@register_pass("crop-borders", doc="Convolutions, poolings and the elementwise ops between them compute "
                                   "only the rows and columns their readers read.")
def crop_borders(graph: Graph) -> Graph:
    crop(graph, graph.outputs)
    return graph
