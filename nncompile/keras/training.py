"""Training: what `Model.compile`, `fit`, `evaluate` and the `*_on_batch` calls do.

The whole training step is one IR graph: the forward pass in training mode, the losses (weighted
per output, plus the penalties of the weights' and the layer outputs' regularizers), the backward
pass (`passes.autodiff`), the optimizer's update of every trainable weight and of its own slots,
the moving statistics of BatchNormalization, and the per-batch statistics of every metric. It is
compiled once (the batch dimension stays symbolic, so the ragged last batch needs no recompile)
and runs as one native call per batch; weights and optimizer slots are parameters updated in
place. Evaluation uses the same graph without the backward pass and the updates.

Python keeps what is cheap and stateful: the epoch loop and batching, the learning-rate schedule
(fed to the step as a scalar), the running means of the loss and the metrics, and the callbacks.
That state is the model's, so calls on one model from several threads run one at a time.
"""
from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from nncompile import phases
from nncompile.ir import Builder, Graph, Value, f32
from nncompile.keras import callbacks as callbacks_module
from nncompile.keras import data
from nncompile.keras import epochs as epochs_module
from nncompile.keras import losses as losses_module
from nncompile.keras import metrics as metrics_module
from nncompile.keras import optimizers as optimizers_module
from nncompile.keras import regularizers
from nncompile.keras.layers.arguments import int_at_least, positive_int
from nncompile.keras.layers.base import collect_activity_penalties, ir_type
from nncompile.keras.layers.core import SEED_INPUT
from nncompile.keras.layers.recurrent import check_stateful_batch, stateful_rows
from nncompile.passes import crop_borders
from nncompile.passes.autodiff import gradients
from nncompile.runtime.cpu import executable
from nncompile.runtime.rows import take as take_rows

LEARNING_RATE = "learning_rate"
ITERATION = "iteration"
SAMPLE_WEIGHT = "sample_weight"
# fit gathers this many bytes of samples per native call of several steps (see _run_batches):
# they stay in the cache for the steps that read them (MNIST MLP batch 128: 9% faster an epoch
# than one shuffled copy of the data set).
CHUNK_BYTES = 4 << 20


@dataclass
class Compiled:
    """What `compile` fixed: per model output its loss (or None), loss weight and metrics."""

    optimizer: Any
    losses: list[Any]
    loss_weights: list[float]
    metrics: list[list[Any]]
    loss_tracker: Any
    output_losses: list[Any] = field(default_factory=list)   # one Mean per output (several outputs)
    weighted: set[int] = field(default_factory=set)          # ids of the weighted_metrics
    steps: dict = field(default_factory=dict)                 # (train, signature) -> _Step
    # Held for a whole fit / evaluate / *_on_batch: the steps, the optimizer's slots and the
    # running metrics are shared state. Reentrant, so a callback may evaluate during fit.
    lock: Any = field(default_factory=threading.RLock)

    def all_metrics(self) -> list:
        return [self.loss_tracker, *self.output_losses, *(m for ms in self.metrics for m in ms)]


