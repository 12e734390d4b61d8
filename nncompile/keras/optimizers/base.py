"""The optimizer base: Keras 3's arguments and state, gradient clipping and weight decay, and the
emission of one training step's update into the step graph.

An optimizer never runs an update itself in the training loop. `build` makes its slot arrays
(numpy, named like Keras's optimizer variables, e.g. "adam/dense_kernel_momentum"); the trainer
binds them as parameters of the step graph; `emit_apply` appends, for every (parameter, gradient)
pair, the clipping, the weight decay and the update rule as elementwise IR (reductions only for
norms), declaring the new values with `Builder.update`. The learning rate and the step number
arrive as rank-0 inputs of the graph, so neither a schedule nor the bias corrections recompile.

Subclasses define the rule: `_slot_calls` (which slots, in Keras's creation order),
`_step_scalars` (values shared by all variables, computed once per step) and `_update`.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nncompile.ir.builder import Builder
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Value
from nncompile.ir.types import TensorType
from nncompile.keras.layers.arguments import warn_legacy
from nncompile.keras.layers.base import Variable
from nncompile.keras.optimizers import schedules
from nncompile.keras.optimizers.expr import Emission, Expr
from nncompile.runtime.reference import Interpreter

# Keys that tf.keras 2.11+ writes into optimizer configs and Keras 3 no longer has.
_TF_KERAS_KEYS = ("jit_compile", "is_legacy_optimizer")


class Optimizer:
    """Keras 3's optimizer base. `iterations` counts applied steps (the trainer increments it)."""

    _hyper: tuple[str, ...] = ()   # the subclass's own config keys, in Keras's order

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        owner = type(self).__name__
        learning_rate = _legacy_learning_rate(owner, learning_rate, kwargs)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        _refuse_unsupported(owner, use_ema=use_ema, loss_scale_factor=loss_scale_factor,
                            gradient_accumulation_steps=gradient_accumulation_steps)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                             f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        for arg, value in {**clips, "weight_decay": weight_decay}.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{owner}: argument `{arg}` must be a float or None. Received: {arg}={value!r}")
        self.name = name or _snake_case(owner)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.iterations = 0
        self.built = False
        self._learning_rate = self._rate(_checked_learning_rate(learning_rate))
        self._excluded_ids: set[int] = set()
        self._excluded_pattern: re.Pattern | None = None
        self._eager_graph = None

    # learning rate ---------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """As in Keras 3: a set learning rate is a float32 `Variable` (a callback may
        `assign` it); a schedule's or a callable's is its value for the next step."""
        lr = self._learning_rate
        return lr if isinstance(lr, Variable) else self.current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if (isinstance(self._learning_rate, schedules.LearningRateSchedule)
                and not isinstance(value, schedules.LearningRateSchedule) and not callable(value)):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not "
                            "settable. If you need the learning rate to be settable, you should "
                            "instantiate the optimizer with a float `learning_rate` argument.")
        value = _checked_learning_rate(value)
        if isinstance(value, float) and isinstance(self._learning_rate, Variable):
            self._learning_rate.assign(value)
        else:
            self._learning_rate = self._rate(value)

    def _rate(self, value):
        """A float learning rate as the optimizer's `learning_rate` Variable; others as given."""
        if not isinstance(value, float):
            return value
        return Variable(np.array(value, np.float32), "learning_rate", f"{self.name}/learning_rate", trainable=False)

    def current_learning_rate(self) -> float:
        """The learning rate for step `iterations + 1`, evaluated in Python (schedules take
        `iterations`, plain callables no argument, as in Keras)."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self.iterations))
        return float(lr() if callable(lr) and not isinstance(lr, Variable) else lr)

    def learning_rates(self, steps: int) -> np.ndarray:
        """The learning rates of the next `steps` steps (from step `iterations + 1`), float32. A
        schedule or a callable is asked once per step, with `iterations` at that step, as Keras
        asks it at each step; a set rate is read once (a fit of many small batches spent 15% of
        its time asking it again)."""
        lr = self._learning_rate
        if isinstance(lr, Variable) or not callable(lr):
            return np.full(steps, self.current_learning_rate(), np.float32)
        first, rates = self.iterations, []
        try:
            for k in range(steps):
                self.iterations = first + k
                rates.append(self.current_learning_rate())
        finally:
            self.iterations = first
        return np.asarray(rates, np.float32)

    # state -----------------------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list: Sequence | None = None,
                                  var_names: Sequence[str] | None = None) -> None:
        """Exempt these variables, and those whose name contains one of `var_names`, from weight decay."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer is built.")
        self._excluded_ids = {id(v) for v in var_list or ()}
        self._excluded_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def build(self, variables: Sequence) -> None:
        """Make the slot arrays for `variables` (objects with .path or .name, .shape, .dtype, or
        float numpy arrays), zero or at the rule's initial value, named like Keras's."""
        if self.built:
            return
        self._variables = list(variables)
        self._slot_arrays: dict[str, np.ndarray] = {}
        self._slot_names: list[dict[str, str]] = [{} for _ in self._variables]
        for kinds in self._slot_calls():
            for i, var in enumerate(self._variables):
                for kind in kinds:
                    name = f"{self.name}/{_variable_path(var, i).replace('/', '_')}_{kind}"
                    if name in self._slot_arrays:
                        raise ValueError(f"optimizer '{self.name}': two variables share the path of "
                                         f"{var!r}; slot {name!r} would be made twice")
                    self._slot_arrays[name] = self._slot_array(kind, var)
                    self._slot_names[i][kind] = name
        self._slot_arrays.update(self._extra_state())
        self._decays = [self.weight_decay is not None and self._use_weight_decay(v) for v in self._variables]
        self.built = True

    def slots(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every optimizer state array, in Keras's creation order: the step
        graph's parameters (bound by reference: updates land in these arrays) and what is saved."""
        self._require_built("slots()")
        return list(self._slot_arrays.items())

    # emission --------------------------------------------------------------------------------
    def emit_apply(self, b: Builder, pairs: Sequence[tuple[Value, Value | None]], slots: Mapping[str, Value],
                   lr: Value, step: Value) -> None:
        """Append one update to the step graph: `pairs` are (parameter, gradient) in the order of
        the variables given to `build`; `slots` maps the names of `slots()` to their graph
        parameters; `lr` and `step` (iterations + 1) are rank-0 f32 inputs. A None gradient
        leaves its variable alone (with Keras's warning); no variables at all (a frozen model)
        is no update, as in Keras."""
        if not pairs:
            return
        self._check_pairs(pairs, slots)
        missing = [_variable_path(self._variables[i], i) for i, (_, g) in enumerate(pairs) if g is None]
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss. "
                          "If using `model.compile()`, did you forget to provide a `loss` argument?",
                          stacklevel=2)
        em = Emission(b)
        live = [(i, em(p), em(g)) for i, (p, g) in enumerate(pairs) if g is not None]
        if not live:
            raise ValueError("No gradients provided for any variable.")
        grads = self._clip([g for _, _, g in live])
        lr, step = em(lr), em(step)
        shared = self._step_scalars(lr, step, slots)
        for (i, param, _), grad in zip(live, grads):
            dtype = param.dtype
            lr_i = lr.to(dtype)
            var = param - param * self.weight_decay * lr_i if self._decays[i] else param
            state = {kind: em(slots[name]) for kind, name in self._slot_names[i].items()}
            new_var, new_state = self._update(var, grad, state, lr_i,
                                              {k: v.to(dtype) for k, v in shared.items()})
            b.update(param.value, new_var.value)
            for kind, value in new_state.items():
                b.update(slots[self._slot_names[i][kind]], value.value)

    def _clip(self, grads: list[Expr]) -> list[Expr]:
        """Keras 3's `_clip_gradients`: per-variable norm, global norm, or value."""
        if self.clipnorm and self.clipnorm > 0:
            return [g * self.clipnorm / g.square().sum().sqrt().maximum(self.clipnorm) for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            squares = [g.square().sum().to(DType.f32) for g in grads]
            norm = squares[0]
            for s in squares[1:]:
                norm = norm + s
            norm = norm.sqrt()
            # A non-finite norm makes the scale NaN (norm - norm), as in Keras, rather than zero.
            scale = self.global_clipnorm * (1.0 / norm).minimum(1.0 / self.global_clipnorm) + (norm - norm)
            return [g * scale.to(g.dtype) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [g.maximum(-self.clipvalue).minimum(self.clipvalue) for g in grads]
        return grads

    # eager use -------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars) -> int:
        """Keras's eager update: one step for (gradient, variable) pairs; returns `iterations`."""
        grads, variables = zip(*grads_and_vars)
        self.apply(grads, variables)
        return self.iterations

    def apply(self, grads: Sequence, trainable_variables: Sequence | None = None) -> None:
        """One eager step: the emitted update runs on the reference interpreter and writes the new
        values into the variables' arrays (layer Variables or float numpy arrays) and the slots;
        then variables with a `constraint` are projected, as in Keras."""
        if trainable_variables is None:
            self._require_built("apply(grads) without variables")
            variables = self._variables
        else:
            variables = list(trainable_variables)
            self.build(variables)
            unknown = [v for v in variables if not any(v is w for w in self._variables)]
            if unknown or len(variables) != len(self._variables):
                raise ValueError(f"Unknown variable: {(unknown or variables)[0]!r}. This optimizer can only be "
                                 "called for the variables it was originally built with. When working with a "
                                 "new set of variables, you should recreate a new optimizer instance.")
            variables = self._variables
        if len(grads) != len(variables):
            raise ValueError(f"optimizer '{self.name}': received {len(grads)} gradients for "
                             f"{len(variables)} variables")
        if self._eager_graph is None:
            self._eager_graph = Interpreter(self._build_eager_graph())
        inputs = {f"grad_{i}": np.asarray(g, _float_dtype(v, self.name))
                  for i, (g, v) in enumerate(zip(grads, variables))}
        self._eager_graph.run({**inputs, "lr": np.float32(self.current_learning_rate()),
                               "step": np.float32(self.iterations + 1)})
        self.iterations += 1
        for var in variables:     # Keras projects constrained variables after the update
            if getattr(var, "constraint", None) is not None:
                var.assign(var.constraint(var.value))

    def _build_eager_graph(self):
        b = Builder(name=f"{self.name}_apply")
        pairs = []
        for i, var in enumerate(self._variables):
            array = _live_array(var, self.name)
            param = b.param(f"variable_{i}", array)
            pairs.append((param, b.input(f"grad_{i}", TensorType(param.type.dtype, array.shape))))
        slots = {name: b.param(name, array) for name, array in self._slot_arrays.items()}
        lr, step = b.input("lr", TensorType(DType.f32, ())), b.input("step", TensorType(DType.f32, ()))
        self.emit_apply(b, pairs, slots, lr, step)
        return b.finish([], [])

    # configuration ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        lr = self._learning_rate
        config = {
            "name": self.name,
            "learning_rate": schedules.serialize(lr) if isinstance(lr, schedules.LearningRateSchedule) else
            float(lr) if isinstance(lr, Variable) else lr,
            "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
            "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        config.update({key: getattr(self, key) for key in self._hyper})
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects=None) -> "Optimizer":
        config = {k: v for k, v in config.items() if k not in _TF_KERAS_KEYS}
        if isinstance(config.get("learning_rate"), Mapping):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self._learning_rate!r}>"

    # the rule: overridden by each optimizer --------------------------------------------------
    def _slot_calls(self) -> list[tuple[str, ...]]:
        """Slot kinds per variable, one tuple per Keras `add_optimizer_variables` call (a tuple's
        kinds are made variable by variable, the tuples one after another)."""
        return []

    def _initial_value(self, kind: str) -> float:
        return 0.0

    def _slot_array(self, kind: str, var) -> np.ndarray:
        """A new slot of `kind` for `var`: by default of the variable's shape and dtype, filled
        with `_initial_value(kind)` (Adafactor's factored slots have shapes of their own)."""
        return np.full(tuple(var.shape), self._initial_value(kind), _float_dtype(var, self.name))

    def _extra_state(self) -> dict[str, np.ndarray]:
        """State that belongs to no variable (Nadam's momentum cache)."""
        return {}

    def _step_scalars(self, lr: Expr, step: Expr, slots: Mapping[str, Value]) -> dict[str, Expr]:
        """Rank-0 values every variable's update shares (bias corrections), emitted once; a rule
        with state of its own updates it here (`lr.b.update`)."""
        return {}

    def _update(self, var: Expr, grad: Expr, state: dict[str, Expr], lr: Expr,
                shared: dict[str, Expr]) -> tuple[Expr, dict[str, Expr]]:
        raise NotImplementedError(f"optimizer {type(self).__name__} defines no update rule")

    # checks ----------------------------------------------------------------------------------
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"optimizer '{self.name}' is not built: call `optimizer.build(trainable_variables)` "
                             f"before {what}")

    def _check_pairs(self, pairs: Sequence, slots: Mapping[str, Value]) -> None:
        self._require_built("emit_apply()")
        if len(pairs) != len(self._variables):
            raise ValueError(f"optimizer '{self.name}' was built for {len(self._variables)} variables; "
                             f"emit_apply received {len(pairs)} (parameter, gradient) pairs")
        for i, (param, grad) in enumerate(pairs):
            shape = tuple(self._variables[i].shape)
            if param.type.shape != shape or (grad is not None and grad.type != param.type):
                path = _variable_path(self._variables[i], i)
                raise ValueError(f"optimizer '{self.name}': variable {i} ({path!r}) "
                                 f"has shape {shape}; received parameter {param.type} and gradient "
                                 f"{None if grad is None else grad.type}")
        missing = [name for name in self._slot_arrays if name not in slots]
        if missing:
            raise ValueError(f"optimizer '{self.name}': no graph parameter for slot {missing[0]!r}; "
                             f"pass every name of `slots()`")

    def _use_weight_decay(self, var) -> bool:
        if id(var) in self._excluded_ids:
            return False
        name = getattr(var, "name", None)
        return not (self._excluded_pattern and isinstance(name, str) and self._excluded_pattern.search(name))


