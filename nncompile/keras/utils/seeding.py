"""`keras.utils.set_random_seed`."""
from __future__ import annotations

import random

import numpy as np


def set_random_seed(seed: int) -> None:
    """Seed every random source of the front end (Python, numpy, weight initializers).

    >>> from nncompile.keras import utils, initializers
    >>> utils.set_random_seed(1); a = initializers.GlorotUniform()((2, 2))
    >>> utils.set_random_seed(1); b = initializers.GlorotUniform()((2, 2))
    >>> bool((a == b).all())
    True
    """
    from nncompile.keras import initializers

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed!r} "
                         f"(of type {type(seed)})")
    random.seed(seed)
    np.random.seed(seed)
    initializers.reseed(int(seed))