def compile_model(model, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                  weighted_metrics=None) -> None:
    """Fix the optimizer, losses and metrics of `model` (Keras 3's `Model.compile`)."""
    names = list(model.output_names)
    per_output_loss = _per_output(loss, names, "loss")
    if all(l is None for l in per_output_loss):
        raise no_loss(model)
    losses = [None if l is None else losses_module.get(l) for l in per_output_loss]
    weights = _loss_weights(model, loss_weights, names)
    metric_lists = _per_output_lists(metrics, names) if metrics else [[] for _ in names]
    weighted = _per_output_lists(weighted_metrics, names) if weighted_metrics else [[] for _ in names]
    resolved, weighted_ids = [], set()
    for i, name in enumerate(names):
        shape = model.outputs[i].shape
        row = [metrics_module.get(m, loss=losses[i], output_shape=shape) for m in metric_lists[i]]
        heavy = [metrics_module.get(m, loss=losses[i], output_shape=shape) for m in weighted[i]]
        for m in heavy:   # as Keras 3: a weighted twin of a metric is named weighted_<name>
            if m.name in {r.name for r in row}:
                m.name = f"weighted_{m.name}"
        weighted_ids |= {id(m) for m in heavy}
        row += heavy
        if len(names) > 1:
            for m in row:
                m.name = f"{name}_{m.name}"
        resolved.append(row)
    model.optimizer = optimizers_module.get(optimizer)
    # as Keras 3: a loss per output only where more than one output has a loss
    outputs_losses = [metrics_module.Mean(name=f"{n}_loss") for n, l in zip(names, losses)
                      if l is not None] if sum(l is not None for l in losses) > 1 else []
    # As given, for the compile config that saving writes.
    model._compile_args = {"loss": loss, "loss_weights": loss_weights, "metrics": metrics,
                           "weighted_metrics": weighted_metrics}
    model._compiled = Compiled(model.optimizer, losses, weights, resolved,
                               metrics_module.Mean(name="loss"), outputs_losses, weighted=weighted_ids)
    model.stop_training = False


def no_loss(model) -> ValueError:
    return ValueError(f"Model '{model.name}': `compile()` needs a `loss`, e.g. "
                      f"model.compile(optimizer='adam', loss='mse')")


def _per_output(value, names: list[str], what: str) -> list:
    """A loss or loss weight for each output, from one value, a list or a dict by output name."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"`{what}` names output {unknown[0]!r}, which the model does not have; "
                             f"outputs: {names}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"`{what}` has {len(value)} entries but the model has {len(names)} "
                             f"outputs ({', '.join(names)})")
        return list(value)
    return [value] * len(names)


def _loss_weights(model, loss_weights, names: list[str]) -> list[float]:
    """One loss weight per output. Keras 2's third positional argument of `compile` was
    `metrics`, Keras 3's is `loss_weights`: Keras 3 takes `compile('adam', 'mse', ['mae'])` and
    fails in `fit` on the string; this says why, at `compile`."""
    weights = _per_output(1.0 if loss_weights is None else loss_weights, names, "loss_weights")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise TypeError(f"Model '{model.name}': `loss_weights` of `compile()` must be numbers "
                            f"(one, a list with one per output, or a dict by output name). "
                            f"Received: loss_weights={loss_weights!r}. The third positional "
                            f"argument of `compile()` is `loss_weights` in Keras 3; in Keras 2 it "
                            f"was `metrics`: pass metrics by keyword, e.g. "
                            f"compile(optimizer, loss, metrics=['accuracy']).")
    return [float(w) for w in weights]


def _per_output_lists(metrics, names: list[str]) -> list[list]:
    if isinstance(metrics, Mapping):
        _per_output(metrics, names, "metrics")   # checks the names
        return [_as_list(metrics.get(n, [])) for n in names]
    metrics = list(_as_list(metrics))
    if len(names) > 1 and len(metrics) == len(names) and all(isinstance(m, (list, tuple)) for m in metrics):
        return [list(m) for m in metrics]
    return [list(metrics) for _ in names]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# --- the step graphs ---------------------------------------------------------------------------

class _Step:
    """One compiled step graph, the order of its data inputs, and how many statistics each
    metric contributes to its outputs (after the loss and the per-output losses)."""

    def __init__(self, graph: Graph, counts: list[int], stateful: tuple | None = None,
                 constrained: Sequence = ()):
        self.graph = graph
        self.stateful = stateful   # a stateful layer and the batch size it runs on (`stateful_rows`)
        # (weight, constraint) of the weights it trains that have one when it is built: applied
        # after each step from then on, as Keras 3's compiled step applies what it traced
        self.constrained = list(constrained)
        self.exe = executable(graph)
        self.names = [v.name for v in graph.data_inputs]
        self.counts = counts

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outs = self.exe(*[feeds[n] for n in self.names])
        return outs if isinstance(outs, list) else [outs]

    def run_steps(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Many steps in one call: every feed has a leading axis of steps."""
        return self.exe.run_steps(*[feeds[n] for n in self.names])


