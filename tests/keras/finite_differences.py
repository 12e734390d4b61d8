"""Gradients by central differences, the independent reference for the gradients of training."""
from __future__ import annotations

from typing import Callable

import numpy as np


def gradients(loss: Callable[[], float], weights: list[np.ndarray], eps: float) -> list[np.ndarray]:
    """d loss() / d w for every array of `weights`; `loss()` reads `weights`, which are changed
    in place one entry at a time (and restored)."""
    grads = []
    for w in weights:
        g = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            saved = w[index]
            w[index] = saved + eps
            up = loss()
            w[index] = saved - eps
            down = loss()
            w[index] = saved
            g[index] = (up - down) / (2 * eps)
        grads.append(g)
    return grads
