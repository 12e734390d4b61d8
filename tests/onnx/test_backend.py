"""ONNX's own backend node tests (onnx.backend.test.case: every case is a model with inputs and
outputs computed by ONNX's reference implementation), run through tests/onnx/backend.py.

The cases are those whose every operator is one of issue 16's list or of MORE, the other
operators the importer converts; each runs on the reference interpreter, and a representative subset also as compiled
native code (compiling takes ~0.5-1 s a graph). `python -m tests.onnx.backend_count` counts the
whole suite. A case that fails must match a pattern of EXCLUDED, with its reason.
"""
from __future__ import annotations

import re
import warnings

import pytest
from onnx import TensorProto, numpy_helper
from onnx.backend.test.runner import Runner

from tests.onnx.backend import Backend, CompiledBackend, node_cases

LISTED = set("""
Gemm MatMul Add Sub Mul Div Pow Sqrt Reciprocal Exp Log Neg Abs Relu LeakyRelu Elu Selu Sigmoid
HardSigmoid HardSwish Tanh Softmax LogSoftmax Erf Gelu Clip Min Max Where Equal Less Greater Not And
Or Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization
LayerNormalization Flatten Reshape Transpose Concat Split Slice Gather GatherElements Squeeze
Unsqueeze Shape Size Expand Tile Constant ConstantOfShape Range Identity Cast CastLike Dropout
ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 ArgMax ArgMin CumSum Einsum TopK Pad
Resize Attention LSTM GRU RNN Scan""".split())
# Operators beyond the list that the importer also converts.
MORE = set("""
LessOrEqual GreaterOrEqual Xor Sum Mean Floor Ceil Round Sign Sin Cos Tan Atan Celu Softplus Softsign
ThresholdedRelu PRelu Mish Swish Shrink IsNaN IsInf Mod InstanceNormalization RMSNormalization
LpNormalization MeanVarianceNormalization ReduceL1 ReduceSumSquare ReduceLogSum ReduceLogSumExp
Trilu Hardmax OneHot EyeLike DepthToSpace SpaceToDepth Upsample NegativeLogLikelihoodLoss
SoftmaxCrossEntropyLoss""".split())

_NO_DTYPE = "a dtype the IR does not have (it has f16 f32 f64 i8 u8 i32 i64 bool)"
EXCLUDED = [
    (r"_(u?int16|uint32|uint64)(_|$)|int16|uint16", _NO_DTYPE),
    (r"bfloat16|_bf16|BFLOAT16|FLOAT8|FLOAT4|U?INT4|U?INT2|E8M0", _NO_DTYPE),
    (r"_string", _NO_DTYPE),
    (r"^test_attention_(?!.*_expanded$).*fp16", "float16 attention: the test's outputs were accumulated in float32; "
                                "nncompile computes in the input's float16, off by more than rtol 1e-3"),
    (r"^test_attention_(?!.*_expanded$).*(qk_matmul|nonpad|mask4d_padded_kv)",
     "Attention's qk_matmul_output output and nonpad_kv_seqlen input (external KV cache) are not supported"),
    (r"^test_attention_(?!.*_expanded$).*window(?!_default)", "sliding-window Attention (opset 25) is not supported"),
    (r"^test_(maxpool|averagepool|convtranspose)_3d", "3-D convolution and pooling: the IR's are 2-D"),
    (r"pool_2d_dilations", "dilated pooling is not supported"),
    (r"^test_maxpool_with_argmax", "MaxPool's Indices output is not supported"),
    (r"training_mode|^test_training_dropout", "training-mode BatchNormalization and Dropout: the "
                                              "importer is for inference"),
    (r"^test_constantofshape_|^test_range_|^test_(hann|hamming|blackman)window",
     "the output shape is the value of an input (Range, ConstantOfShape): IR shapes are fixed or "
     "symbolic when the model is imported"),
    (r"cubic|antialias|tf_crop_and_resize", "Resize: cubic, antialias and tf_crop_and_resize are not supported"),
    (r"^test_einsum_batch_diagonal", "Einsum with a repeated index (a diagonal) is not matmul-shaped"),
    (r"^test_identity_(sequence|opt)", "sequence and optional types are not supported"),
    (r"^test_reduce_(max|min|log_sum_exp)_empty_set(_bool)?$", "max/min over an empty axis has no identity; the IR "
                                                      "refuses it (LogSumExp is computed with max)"),
    (r"^test_mod_float_edge_cases_fmod_0", "Mod (fmod=0) of floats with inf, nan or zero operands: numpy's "
                                           "special cases, which a - b * floor(a / b) does not follow"),
    (r"^test_scan_sum$", "Scan of opset 8 (a batch axis and sequence_lens of its own) is not supported"),
]
# A representative case per kind of lowering, also run as compiled native code.
COMPILED = """test_conv_with_strides_padding test_convtranspose_pads test_maxpool_2d_pads
test_averagepool_2d_pads_count_include_pad test_globalaveragepool test_batchnorm_epsilon
test_layer_normalization_3d_axis1_epsilon test_gemm_all_attributes test_matmul_4d test_softmax_axis_1
test_reduce_mean_keepdims_example test_reduce_l2_do_not_keepdims_random test_argmax_keepdims_example
test_gather_1 test_slice_neg_steps test_concat_3d_axis_1 test_constant_pad test_resize_upsample_scales_linear
test_einsum_batch_matmul test_cumsum_2d_axis_1 test_top_k test_attention_4d_gqa test_gelu_tanh_2
test_where_long_example test_cast_FLOAT_to_DOUBLE test_tile test_expand_dim_changed
test_split_equal_parts_1d_opset18 test_gather_elements_0 test_hardswish test_selu_example
test_lstm_with_peepholes test_gru_seq_length test_simple_rnn_bidirectional""".split()


def _excluded(name: str) -> str | None:
    for pattern, reason in EXCLUDED:
        if re.search(pattern, name):
            return reason
    return None


def _params(names):
    return [pytest.param(n, id=n, marks=[pytest.mark.skip(reason=r)] if (r := _excluded(n)) else [])
            for n in names]


CASES = {c.name: c for c in node_cases() if {n.op_type for n in c.model.graph.node} <= LISTED | MORE}


def _check(backend, name: str) -> None:
    case = CASES[name]
    rep = backend.prepare(case.model)
    for inputs, outputs in case.data_sets:
        inputs, outputs = _arrays(inputs), _arrays(outputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # inf and nan are some cases' point
            got = rep.run(inputs)
        Runner.assert_similar_outputs(outputs, got, rtol=case.rtol, atol=case.atol)


def _arrays(values) -> list:
    """Some cases hold TensorProtos (the suite's runner writes them to files and reads arrays)."""
    return [numpy_helper.to_array(v) if isinstance(v, TensorProto) else v for v in values]


@pytest.mark.parametrize("name", _params(sorted(CASES)))
def test_node_reference(name):
    _check(Backend, name)


@pytest.mark.parametrize("name", _params(COMPILED))
def test_node_compiled(name):
    _check(CompiledBackend, name)