def _target_name(output: str) -> str:
    return f"target/{output}"


@phases.timed("trace")
def build_step_graph(model, compiled: Compiled, targets: Sequence[np.ndarray], train: bool,
                     weight_shape: tuple[int, ...] = ()) -> tuple[Graph, list[int]]:
    """The training (or test) step of `model` as one graph, and the number of statistics each
    metric gives; `targets` give the label types, `weight_shape` that of a sample's weights
    (() for one weight a sample, else one a timestep or entry of its loss)."""
    b = Builder(name="train_step" if train else "test_step")
    xs = [b.input(t.history.layer.name, ir_type(t.shape, t.dtype, t.history.layer.name))
          for t in model.inputs]
    with collect_activity_penalties() as activity_penalties:
        preds, masks = model._emit_masked_calls(b, xs, [None] * len(xs), train)
    ys = [b.input(_target_name(name), ir_type(_per_sample(y.shape[1:], pred), str(y.dtype), name))
          for name, y, pred in zip(model.output_names, targets, preds)]
    weighed = next((p for p, loss in zip(preds, compiled.losses) if loss is not None), preds[0])
    weight = b.input(SAMPLE_WEIGHT, ir_type(_per_sample(weight_shape, weighed), "float32", SAMPLE_WEIGHT))
    total, per_output = None, []
    for loss, scale, y, pred, mask in zip(compiled.losses, compiled.loss_weights, ys, preds, masks):
        if loss is None:
            continue
        # As in Keras 3, the loss counts only the entries the output's mask keeps.
        value = loss.emit(b, y, pred, weight, None if mask is None else mask.keep(b))
        per_output.append(value)
        term = value if scale == 1.0 else b.mul(value, b.scalar(scale, value))
        total = term if total is None else b.add(total, term)
    for penalty in [*_penalties(model, b), *activity_penalties]:
        total = b.add(total, penalty)
    stats, counts = [], []
    for metric_row, y, pred, mask in zip(compiled.metrics, ys, preds, masks):
        for metric in metric_row:
            # As in Keras 3, only `weighted_metrics` see the sample weights.
            values = metric.emit(b, y, pred, _metric_weight(b, metric, weight if id(metric) in compiled.weighted
                                                            else None, mask))
            stats += values
            counts.append(len(values))
    outputs = [total, *(per_output if len(per_output) > 1 else []), *stats]
    if train:
        _emit_update(model, compiled.optimizer, b, total, outputs)
    return b.finish(outputs, [f"out{i}" for i in range(len(outputs))]), counts


def _per_sample(dims: tuple, pred: Value) -> tuple:
    """The step graph's shape of targets or sample weights whose sample has `dims`: the batch
    unknown, and an axis whose size the output leaves to its input (a sequence of any length)
    the output's symbol, so that the step runs on sequences of every length and the loss sees
    the shapes agree."""
    shape = pred.type.shape
    return (None, *(shape[a] if a < len(shape) and isinstance(shape[a], str) else d
                    for a, d in enumerate(dims, start=1)))


def _metric_weight(b: Builder, metric, weight: Value | None, mask) -> Value | None:
    """The weights a metric sees: as in Keras 3, a mean of a per-entry function (accuracy, a
    loss as a metric) counts only the entries the output's mask keeps, times the sample weights
    if it is weighted; other metrics ignore the mask."""
    if mask is None or not isinstance(metric, metrics_module.MeanMetricWrapper):
        return weight
    keep = b.cast(mask.keep(b), dtype=f32)
    if weight is None:
        return keep
    while weight.type.rank < keep.type.rank:
        weight = b.reshape(weight, shape=[*weight.type.shape, 1])
    return b.mul(keep, weight)


