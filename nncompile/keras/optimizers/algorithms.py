"""The Keras 3 optimizers: defaults, slots and update rules as Keras 3 writes them.

Each `_update` is Keras's `update_step` transcribed onto `Expr` (the IR with arithmetic), and it
keeps Keras's order of operations, so the float32 results round the way Keras's do. Values that
depend only on the step (bias corrections, Nadam's momentum cache) come from `_step_scalars`,
computed once per step from the graph's `step` input.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from nncompile.ir.graph import Value
from nncompile.keras import backend
from nncompile.keras.optimizers.base import Optimizer
from nncompile.keras.optimizers.expr import Expr


class SGD(Optimizer):
    """Gradient descent, with (Nesterov) momentum: m = momentum * m - lr * g; w += m."""

    _hyper = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def _slot_calls(self):
        return [("momentum",)] if self.momentum != 0 else []

    def _update(self, var, grad, state, lr, shared):
        if self.momentum == 0:
            return var - grad * lr, {}
        m = state["momentum"] * self.momentum - grad * lr
        if self.nesterov:
            return var + (m * self.momentum - grad * lr), {"momentum": m}
        return var + m, {"momentum": m}


class Adam(Optimizer):
    """Adam, epsilon added to sqrt(v) and the bias corrections folded into the step size, as in
    Keras; `amsgrad` keeps the running maximum of v ("velocity_hat")."""

    _hyper = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, name="adam",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def _slot_calls(self):
        return [("momentum",), ("velocity",)] + ([("velocity_hat",)] if self.amsgrad else [])

    def _step_scalars(self, lr, step, slots):
        beta_1_power = self.beta_1 ** step
        beta_2_power = self.beta_2 ** step
        return {"alpha": lr * (1 - beta_2_power).sqrt() / (1 - beta_1_power)}

    def _update(self, var, grad, state, lr, shared):
        m = state["momentum"] + (grad - state["momentum"]) * (1 - self.beta_1)
        v = state["velocity"] + (grad.square() - state["velocity"]) * (1 - self.beta_2)
        new_state = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = new_state["velocity_hat"] = state["velocity_hat"].maximum(v)
        return var - (m * shared["alpha"]) / (v.sqrt() + self.epsilon), new_state


class AdamW(Adam):
    """Adam with decoupled weight decay (w -= w * weight_decay * lr before the Adam step)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, name=name, weight_decay=weight_decay, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")


class RMSprop(Optimizer):
    """RMSprop: v = rho * v + (1 - rho) * g^2; w -= lr * g / sqrt(v + epsilon) (epsilon inside
    the root, as in Keras); `centered` subtracts the squared mean gradient; optional momentum."""

    _hyper = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, name="rmsprop",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _slot_calls(self):
        return ([("velocity",)] + ([("momentum",)] if self.momentum > 0 else [])
                + ([("average_gradient",)] if self.centered else []))

    def _update(self, var, grad, state, lr, shared):
        rho = self.rho
        velocity = rho * state["velocity"] + (1 - rho) * grad.square()
        new_state = {"velocity": velocity}
        if self.centered:
            average = new_state["average_gradient"] = rho * state["average_gradient"] + (1 - rho) * grad
            denominator = velocity - average.square() + self.epsilon
        else:
            denominator = velocity + self.epsilon
        increment = lr * grad / denominator.sqrt()
        if self.momentum > 0:
            momentum = new_state["momentum"] = self.momentum * state["momentum"] + increment
            return var - momentum, new_state
        return var - increment, new_state


class Adagrad(Optimizer):
    """Adagrad: a += g^2 (a starts at `initial_accumulator_value`); w -= lr * g / sqrt(a + epsilon)."""

    _hyper = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, name="adagrad", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_calls(self):
        return [("accumulator",)]

    def _initial_value(self, kind):
        return self.initial_accumulator_value

    def _update(self, var, grad, state, lr, shared):
        accumulator = state["accumulator"] + grad.square()
        return var - lr * grad / (accumulator + self.epsilon).sqrt(), {"accumulator": accumulator}


class Adadelta(Optimizer):
    """Adadelta: the step is -sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g, scaled by lr."""

    _hyper = ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, name="adadelta", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def _slot_calls(self):
        return [("accumulated_grad",), ("accumulated_delta_var",)]

    def _update(self, var, grad, state, lr, shared):
        rho = self.rho
        accumulated_grad = rho * state["accumulated_grad"] + (1 - rho) * grad.square()
        delta_var = -((state["accumulated_delta_var"] + self.epsilon).sqrt() * grad
                      / (accumulated_grad + self.epsilon).sqrt())
        accumulated_delta_var = rho * state["accumulated_delta_var"] + (1 - rho) * delta_var.square()
        return var + lr * delta_var, {"accumulated_grad": accumulated_grad,
                                      "accumulated_delta_var": accumulated_delta_var}


class Adamax(Optimizer):
    """Adamax: u = max(beta_2 * u, |g|); w -= lr * m / ((1 - beta_1^t) * (u + epsilon))."""

    _hyper = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="adamax", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def _slot_calls(self):
        return [("momentum", "norm")]

    def _step_scalars(self, lr, step, slots):
        return {"correction": 1 - self.beta_1 ** step}

    def _update(self, var, grad, state, lr, shared):
        m = state["momentum"] + (grad - state["momentum"]) * (1 - self.beta_1)
        u = (self.beta_2 * state["norm"]).maximum(grad.abs())
        return var - lr * m / (shared["correction"] * (u + self.epsilon)), {"momentum": m, "norm": u}


