"""The verifier: good graphs pass; each planted fault raises VerifyError naming the node."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, Graph, Node, TensorType, VerifyError, f32, i32, parse, verify


def _mlp() -> Graph:
    """x -> dense (matmul, add, relu) -> reshape -> cast; every node has a loc."""
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    w = b.param("dense/kernel", rng.standard_normal((6, 4)).astype(np.float32))
    bias = b.param("dense/bias", np.zeros(4, np.float32))
    with b.loc("dense"):
        h = b.relu(b.add(b.matmul(x, w), bias))
    with b.loc("flat"):
        r = b.reshape(h, shape=[BATCH, 2, 2])
    with b.loc("out"):
        y = b.cast(r, dtype="f64")
    return b.finish([y], ["y"])


def _node(g: Graph, op: str) -> tuple[int, Node]:
    return next((i, n) for i, n in enumerate(g.nodes) if n.op == op)


def _fails(g: Graph, i: int, *fragments: str) -> str:
    with pytest.raises(VerifyError) as info:
        verify(g)
    message = str(info.value)
    assert g.nodes[i].describe() in message and f"node #{i}" in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_good_graphs_verify():
    verify(_mlp())
    verify(Graph("empty"))


def test_every_example_verifies():
    from op_examples import EXAMPLES

    for build in EXAMPLES.values():
        verify(build(np.random.default_rng(0))[0])


def test_parsed_graphs_verify():
    g = _mlp()
    verify(parse(str(g)))


def test_wrong_declared_output_type():
    g = _mlp()
    i, node = _node(g, "relu")
    node.outputs[0].type = f32[BATCH, 5]
    _fails(g, i, "declares result types (f32[?,5])", "infers (f32[?,4])")


def test_wrong_declared_dtype():
    g = _mlp()
    i, node = _node(g, "cast")
    node.outputs[0].type = TensorType(i32, node.outputs[0].type.shape)
    _fails(g, i, "declares result types (i32[?,2,2])")


def test_node_moved_before_its_producer():
    g = _mlp()
    i, relu = _node(g, "relu")
    g.nodes.remove(relu)
    g.nodes.insert(0, relu)
    _fails(g, 0, "input 0 is %2", "node #2 defines later", "use before definition")


def test_unknown_attribute():
    g = _mlp()
    i, node = _node(g, "relu")
    node.attrs["alpha"] = 0.5
    _fails(g, i, "unknown attribute 'alpha'")


def test_removed_required_attribute():
    g = _mlp()
    i, node = _node(g, "reshape")
    del node.attrs["shape"]
    _fails(g, i, "needs attribute 'shape'")


def test_removed_defaulted_attribute():
    g = _mlp()
    i, node = _node(g, "matmul")
    del node.attrs["transpose_b"]
    _fails(g, i, "attribute 'transpose_b' is missing")


def test_ill_typed_attribute():
    g = _mlp()
    i, node = _node(g, "reshape")
    node.attrs["shape"] = (BATCH, 2.5, 2)
    _fails(g, i, "attribute 'shape'")


@pytest.mark.parametrize("name, value", [("dtype", "f64"), ("dtype", np.float64)])
def test_non_canonical_attribute(name, value):
    g = _mlp()
    i, node = _node(g, "cast")
    node.attrs[name] = value
    _fails(g, i, f"attribute {name!r} holds", "canonical form f64")


def test_list_instead_of_tuple_is_not_canonical():
    g = _mlp()
    i, node = _node(g, "reshape")
    node.attrs["shape"] = list(node.attrs["shape"])
    _fails(g, i, "attribute 'shape' holds ['?', 2, 2] (list)")


def test_value_from_another_graph():
    g = _mlp()
    other = _mlp()
    i, node = _node(g, "relu")
    node.inputs[0] = _node(other, "add")[1].outputs[0]
    _fails(g, i, "input 0 is a result of node 'add' of 'dense' that is not in this graph")


def test_input_of_another_graph():
    g = _mlp()
    i, node = _node(g, "matmul")
    node.inputs[0] = _mlp().inputs[0]
    _fails(g, i, "input 0 is input %x of another graph")


def test_unknown_op():
    g = _mlp()
    i, node = _node(g, "relu")
    node.op = "relux"
    _fails(g, i, "unknown op 'relux'")


def test_wrong_number_of_inputs():
    g = _mlp()
    i, node = _node(g, "relu")
    node.inputs.append(g.inputs[0])
    _fails(g, i, "takes 1 inputs")


def test_node_appended_twice():
    g = _mlp()
    i, node = _node(g, "cast")
    g.nodes.append(node)
    _fails(g, len(g.nodes) - 1, "result 0 is not its own fresh value")


def test_undefined_graph_output():
    g = _mlp()
    g.outputs = [_mlp().outputs[0]]
    with pytest.raises(VerifyError, match="output 'y' is a result of node 'cast' of 'out' that is not in this graph"):
        verify(g)


def test_output_names_must_be_unique_and_one_per_output():
    g = _mlp()
    g.outputs = [g.outputs[0], g.outputs[0]]
    g.output_names = ["y", "y"]
    with pytest.raises(VerifyError, match=r"output names \['y', 'y'\] must be unique"):
        verify(g)
    g.output_names = ["y"]
    with pytest.raises(VerifyError, match="one per output"):
        verify(g)


def test_duplicate_input_names():
    g = _mlp()
    g.inputs[1].name = "x"
    with pytest.raises(VerifyError, match="two inputs are named 'x'"):
        verify(g)


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((6, 5), np.float32), "expected shape (6, 4), received shape (6, 5)"),
    (np.zeros((6, 4), np.float64), "bound to an array of dtype float64"),
    ([[0.0] * 4] * 6, "bound to a list, not a numpy array"),
    (np.float32(1.0), "expected shape (6, 4), received shape ()"),
])
def test_parameter_bound_to_a_wrong_array(array, fragment):
    g = _mlp()
    g.params["dense/kernel"] = array
    with pytest.raises(VerifyError, match="parameter 'dense/kernel'") as info:
        verify(g)
    assert fragment in str(info.value)


def test_unbound_parameters_are_fine():
    g = parse(str(_mlp()))
    assert g.params == {}
    verify(g)


def test_constant_of_a_dtype_the_ir_lacks():
    b = Builder()
    c = b.constant(np.zeros(2, np.float32))
    g = b.finish([c])
    g.nodes[0].attrs["value"] = np.zeros(2, np.complex64)
    _fails(g, 0, "attribute 'value'", "complex64")