def _penalties(model, b: Builder) -> list[Value]:
    """The regularization penalties of the weights that are in the graph."""
    out = []
    for var in model.weights:
        param = _param_of(b.graph, var) if var.regularizer is not None else None
        if param is not None:
            out.append(regularizers.emit_penalty(var.regularizer, b, param,
                                                 f"The regularizer of weight '{var.path}'"))
    return out


def _param_of(graph: Graph, var) -> Value | None:
    for v in graph.param_inputs:
        if graph.params[v.name] is var.value:
            return v
    return None


def _emit_update(model, optimizer, b: Builder, loss: Value, outputs: list[Value]) -> None:
    """The backward pass and the optimizer's update of every trainable weight the step reads.
    First the forward pass computes only what is read of each image (`crop_borders`), so that
    the backward pass does not carry the unread borders either."""
    crop_borders.crop(b.graph, [loss, *outputs, *b.updated])
    variables = [v for v in model.trainable_weights if _param_of(b.graph, v) is not None]
    params = [_param_of(b.graph, v) for v in variables]
    grads = gradients(b.graph, loss, params)
    optimizer.build(variables)
    slots = {name: b.param(f"optimizer/{name}", array) for name, array in optimizer.slots()}
    lr = b.input(LEARNING_RATE, f32[()])
    step = b.input(ITERATION, f32[()])
    optimizer.emit_apply(b, list(zip(params, grads)), slots, lr, step)


def step_for(model, targets: Sequence[np.ndarray], weights: np.ndarray, train: bool) -> _Step:
    """The compiled step for targets and sample weights of these shapes and dtypes (built once
    per signature)."""
    compiled = model._compiled
    key = (train, tuple((y.shape[1:], y.dtype.str) for y in targets), weights.shape[1:])
    step = compiled.steps.get(key)
    if step is None:
        constrained = [(v, v.constraint) for v in model.trainable_weights if v.constraint is not None] if train else []
        step = compiled.steps[key] = _Step(*build_step_graph(model, compiled, targets, train,
                                                             weights.shape[1:]), stateful_rows(model.layers),
                                           constrained)
    return step


# --- data ---------------------------------------------------------------------------------------

def standardize_data(model, x, y, sample_weight, class_weight=None) -> tuple[list, list, np.ndarray]:
    """The inputs, the targets and one weight per sample, checked against the model and against
    each other (the same number of samples in every array)."""
    xs = model._standardize(x)
    ys = standardize_targets(model, y, model._compiled.losses)
    sample_weight = _shared_sample_weight(model, sample_weight)
    weight = None if sample_weight is None else data.numeric_array(sample_weight, "`sample_weight`")
    data.check_cardinality(model.name, [
        *((f'input "{n}"', len(a)) for n, a in zip(model.input_names, xs)),
        *((f'target "{n}"', len(a)) for n, a in zip(model.output_names, ys)),
        *([("`sample_weight`", len(weight))] if weight is not None and weight.ndim else [])])
    return xs, ys, sample_weights(ys[0], weight, class_weight, _entry_shape(ys[0], model._compiled.losses[0]))


def _shared_sample_weight(model, sample_weight):
    """One array of sample weights for every output. Keras also takes one per output (a list,
    or a dict by output name): nncompile takes those when they are all the same array, and
    says so when they differ rather than weighting every output by one of them."""
    names = list(model.output_names)
    if isinstance(sample_weight, Mapping):
        given = [w for w in _per_output(sample_weight, names, "sample_weight") if w is not None]
    elif isinstance(sample_weight, (list, tuple)) and len(sample_weight) == len(names) and \
            all(isinstance(w, np.ndarray) or w is None for w in sample_weight):
        given = [w for w in sample_weight if w is not None]
    else:
        return sample_weight
    if not given:
        return None
    arrays = [data.numeric_array(w, "`sample_weight`") for w in given]
    if len(arrays) < len(names) or any(not np.array_equal(a, arrays[0]) for a in arrays[1:]):
        raise ValueError(f"Model '{model.name}' received a `sample_weight` per output "
                         f"({', '.join(names)}) and they differ; nncompile weights every output's "
                         f"loss by one array of sample weights. Pass one array (and weigh the "
                         f"outputs against each other with `loss_weights` in `compile()`).")
    return arrays[0]