class Nadam(Optimizer):
    """Adam with Nesterov momentum and Dozat's momentum schedule u_t = beta_1 * (1 - 0.5 * 0.96^t),
    whose running product (the momentum cache, "u_product") is optimizer state."""

    _hyper = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="nadam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def _slot_calls(self):
        return [("momentum",), ("velocity",)]

    def _extra_state(self):
        # float32 like the `step` it is computed from, whatever the variables' dtype
        return {self._u_product_name: np.ones((), np.float32)}

    @property
    def _u_product_name(self) -> str:
        return f"{self.name}/u_product"

    def _step_scalars(self, lr: Expr, step: Expr, slots: Mapping[str, Value]):
        u_product = lr.em(slots[self._u_product_name])
        u_t = self.beta_1 * (1.0 - 0.5 * 0.96 ** step)
        u_t_1 = self.beta_1 * (1.0 - 0.5 * 0.96 ** (step + 1))
        # Keras updates the cache before the variables: u_product_t includes u_t.
        u_product_t = u_product * u_t
        lr.b.update(u_product.value, u_product_t.value)
        beta_2_power = self.beta_2 ** step
        return {"u_t": u_t, "u_t_1": u_t_1, "u_product_t": u_product_t, "u_product_t_1": u_product_t * u_t_1,
                "beta_2_power": beta_2_power}

    def _update(self, var, grad, state, lr, shared):
        m = state["momentum"] + (grad - state["momentum"]) * (1 - self.beta_1)
        v = state["velocity"] + (grad.square() - state["velocity"]) * (1 - self.beta_2)
        m_hat = (shared["u_t_1"] * m / (1 - shared["u_product_t_1"])
                 + (1 - shared["u_t"]) * grad / (1 - shared["u_product_t"]))
        v_hat = v / (1 - shared["beta_2_power"])
        return var - (m_hat * lr) / (v_hat.sqrt() + self.epsilon), {"momentum": m, "velocity": v}


class Lion(Optimizer):
    """Lion (Chen et al., 2023): w -= lr * sign(beta_1 * m + (1 - beta_1) * g), then
    m = beta_2 * m + (1 - beta_2) * g. The betas are cast to the variable's dtype before
    `1 - beta`, as in Keras."""

    _hyper = ("beta_1", "beta_2")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, name=None, **kwargs):
        # Keras names an unnamed Lion `auto_name`: lion, lion_1, ... for the session
        super().__init__(learning_rate=learning_rate, name=name or backend.unique_name("lion"), **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
                             f"degenerates to SignSGD. Received: beta_1={beta_1}.")

    def _slot_calls(self):
        return [("momentum",)]

    def _update(self, var, grad, state, lr, shared):
        m = state["momentum"]
        beta_1 = grad.em.constant(self.beta_1, grad.dtype)
        beta_2 = grad.em.constant(self.beta_2, grad.dtype)
        direction = (m * beta_1 + grad * (1.0 - beta_1)).sign()
        return var - lr * direction, {"momentum": m * beta_2 + grad * (1.0 - beta_2)}


class Ftrl(Optimizer):
    """FTRL-proximal (McMahan et al., 2013) with Keras's online L2 (`l2_regularization_strength`,
    plus beta / (2 lr)) and shrinkage L2 (added to the gradient as 2 * l2_shrinkage * w):

        n' = n + g^2;  z += g + 2 s w - (n'^-p - n^-p) / lr * w
        w = (clip(z, -l1, l1) - z) / (n'^-p / lr + 2 * l2_reg);  n = n'
    """

    _hyper = ("learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
              "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta")

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name or backend.unique_name("ftrl"), **kwargs)
        if initial_accumulator_value < 0.0:
            raise ValueError("`initial_accumulator_value` needs to be positive or zero. Received: "
                             f"initial_accumulator_value={initial_accumulator_value}.")
        if learning_rate_power > 0.0:
            raise ValueError("`learning_rate_power` needs to be negative or zero. Received: "
                             f"learning_rate_power={learning_rate_power}.")
        for arg, value in (("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength),
                           ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength)):
            if value < 0.0:
                raise ValueError(f"`{arg}` needs to be positive or zero. Received: {arg}={value}.")
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def _slot_calls(self):
        return [("accumulator", "linear")]     # one Keras call: interleaved variable by variable

    def _initial_value(self, kind):
        return self.initial_accumulator_value if kind == "accumulator" else 0.0

    def _update(self, var, grad, state, lr, shared):
        power = -self.learning_rate_power
        accum, linear = state["accumulator"], state["linear"]
        l2_reg = self.l2_regularization_strength + self.beta / (2.0 * lr)
        grad_to_use = grad + 2 * self.l2_shrinkage_regularization_strength * var
        new_accum = accum + grad.square()
        new_accum_power = new_accum ** power
        linear = linear + (grad_to_use - ((new_accum_power - accum ** power) / lr) * var)
        quadratic = new_accum_power / lr + 2 * l2_reg
        l1 = self.l1_regularization_strength
        linear_clipped = linear.maximum(-l1).minimum(l1)
        return (linear_clipped - linear) / quadratic, {"accumulator": new_accum, "linear": linear}

