"""Attention (opset 23+): softmax(Q K^T * scale + mask) V with grouped heads and a KV cache,
composed of matmul, softmax and selections."""
from __future__ import annotations

import math

import numpy as np

from nncompile.onnx.context import Context
from nncompile.onnx.importer import converter


def _heads(ctx: Context, value, heads: int | None, what: str):
    """(B, S, heads * D) -> (B, heads, S, D); 4-D inputs are already split into heads."""
    if value.type.rank == 4:
        return value
    if not heads:
        raise ctx.fail(f"3-D {what} needs the attribute {'q' if what == 'Q' else 'kv'}_num_heads")
    batch, seq, hidden = value.type.shape
    split = ctx.b.reshape(value, shape=[batch, seq, heads, hidden // heads])
    return ctx.b.transpose(split, perm=[0, 2, 1, 3])


def _repeat_heads(ctx: Context, value, groups: int):
    """(B, Hkv, S, D) -> (B, Hkv * groups, S, D), each head repeated `groups` times in place."""
    if groups == 1:
        return value
    batch, heads, seq, size = value.type.shape
    spread = ctx.b.broadcast(ctx.b.reshape(value, shape=[batch, heads, 1, seq, size]),
                             shape=[batch, heads, groups, seq, size])
    return ctx.b.reshape(spread, shape=[batch, heads * groups, seq, size])


@converter("Attention")
def _attention(ctx: Context) -> list:
    b = ctx.b
    if ctx.count > 6 and ctx.has(6) or any(ctx.node.output[3:]):
        raise ctx.fail("nonpad_kv_seqlen and the qk_matmul_output output are not supported")
    if ctx.attr("left_window_size", -1) != -1 or ctx.attr("right_window_size", -1) != -1:
        raise ctx.fail("sliding-window attention is not supported")
    three_d = ctx.rank(0) == 3
    q = _heads(ctx, ctx.plain(0), ctx.attr("q_num_heads"), "Q")
    k = _heads(ctx, ctx.plain(1), ctx.attr("kv_num_heads"), "K")
    v = _heads(ctx, ctx.plain(2), ctx.attr("kv_num_heads"), "V")
    past = 0
    if ctx.has(4):
        past = ctx.shape(4)[2]
        k = b.concat(ctx.plain(4), k, axis=2)
        v = b.concat(ctx.plain(5), v, axis=2)
    present_k, present_v = k, v
    groups = q.type.shape[1] // k.type.shape[1]
    k, v = _repeat_heads(ctx, k, groups), _repeat_heads(ctx, v, groups)
    scale = ctx.attr("scale") or 1 / math.sqrt(q.type.shape[-1])
    scores = b.mul(b.matmul(q, k, transpose_b=True), b.scalar(scale, q))
    softcap = ctx.attr("softcap", 0.0)
    if softcap > 0:
        scores = b.mul(b.tanh(b.div(scores, b.scalar(softcap, scores))), b.scalar(softcap, scores))
    scores = _masked(ctx, scores, past)
    weights = b.softmax(scores, axis=-1)
    # A row masked everywhere gives 0/0; ONNX defines its output as 0.
    weights = b.select(b.not_equal(weights, weights), b.scalar(0.0, weights), weights)
    y = b.matmul(weights, v)
    if three_d:
        batch, heads, seq, size = y.type.shape
        y = b.reshape(b.transpose(y, perm=[0, 2, 1, 3]), shape=[batch, seq, heads * size])
    return [y, present_k, present_v]


def _masked(ctx: Context, scores, past: int):
    b = ctx.b
    q_len, kv_len = scores.type.shape[-2:]
    if ctx.has(3):
        mask = ctx.plain(3)
        if mask.type.shape[-1] != kv_len:
            raise ctx.fail(f"a mask over {mask.type.shape[-1]} keys for {kv_len} keys is not supported")
        if mask.type.dtype.is_float:
            scores = b.add(scores, mask)
        else:
            scores = b.select(mask, scores, b.scalar(-np.inf, scores))
    if ctx.attr("is_causal", 0):
        allowed = np.arange(kv_len)[None, :] <= np.arange(q_len)[:, None] + past
        scores = b.select(b.constant(allowed), scores, b.scalar(-np.inf, scores))
    return scores