def _entry_shape(y: np.ndarray, loss) -> tuple[int, ...]:
    """The shape of a sample's loss before its reduction: a loss reduces the last (class or
    feature) axis of dense targets; sparse targets hold one class per entry."""
    if _is_sparse(loss) and y.shape[-1:] != (1,):
        return y.shape[1:]
    return y.shape[1:-1]


def standardize_targets(model, y, losses: Sequence) -> list[np.ndarray]:
    """The targets in output order, as arrays the loss can take (checked against the outputs)."""
    names = list(model.output_names)
    if y is None:
        items = [None] * len(names)
    elif isinstance(y, Mapping):
        items = _per_output(y, names, "y")
    elif len(names) > 1:
        items = list(y)
        if len(items) != len(names):
            raise ValueError(f"Model '{model.name}' has {len(names)} outputs ({', '.join(names)}) "
                             f"but received {len(items)} target arrays")
    else:
        items = [y]
    return [_target_array(model, i, item, loss) for i, (item, loss) in enumerate(zip(items, losses))]


def _target_array(model, index: int, item, loss) -> np.ndarray:
    name = model.output_names[index]
    where = f'The target `y` of output "{name}" of model "{model.name}"'
    if item is None and loss is not None:
        raise ValueError(f"{where} is required: the model was compiled with a loss for this "
                         f"output. Received: y=None")
    array = data.numeric_array(item, where)
    if array.ndim == 1 and len(model.outputs[index].shape) == 2 and not _is_sparse(loss):
        array = array[:, None]   # Keras adds the trailing axis of size 1
    if loss is not None:
        losses_module.check_targets(loss, array, model.outputs[index].shape)
    if _is_sparse(loss) and array.dtype.kind in "iu":
        return data.cast(array, np.int32, where)
    return array.astype(np.float32, copy=False)


def _is_sparse(loss) -> bool:
    return loss is not None and "sparse" in type(loss).__name__.lower()


def sample_weights(y0: np.ndarray, sample_weight: np.ndarray | None, class_weight,
                   entry_shape: tuple[int, ...] = ()) -> np.ndarray:
    """The weights of the samples: one a sample, or (per-timestep outputs, images) one per entry
    of a sample's loss, `entry_shape`, as Keras 3 takes them. `class_weight` multiplies them by
    the weight of each sample's class."""
    count = len(y0)
    if sample_weight is None:
        weights = np.ones(count, np.float32)
    elif sample_weight.shape in ((count,), (count, 1)):
        weights = sample_weight.astype(np.float32).reshape(count)
    elif entry_shape and sample_weight.shape == (count, *entry_shape):
        weights = sample_weight.astype(np.float32)
    else:
        temporal = f" or one per entry of the loss, {(count, *entry_shape)}" if entry_shape else ""
        raise ValueError(f"`sample_weight` must hold one weight per sample: expected shape "
                         f"({count},) or ({count}, 1){temporal}. Received shape {sample_weight.shape}")
    if class_weight:
        if entry_shape:
            raise ValueError(f"`class_weight` gives one weight per sample from its class, but the "
                             f"targets of shape {y0.shape} hold a class per entry: pass those "
                             f"entries' weights as `sample_weight` of shape "
                             f"{(count, *entry_shape)} instead")
        labels = y0.reshape(count, -1)
        classes = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].round().astype(int)
        per_sample = np.array([class_weight.get(int(c), 1.0) for c in classes], np.float32)
        weights = weights * per_sample.reshape((count,) + (1,) * (weights.ndim - 1))
    return weights