def _legacy_learning_rate(owner: str, learning_rate, kwargs: dict):
    """Keras 2's `lr` (renamed) and `decay` (its inverse time decay, lr / (1 + decay * iterations),
    kept rather than ignored as Keras 3 does, so old tutorials train as their authors saw)."""
    if "lr" in kwargs:
        warn_legacy(f"{owner}: argument `lr` is the Keras 2 name of `learning_rate`; use `learning_rate`")
        learning_rate = kwargs.pop("lr")
    decay = kwargs.pop("decay", None)
    if decay:
        if isinstance(learning_rate, schedules.LearningRateSchedule) or callable(learning_rate):
            raise ValueError(f"{owner}: Keras 2's `decay` argument cannot be combined with a learning rate "
                             f"schedule. Received: decay={decay!r}, learning_rate={learning_rate!r}")
        warn_legacy(f"{owner}: argument `decay` is Keras 2's learning rate decay; use learning_rate="
                    f"keras.optimizers.schedules.InverseTimeDecay({learning_rate!r}, decay_steps=1, "
                    f"decay_rate={decay!r})")
        learning_rate = schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)
    return learning_rate


def _refuse_unsupported(owner: str, **args) -> None:
    for arg, value in args.items():
        if value:
            raise NotImplementedError(f"{owner}: `{arg}={value!r}` is not supported by nncompile; "
                                      f"leave `{arg}` at its default")


def _checked_learning_rate(value) -> float | schedules.LearningRateSchedule | Callable:
    if isinstance(value, schedules.LearningRateSchedule) or callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError("Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
                         "or a callable (that takes in the current iteration value and returns the "
                         f"corresponding learning rate value). Received instead: learning_rate={value!r}")
    return float(value)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _variable_path(var, index: int) -> str:
    """Keras names slots after the variable's path (or name); a bare array gets its index."""
    for attr in ("path", "name"):
        value = getattr(var, attr, None)
        if isinstance(value, str):
            return value
    return f"variable_{index}"


def _float_dtype(var, owner: str) -> np.dtype:
    dtype = np.dtype(var.dtype)
    if dtype.kind != "f":
        raise ValueError(f"optimizer '{owner}': variable {var!r} has dtype {dtype}; only float variables "
                         f"are trainable")
    return dtype


def _live_array(var, owner: str) -> np.ndarray:
    """The array an eager step writes into: a layer Variable's own, or the numpy array itself."""
    array = getattr(var, "value", var)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"optimizer '{owner}': cannot update {var!r} in place; expected a layer Variable "
                         f"or a float numpy array")
    _float_dtype(array, owner)
    return array
