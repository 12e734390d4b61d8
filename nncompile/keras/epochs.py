"""The data of an epoch and the loops over it: arrays cut into batches, or a stream of
batches (`streaming.Stream`) run one native call each."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncompile.keras import data, streaming, training

# Batches of a stream between two reports to the callbacks when none acts on single batches:
# the logs and the callbacks cost a tenth of an MNIST MLP step of batch 128.
REPORT_EVERY = 16


@dataclass
class Arrays:
    """Standardized arrays (inputs, targets, weights) that each epoch cuts into batches of
    `batch_size`, at most `limit` of them, in an order drawn anew when `shuffle`."""

    xs: list
    ys: list
    weights: np.ndarray
    batch_size: int
    shuffle: Any = False
    limit: int | None = None
    ran_out = False   # arrays are read again each epoch (a Stream may run out)

    @property
    def steps(self) -> int:
        return -(-len(self.xs[0]) // self.batch_size) if self.limit is None else self.limit

    def part(self, piece: slice, shuffle, batch_size: int, limit: int | None) -> "Arrays":
        return Arrays([a[piece] for a in self.xs], [a[piece] for a in self.ys],
                       self.weights[piece], batch_size, shuffle, limit)


def arrays_or_stream(model, x, y, sample_weight, class_weight, batch_size: int, shuffle,
                     steps: int | None) -> "Arrays | streaming.Stream":
    """The data of a fit or evaluate: arrays, or a stream of batches (a PyDataset, generator or
    other iterable, which holds its targets and weights itself)."""
    if streaming.is_stream(x):
        streaming.refuse_arguments(x, y, sample_weight)
        return streaming.Stream(x, shuffle, steps, class_weight)
    return Arrays(*training.standardize_data(model, x, y, sample_weight, class_weight), batch_size,
                  shuffle, steps)


def validation_source(model, validation_data, batch_size: int, steps: int | None):
    """`validation_data`: a stream, or a tuple (x, y) or (x, y, sample_weight) of arrays."""
    if streaming.is_stream(validation_data):
        return streaming.Stream(validation_data, False, steps)
    return arrays_or_stream(model, *_validation_tuple(validation_data), None, batch_size, False, steps)


def split(train, validation_split, batch_size: int, steps: int | None, owner: str):
    """The samples trained on and the last `validation_split` of them held out, or None."""
    if isinstance(train, streaming.Stream):
        streaming.refuse_split(train.source, validation_split)
        return train, None
    count = len(train.xs[0])
    kept = data.training_count(validation_split, count, owner)
    if kept == count:
        return train, None
    return (train.part(slice(None, kept), train.shuffle, train.batch_size, train.limit),
            train.part(slice(kept, None), False, batch_size, steps))


def run_epoch(model, source, train: bool, on_batch, chunked: bool) -> None:
    """One pass of the step over `source` (arrays or a stream)."""
    if isinstance(source, streaming.Stream):
        run_stream(model, source, train, on_batch, chunked)
        return
    order = _order(len(source.xs[0]), source.batch_size, source.shuffle)
    step = training.step_for(model, source.ys, source.weights, train)
    training._run_batches(model, step, source.xs, source.ys, source.weights, source.batch_size,
                          train, on_batch, order, source.limit, chunked)


def _validation_tuple(val) -> tuple:
    if isinstance(val, tuple) and len(val) in (2, 3):
        return val if len(val) == 3 else (*val, None)
    raise ValueError("`validation_data` should be a tuple (x_val, y_val) or (x_val, y_val, "
                     f"val_sample_weights); received {type(val).__name__}")


def _order(count: int, batch_size: int, shuffle) -> np.ndarray | None:
    if shuffle == "batch":
        starts = np.random.permutation(np.arange(0, count, batch_size))
        return np.concatenate([np.arange(s, min(s + batch_size, count)) for s in starts]) if count else None
    return np.random.permutation(count) if shuffle else None


def run_stream(model, stream: streaming.Stream, train: bool, on_batch, chunked: bool) -> None:
    """One epoch of a stream, one native call a batch: only the batches the stream reads ahead
    and the one being run are held. `chunked`: no callback acts on single batches, so they
    hear of every REPORT_EVERY-th batch and of the last, as of array batches run in chunks."""
    number = reported = -1
    with contextlib.closing(stream.epoch()) as batches:
        for number, batch in enumerate(batches):
            x, y, weight = streaming.unpack(batch, stream.class_weight)
            xs, ys, weights = training.standardize_data(model, x, y, weight, stream.class_weight)
            step = training.step_for(model, ys, weights, train)
            feeds = training._feeds(model, xs, ys, weights, slice(None), train, None, None)
            outs = [o[None] for o in step(feeds)]
            training._merge(model._compiled, step.counts, outs, len(weights))
            if train:
                training._constrain(step)
            if chunked and (number + 1) % REPORT_EVERY:
                continue
            reported = number
            if on_batch(number, training.logs_of(model._compiled)) is False:
                return
    if reported != number:
        on_batch(number, training.logs_of(model._compiled))


