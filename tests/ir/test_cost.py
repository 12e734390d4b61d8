"""FLOPs and bytes per node (nncompile.ir.cost) against counts written out by hand."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, Builder, Graph, IRError, ShapeError, f32
from nncompile.ir import cost
from nncompile.ir.cost import Cost, graph_cost, node_cost
from nncompile.ir.optable import OPS
from tests.op_examples import EXAMPLES


def _only_node(graph: Graph):
    (node,) = [n for n in graph.nodes if n.op != "constant"]
    return node


def test_every_op_of_the_examples_has_a_cost():
    rng = np.random.default_rng(0)
    seen = set()
    for name, build in EXAMPLES.items():
        graph, _ = build(rng)
        total = graph_cost(graph, {BATCH: 2})
        assert total.flops >= 0 and total.bytes > 0, name
        seen |= {n.op for n in graph.nodes}
    assert seen == set(OPS)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9),
       st.booleans(), st.booleans())
def test_matmul_is_two_m_n_k_per_batch_matrix(batch, m, k, n, transpose_a, transpose_b):
    b = Builder()
    a = b.input("a", f32[BATCH, *((k, m) if transpose_a else (m, k))])
    w = b.input("w", f32[*((n, k) if transpose_b else (k, n))])
    b.finish([b.matmul(a, w, transpose_a=transpose_a, transpose_b=transpose_b)])
    node = _only_node(b.graph)
    got = node_cost(node, {BATCH: batch})
    assert got.flops == 2 * batch * m * n * k
    assert got.bytes == 4 * (batch * m * k + k * n + batch * m * n)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(3, 9), st.integers(3, 9), st.sampled_from([(2, 1), (2, 2), (4, 4)]),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_conv2d_is_two_n_oh_ow_kh_kw_c_o(n, h, w, groups_cin, kh, kw, stride):
    groups, cin_per_group = groups_cin
    cin, cout = groups * cin_per_group, groups * 3
    b = Builder()
    x = b.input("x", f32[BATCH, h, w, cin])
    k = b.input("k", f32[kh, kw, cin_per_group, cout])
    b.finish([b.conv2d(x, k, strides=(stride, stride), groups=groups)])
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    got = node_cost(_only_node(b.graph), {BATCH: n})
    assert got.flops == 2 * n * oh * ow * kh * kw * cin_per_group * cout


def test_conv2d_gradients_cost_what_the_forward_conv_costs():
    b = Builder()
    x = b.input("x", f32[2, 6, 6, 4])
    k = b.input("k", f32[3, 3, 2, 6])
    dy = b.input("dy", f32[2, 4, 4, 6])
    window = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=2)
    dx = b.op("conv2d_grad_input", dy, k, input_hw=(6, 6), **window)
    dk = b.op("conv2d_grad_filter", x, dy, kernel_hw=(3, 3), **window)
    b.finish([dx, dk])
    forward = 2 * 2 * 4 * 4 * 3 * 3 * 2 * 6
    assert [node_cost(node, {}).flops for node in b.graph.nodes] == [forward, forward]


def test_elementwise_reductions_softmax_and_pooling():
    b = Builder()
    x = b.input("x", f32[BATCH, 3, 4])
    img = b.input("img", f32[BATCH, 6, 6, 2])
    b.finish([b.relu(x), b.reduce_sum(x, axes=[1]), b.reduce_mean(x, axes=[1, 2]), b.softmax(x),
              b.transpose(x, perm=[0, 2, 1]), b.max_pool2d(img, window=(2, 3), strides=(2, 3))])
    flops = [node_cost(node, {BATCH: 5}).flops for node in b.graph.nodes]
    assert flops == [60, 60, 60 + 5, 5 * 60, 0, 5 * 3 * 2 * 2 * 6]
    relu = node_cost(b.graph.nodes[0], {BATCH: 5})
    assert relu.bytes == 2 * 60 * 4


def test_an_operand_read_twice_counts_once():
    b = Builder()
    x = b.input("x", f32[10])
    b.finish([b.mul(x, x)])
    assert node_cost(b.graph.nodes[0], {}) == Cost(flops=10, bytes=2 * 40)


def test_fused_costs_its_body_flops_and_only_its_own_operands_and_results():
    body = Builder(name="body")
    args = [body.input("arg0", f32[BATCH, 5]), body.input("arg1", f32[5, 3]), body.input("arg2", f32[3])]
    body.finish([body.relu(body.add(body.matmul(args[0], args[1]), args[2]))])
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    w = b.param("w", np.ones((5, 3), np.float32))
    bias = b.param("bias", np.ones(3, np.float32))
    b.finish([b.fused(x, w, bias, kind="matmul", body=body.graph)])
    got = node_cost(b.graph.nodes[0], {BATCH: 7})
    assert got.flops == 2 * 7 * 5 * 3 + 7 * 3 + 7 * 3
    assert got.bytes == 4 * (7 * 5 + 5 * 3 + 3 + 7 * 3)


def test_an_unbound_symbol_is_named():
    b = Builder()
    b.finish([b.relu(b.input("x", f32[BATCH, 3]))])
    with pytest.raises(ShapeError, match=r"symbolic dimension '\?' is not bound to a size"):
        graph_cost(b.graph, {})


def test_an_opaque_op_without_a_rule_is_an_error_naming_it(monkeypatch):
    monkeypatch.delitem(cost.FLOP_RULES, "softmax")
    b = Builder()
    with b.loc("head"):
        b.finish([b.softmax(b.input("x", f32[2, 3]))])
    with pytest.raises(IRError, match=r"node 'softmax' of 'head' has no FLOP rule; op 'softmax' is opaque"):
        graph_cost(b.graph, {})
