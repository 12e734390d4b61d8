"""Keras 3's RandomShear and RandomPerspective: a transform drawn per image in training (as
augmentation.py describes) and applied by `ops.image.affine_transform`'s resampling, as
RandomRotation's is. Channels last; the identity (cast to the layer's dtype) at inference."""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras.layers.augmentation import _Affine, _factor, _rows
from nncompile.keras.layers.color_augmentation import _Chance
from nncompile.keras.ops import image
from nncompile.keras.ops.decompositions import solve


def _shear_factor(value, name: str) -> tuple:
    """RandomShear's `_set_factor_with_name`: a number f in [0, 1] is (-f, f), a pair sorted.
    Keras also refuses a pair with a number below 0, and so cannot load the (-f, f) its own
    config writes; nncompile takes pairs in [-1, 1], so that such files load."""
    message = "The `factor` argument should be a number (or a list of two numbers) in the range [0, 1.0]. "
    if isinstance(value, (tuple, list)) and len(value) == 2:
        values = list(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [value]
    else:
        raise ValueError(message + f"Received: {name}={value}")
    lowest = -1.0 if len(values) == 2 else 0.0
    for number in values:
        if number > 1.0 or number < lowest:
            raise ValueError(message + f"Received: input_number={number}")
    return tuple(sorted(values)) if len(values) == 2 else (-abs(values[0]), abs(values[0]))


class RandomShear(_Affine):
    """Shears each image in training, as Keras 3: the output pixel (x, y) reads the input at
    (x + sx y, sy x + y), sx ~ U[x_factor] and sy ~ U[y_factor] drawn per image and both negated
    together with even odds (`x_factor`, `y_factor` a number f in [0, 1]: (-f, f), or a pair).
    `fill_mode` and `interpolation` as RandomRotation's.

    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> layer = RandomShear(x_factor=(1.0, 1.0), fill_mode="constant", interpolation="nearest")
    >>> layer(x)[0, :, :, 0].tolist() in ([[0, 1, 2], [4, 5, 0], [8, 0, 0]], [[0, 1, 2], [0, 3, 4], [0, 0, 6]])
    True
    """

    spare_streams = 2   # the sign's, sy's and sx's streams

    def __init__(self, x_factor=0.0, y_factor=0.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                 data_format=None, seed=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.x_factor = _shear_factor(x_factor, "x_factor")
        self.y_factor = _shear_factor(y_factor, "y_factor")

    def _transforms(self, b: Builder, x: Value, height: int, width: int) -> Value:
        sign = self._uniform(b, x, 0.0, 1.0)
        sign = b.select(b.greater(sign, b.scalar(0.5, sign)), b.scalar(-1.0, sign), b.scalar(1.0, sign))
        shear_y = b.mul(self._uniform(b, x, *self.y_factor, stream=1), sign)
        shear_x = b.mul(self._uniform(b, x, *self.x_factor, stream=2), sign)
        return _rows(b, [1, shear_x, 0, shear_y, 1, 0, 0, 0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "x_factor": self.x_factor, "y_factor": self.y_factor}


class RandomPerspective(_Chance):
    """Warps each image in training with a probability drawn per image from U[factor] (a number
    f: [0, f); default 1.0), as Keras 3: the corners (x, y) of the image move to (x (1 + dx),
    y (1 + dy)), dx and dy ~ U[-scale / 2, scale / 2) per corner (so the top-left one stays, as in
    Keras), and the image is resampled through the homography that maps the moved corners back
    (`ops.image.perspective_transform`), outside filled with `fill_value`.

    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> RandomPerspective(scale=0.0)(x)[0, :, :, 0].tolist()     # corners kept: the identity
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]
    """

    spare_streams = 3   # the chance's two streams, then dx's and dy's

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_value=0.0, seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(self, factor, (0, 1))
        if scale < 0.0 or scale > 1.0:
            raise ValueError(f"The `scale` argument should be a number in the range [0,1]. Received: scale={scale}")
        if interpolation not in image.INTERPOLATIONS:
            raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of one "
                                      f"{image.INTERPOLATIONS}.")
        self.scale, self.interpolation, self.fill_value = scale, interpolation, fill_value

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = self._images(b, inputs)
        if not training:
            return x
        height, width = self._known_size(x)
        warped = image.affine(b, x, self._homographies(b, x, height, width), self.interpolation, "constant",
                              self.fill_value)
        return b.select(self._applies(b, x), warped, x)

    def _homographies(self, b: Builder, x: Value, height: int, width: int) -> Value:
        """(batch, 8): per image, the solution of the 8 x 8 system of Keras's
        `compute_homography_matrix` taking each moved corner (end) to its corner (start)."""
        dtype = x.type.dtype.numpy
        start = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], dtype)
        count = 1 if x.type.rank == 3 else x.type.shape[0]
        ends = []
        for axis in range(2):
            moves = self._draw(b, (count, 4), x.type.dtype, stream=2 + axis)
            moves = b.add(b.mul(moves, b.scalar(float(self.scale), moves)), b.scalar(-0.5 * self.scale, moves))
            corner = b.constant(start[:, axis])
            ends.append(b.add(corner, b.mul(corner, moves)))
        ex, ey = ends
        zeros = b.mul(ex, b.scalar(0.0, ex))
        ones = b.add(zeros, b.scalar(1.0, ex))
        sx, sy = (b.constant(start[:, axis]) for axis in range(2))
        x_rows = [ex, ey, ones, zeros, zeros, zeros, b.neg(b.mul(sx, ex)), b.neg(b.mul(sx, ey))]
        y_rows = [zeros, zeros, zeros, ex, ey, ones, b.neg(b.mul(sy, ex)), b.neg(b.mul(sy, ey))]
        system = b.concat(*(b.concat(*(b.reshape(c, shape=[count, 4, 1]) for c in rows), axis=2)
                            for rows in (x_rows, y_rows)), axis=1)
        targets = b.add(b.reshape(b.concat(zeros, zeros, axis=1), shape=[count, 8, 1]),
                        b.constant(np.concatenate([start[:, 0], start[:, 1]]).reshape(8, 1)))
        return b.reshape(solve.__wrapped__(b, system, targets), shape=[count, 8])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "scale": self.scale,
                "interpolation": self.interpolation, "fill_value": self.fill_value}
