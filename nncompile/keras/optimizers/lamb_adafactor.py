"""Lamb and Adafactor: Keras 3.15's `update_step`s transcribed onto `Expr`, in Keras's order of
operations (see algorithms.py). Both need more than elementwise IR: Lamb the norms of the
variable and of its step, Adafactor row and column means of the squared gradient and the root
mean square of the variable and of its step.
"""
from __future__ import annotations

import numpy as np

from nncompile.keras import backend
from nncompile.keras.optimizers.base import Optimizer, _float_dtype
from nncompile.keras.optimizers.expr import Expr


class Lamb(Optimizer):
    """LAMB (You et al., 2019): Adam's bias-corrected step m_hat / (sqrt(v_hat) + epsilon),
    scaled for each variable by the trust ratio ||w|| / ||step|| (1 when either norm is 0).

        >>> model.compile(optimizer=keras.optimizers.Lamb(learning_rate=0.01), loss="mse")
    """

    _hyper = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name=None, **kwargs):
        # Keras names an unnamed Lamb `auto_name`: lamb, lamb_1, ... for the session
        super().__init__(learning_rate=learning_rate, name=name or backend.unique_name("lamb"), **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def _slot_calls(self):
        return [("momentum", "velocity")]

    def _step_scalars(self, lr, step, slots):
        return {"m_correction": 1.0 - self.beta_1 ** step, "v_correction": 1.0 - self.beta_2 ** step}

    def _update(self, var, grad, state, lr, shared):
        m = state["momentum"] + (grad - state["momentum"]) * (1 - self.beta_1)
        v = state["velocity"] + (grad.square() - state["velocity"]) * (1 - self.beta_2)
        update = (m / shared["m_correction"]) / ((v / shared["v_correction"]).sqrt() + self.epsilon)
        w_norm = var.square().sum().sqrt()
        u_norm = update.square().sum().sqrt()
        ratio = w_norm.greater(0.0).select(u_norm.greater(0.0).select(w_norm / u_norm, 1.0), 1.0)
        return var - ratio * lr * update, {"momentum": m, "velocity": v}


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern, 2018). For a variable of rank >= 2 the second moment is
    factored over its last two axes: `r` keeps the mean of g^2 + epsilon_1 over the last axis,
    `c` over the second last, and v = r / mean(r) (x) c; a variable of rank < 2 keeps v whole.
    The step g / sqrt(v) is shrunk to root mean square <= clip_threshold and scaled by
    max(epsilon_2, rms(w)) * min(lr, 1 / sqrt(t)); v decays at 1 - t^beta_2_decay.

        >>> model.compile(optimizer=keras.optimizers.Adafactor(learning_rate=0.01), loss="mse")

    `relative_step` is kept for the config: Keras 3.15 caps the rate at 1 / sqrt(t) whatever
    its value (its `relative_step` cap is taken again, unconditionally, for rho_t).
    """

    _hyper = ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step")

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0,
                 relative_step=True, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name or backend.unique_name("adafactor"), **kwargs)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def _slot_calls(self):
        return [("r", "c", "velocity")]     # Keras makes a variable's three, then the next's

    def _slot_array(self, kind, var):
        shape = tuple(var.shape)
        if kind == "velocity":
            return super()._slot_array(kind, var)
        if len(shape) < 2:
            # Keras's placeholder `backend.Variable(0)`: an int32 scalar, saved with the state
            return np.zeros((), np.int32)
        factored = shape[:-1] if kind == "r" else shape[:-2] + shape[-1:]
        return np.zeros(factored, _float_dtype(var, self.name))

    def _step_scalars(self, lr, step, slots):
        beta_2_t = 1.0 - step ** self.beta_2_decay
        return {"rho": lr.minimum(1.0 / step.sqrt()), "beta_2_t": beta_2_t, "rest": 1.0 - beta_2_t}

    def _update(self, var, grad, state, lr, shared):
        beta_2_t, rest = shared["beta_2_t"], shared["rest"]
        grad_square = grad.square() + self.epsilon_1
        if var.value.type.rank >= 2:
            r = beta_2_t * state["r"] + rest * grad_square.mean(-1)
            c = beta_2_t * state["c"] + rest * grad_square.mean(-2)
            v = (r / r.mean(-1, keepdims=True)).expand_dims(-1) * c.expand_dims(-2)
            new_state = {"r": r, "c": c, "velocity": v}
        else:
            v = beta_2_t * state["velocity"] + rest * grad_square
            new_state = {"velocity": v}
        alpha = _rms(var).maximum(self.epsilon_2) * shared["rho"]
        u = grad / v.sqrt()
        u_hat = u / (_rms(u) / self.clip_threshold).maximum(1.0)
        return var - alpha * u_hat, new_state


def _rms(x: Expr) -> Expr:
    return x.square().mean().sqrt()