# --- loops ----------------------------------------------------------------------------------------

def _run_batches(model, step: _Step, xs, ys, weights, batch_size, train: bool, on_batch, order=None,
                 steps=None, chunked=False) -> None:
    """One pass over the data in batches of `batch_size` (in `order`, at most `steps` batches).

    `chunked`: the full batches run as one native call (`Executable.run_steps`) and `on_batch`
    hears of them once, after the last, as with Keras's `steps_per_execution`; the ragged last
    batch, if any, runs on its own."""
    count = len(xs[0])
    batches = -(-count // batch_size) if steps is None else min(steps, -(-count // batch_size))
    full = min(batches, count // batch_size)
    done = 0
    for size in {min(batch_size, count), count - (batches - 1) * batch_size} if batches else ():
        check_stateful_batch(step.stateful, size)   # before any batch runs
    if chunked and full > 1:
        # Samples are gathered a chunk of steps at a time, small enough to stay in the cache for
        # the native steps that read them, not as one shuffled copy of the whole data set.
        row_bytes = sum(a[:1].nbytes for a in [*xs, *ys, weights])
        chunk = max(1, CHUNK_BYTES // max(1, row_bytes * batch_size))
        for first in range(0, full, chunk):
            steps_here = min(chunk, full - first)
            span = slice(first * batch_size, (first + steps_here) * batch_size)
            index = order[span] if order is not None else span
            feeds = _feeds(model, xs, ys, weights, index, train, steps_here, batch_size)
            _merge(model._compiled, step.counts, step.run_steps(feeds), batch_size)
        done = full
        if on_batch(full - 1, logs_of(model._compiled)) is False:
            return
    for number in range(done, batches):
        start = number * batch_size
        index = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        feeds = _feeds(model, xs, ys, weights, index, train, None, None)
        _merge(model._compiled, step.counts, [o[None] for o in step(feeds)], len(feeds[SAMPLE_WEIGHT]))
        if train:
            _constrain(step)
        if on_batch(number, logs_of(model._compiled)) is False:
            break


def _constrain(step: _Step) -> None:
    """Project the weights the step trains that have a constraint back onto it, after each step,
    as Keras does."""
    for var, constraint in step.constrained:
        var.assign(constraint(var.numpy()))


def _feeds(model, xs, ys, weights, index, train: bool, steps: int | None, batch_size: int | None) -> dict:
    """The step's inputs for the samples at `index`: one batch, or `steps` batches stacked (each
    array then has a leading axis of steps, the learning rate and step number one per step)."""
    def cut(array):
        part = take_rows(array, index) if isinstance(index, np.ndarray) else array[index]
        return part if steps is None else part.reshape((steps, batch_size) + array.shape[1:])

    feeds = {name: cut(x) for name, x in zip(model.input_names, xs)}
    feeds.update((_target_name(n), cut(y)) for n, y in zip(model.output_names, ys))
    feeds[SAMPLE_WEIGHT] = cut(weights)
    if train:
        optimizer = model._compiled.optimizer
        first = optimizer.iterations
        rates = optimizer.learning_rates(steps or 1)
        optimizer.iterations = first + (steps or 1)
        numbers = np.arange(first, first + (steps or 1))
        feeds[LEARNING_RATE] = rates if steps else np.asarray(rates[0])
        feeds[ITERATION] = (numbers + 1).astype(np.float32) if steps else np.asarray(first + 1, np.float32)
        feeds[SEED_INPUT] = (numbers + model._seed).astype(np.int64) if steps else np.asarray(model._seed + first, np.int64)
    return feeds


def _merge(compiled: Compiled, counts: list[int], outs: list[np.ndarray], batch: int) -> None:
    """Add the statistics of some steps (each output with a leading axis of steps; every step's
    batch of `batch` samples) to the running loss and metrics: their statistics add up."""
    steps = len(outs[0])
    weight = np.asarray(float(batch * steps))
    compiled.loss_tracker.merge([np.asarray(float(np.sum(outs[0], dtype=np.float64)) * batch), weight])
    at = 1
    for tracker in compiled.output_losses:
        tracker.merge([np.asarray(float(np.sum(outs[at], dtype=np.float64)) * batch), weight])
        at += 1
    for metric, n in zip((m for row in compiled.metrics for m in row), counts):
        metric.merge([np.sum(o, axis=0, dtype=np.float64) for o in outs[at:at + n]])
        at += n


def logs_of(compiled: Compiled) -> dict[str, float | np.ndarray]:
    """Each metric's result: a float, or a float32 array for a metric whose result is one
    (`F1Score(average=None)`), as Keras 3's logs and History hold them (its progress bar shows
    the array's mean)."""
    return {m.name: _log_value(m.result()) for m in compiled.all_metrics()}


def _log_value(result) -> float | np.ndarray:
    value = np.asarray(result)
    return float(value) if value.ndim == 0 else value.astype(np.float32)


def reset(compiled: Compiled) -> None:
    for m in compiled.all_metrics():
        m.reset_state()


def _exclusive(function):
    """`function(model, ...)` run holding the model's training lock: a second thread's fit,
    evaluate or *_on_batch on the same model waits for this one to end, as if called after it."""
    @functools.wraps(function)
    def locked(model, *args, **kwargs):
        with require_compiled(model, function.__name__).lock:
            return function(model, *args, **kwargs)
    return locked


@_exclusive
def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
        sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
        validation_batch_size=None, validation_freq=1, **legacy):
    """Keras 3's `Model.fit`; returns the History."""
    if "nb_epoch" in legacy:
        warnings.warn("fit(nb_epoch=...) is the Keras 1 form of `epochs`; use `epochs`",
                      DeprecationWarning, stacklevel=4)
        epochs = legacy.pop("nb_epoch")
    if legacy:
        raise TypeError(f"fit() got unexpected keyword arguments: {sorted(legacy)}")
    owner = f"fit() of model '{model.name}'"
    batch_size = data.batch_size(batch_size, owner)
    epochs = int_at_least(epochs, 0, "epochs", owner)
    initial_epoch = int_at_least(initial_epoch, 0, "initial_epoch", owner)
    steps_per_epoch = data.optional_count(steps_per_epoch, "steps_per_epoch", owner)
    validation_steps = data.optional_count(validation_steps, "validation_steps", owner)
    validation_batch_size = data.batch_size(validation_batch_size, owner, "validation_batch_size",
                                            default=batch_size)
    validation_freq = positive_int(validation_freq, "validation_freq", owner)
    compiled = model._compiled
    train = epochs_module.arrays_or_stream(model, x, y, sample_weight, class_weight, batch_size,
                                           shuffle, steps_per_epoch)
    if validation_data is not None:   # Keras ignores `validation_split` then
        val = epochs_module.validation_source(model, validation_data, validation_batch_size,
                                              validation_steps)
    else:
        train, val = epochs_module.split(train, validation_split, validation_batch_size,
                                         validation_steps, owner)
    model._seed = int(np.random.randint(0, 2**31))
    verbose = 1 if verbose == "auto" else verbose
    cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                        model=model, verbose=verbose, epochs=epochs,
                                        steps=train.steps)
    model.stop_training = False
    constrained = [v for v in model.trainable_weights if v.constraint is not None]
    if isinstance(train, epochs_module.Arrays):   # compiled before the clock of the first epoch
        constrained = step_for(model, train.ys, train.weights, train=True).constrained
    # Steps run many per call unless a callback or a weight constraint must act after each one.
    chunked = not _wants_batches(cbs, "train") and not constrained
    cbs.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        reset(compiled)
        cbs.on_epoch_begin(epoch)

        ran = []

        def on_batch(number, batch_logs):
            ran.append(number)
            cbs.on_train_batch_end(number, batch_logs)
            return not model.stop_training

        epochs_module.run_epoch(model, train, True, on_batch, chunked)
        if train.ran_out:   # a generator at its end: this epoch is the last, if it ran at all
            model.stop_training = True
            if not ran:
                break
        logs = logs_of(compiled)
        if val is not None and (epoch + 1) % validation_freq == 0:
            val_logs = _evaluate_source(model, val, cbs)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return model.history


def _wants_batches(cbs, mode: str) -> bool:
    """Whether a callback acts on single batches (beyond the progress bar and the History), so
    that each batch must be its own call rather than part of one multi-step call."""
    base = callbacks_module.Callback
    hooks = [f"on_{mode}_batch_begin", f"on_{mode}_batch_end"] + (
        ["on_batch_begin", "on_batch_end"] if mode == "train" else [])
    quiet = (callbacks_module.ProgbarLogger, callbacks_module.History)
    return any(getattr(type(c), h) is not getattr(base, h) or h in vars(c)
               for c in cbs.callbacks if not isinstance(c, quiet) for h in hooks)


@_exclusive
def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False):
    """Keras 3's `Model.evaluate`: the loss, or [loss, *metrics], or a dict of them."""
    owner = f"evaluate() of model '{model.name}'"
    batch_size = data.batch_size(batch_size, owner)
    steps = data.optional_count(steps, "steps", owner)
    source = epochs_module.arrays_or_stream(model, x, y, sample_weight, None, batch_size, False,
                                            steps)
    cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=model,
                                        verbose=1 if verbose == "auto" else verbose, epochs=1,
                                        steps=source.steps)
    return _result(_evaluate_source(model, source, cbs), return_dict)


