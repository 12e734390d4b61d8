"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: the class picked by a one-hot mask."""
from __future__ import annotations

import numpy as np

from nncompile.onnx.context import Context
from nncompile.onnx.importer import converter


def _nll(ctx: Context, log_probs, target, weight):
    """ONNX's NegativeLogLikelihoodLoss of (N, C, d...) log-probabilities and (N, d...) classes."""
    b = ctx.b
    rank, classes = log_probs.type.rank, log_probs.type.shape[1]
    shape = list(target.type.shape)
    shape.insert(1, 1)
    iota_shape = [1] * rank
    iota_shape[1] = classes
    iota = b.constant(np.arange(classes, dtype=target.type.dtype.numpy).reshape(iota_shape))
    hot = b.equal(b.reshape(target, shape=shape), iota)
    zero = b.scalar(0, log_probs)
    picked = b.reduce_sum(b.select(hot, log_probs, zero), axes=[1], keepdims=False)
    if weight is not None:
        w = b.reduce_sum(b.select(hot, b.reshape(weight, shape=iota_shape), zero), axes=[1], keepdims=False)
    else:
        w = b.broadcast(b.scalar(1, log_probs), shape=target.type.shape)
    ignore = ctx.attr("ignore_index")
    if ignore is not None:
        kept = b.not_equal(target, b.constant(np.asarray(ignore, target.type.dtype.numpy)))
        w = b.select(kept, w, zero)
    loss = b.neg(b.mul(picked, w))
    reduction = ctx.attr("reduction", "mean")
    axes = list(range(loss.type.rank))
    if reduction == "none":
        return loss
    total = b.reduce_sum(loss, axes=axes, keepdims=False)
    if reduction == "sum":
        return total
    return b.div(total, b.reduce_sum(w, axes=axes, keepdims=False))


@converter("NegativeLogLikelihoodLoss")
def _nll_loss(ctx: Context) -> list:
    return [_nll(ctx, ctx.plain(0), ctx.plain(1), ctx.plain(2) if ctx.has(2) else None)]


@converter("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(ctx: Context) -> list:
    log_probs = ctx.b.log_softmax(ctx.plain(0), axis=1)
    return [_nll(ctx, log_probs, ctx.plain(1), ctx.plain(2) if ctx.has(2) else None), log_probs]