def _evaluate_source(model, source, cbs) -> dict[str, float]:
    """Run the test step over arrays or a stream; the logs (loss and metrics) at the end."""
    compiled = model._compiled
    reset(compiled)
    if isinstance(source, epochs_module.Arrays):
        step_for(model, source.ys, source.weights, train=False)
    cbs.on_test_begin()
    epochs_module.run_epoch(model, source, False, lambda n, logs: cbs.on_test_batch_end(n, logs),
                            chunked=not _wants_batches(cbs, "test"))
    logs = logs_of(compiled)
    cbs.on_test_end(logs)
    return logs


def require_compiled(model, what: str) -> Compiled:
    compiled = getattr(model, "_compiled", None)
    if compiled is None and getattr(model, "_pending_compile", None) is not None:
        raise ValueError(f"Model '{model.name}' is not built yet, so its `compile()` is waiting "
                         f"for the shape of its inputs (called `{what}()`): build it with "
                         f"`model.build(input_shape)` or by calling fit, evaluate or predict on "
                         f"arrays first.")
    if compiled is None:
        raise RuntimeError(f"You must call `compile()` before using the model '{model.name}' "
                           f"(called `{what}()`).")
    return compiled


@_exclusive
def train_on_batch(model, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
    xs, ys, weights = standardize_data(model, x, y, sample_weight, class_weight)
    if not hasattr(model, "_seed"):
        model._seed = int(np.random.randint(0, 2**31))
    reset(model._compiled)   # as Keras 3: the logs of this batch alone, not a running mean
    step = step_for(model, ys, weights, train=True)
    _run_batches(model, step, xs, ys, weights, max(len(xs[0]), 1), True, lambda n, logs: None)
    return _result(logs_of(model._compiled), return_dict)


@_exclusive
def test_on_batch(model, x, y=None, sample_weight=None, return_dict=False):
    xs, ys, weights = standardize_data(model, x, y, sample_weight)
    reset(model._compiled)
    step = step_for(model, ys, weights, train=False)
    _run_batches(model, step, xs, ys, weights, max(len(xs[0]), 1), False, lambda n, logs: None)
    return _result(logs_of(model._compiled), return_dict)


def _result(logs: dict[str, float], return_dict: bool):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values

