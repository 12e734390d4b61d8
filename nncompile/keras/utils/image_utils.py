"""Image files as Keras 3's `keras.utils` reads and writes them: `load_img`, `img_to_array`,
`array_to_img`, `save_img`. Decoding and encoding is PIL's (Pillow), which nncompile does not
require: without it these raise Keras's ImportError.

>>> import numpy as np
>>> image = array_to_img(np.zeros((2, 3, 3)))            # doctest: +SKIP
>>> img_to_array(image).shape                            # doctest: +SKIP
(2, 3, 3)
"""
from __future__ import annotations

import io
import pathlib
import warnings

import numpy as np

from nncompile.keras import backend

try:
    from PIL import Image as _pil
except ImportError:     # optional: only these functions need it
    _pil = None

# PIL's resampling filters by Keras's names (PIL >= 9.1 has them under Image.Resampling)
_RESAMPLING = None if _pil is None else {
    name: getattr(getattr(_pil, "Resampling", _pil), name.upper())
    for name in ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")}


def standardize_data_format(data_format) -> str:
    """"channels_last" or "channels_first"; None is `keras.config.image_data_format()`."""
    if data_format is None:
        return backend.image_data_format()
    name = str(data_format).lower()
    if name not in ("channels_first", "channels_last"):
        raise ValueError(f'The `data_format` argument must be one of {{"channels_first", "channels_last"}}. '
                         f"Received: data_format={data_format}")
    return name


def _require_pil(what: str):
    if _pil is None:
        raise ImportError(f"Could not import PIL.Image. The use of `{what}` requires PIL.")
    return _pil


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A PIL image of a rank-3 array: 1 channel ("L", or "I" above 255), 3 ("RGB") or 4
    ("RGBA"); `scale` stretches the values to [0, 255] first, as Keras does."""
    data_format = standardize_data_format(data_format)
    pil = _require_pil("array_to_img")
    x = np.asarray(x, dtype=dtype or backend.floatx())
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x /= top
        x *= 255
    channels = x.shape[2]
    if channels in (3, 4):
        return pil.fromarray(x.astype("uint8"), "RGB" if channels == 3 else "RGBA")
    if channels == 1:
        if np.max(x) > 255:
            return pil.fromarray(x[:, :, 0].astype("int32"), "I")
        return pil.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def img_to_array(img, data_format=None, dtype=None) -> np.ndarray:
    """The rank-3 array of a PIL image (a grayscale image gets a channel axis)."""
    data_format = standardize_data_format(data_format)
    x = np.asarray(img, dtype=dtype or backend.floatx())
    if x.ndim == 3:
        return x.transpose(2, 0, 1) if data_format == "channels_first" else x
    if x.ndim == 2:
        return x[None] if data_format == "channels_first" else x[..., None]
    raise ValueError(f"Unsupported image shape: {x.shape}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs) -> None:
    """Write the array `x` as an image file, its format from `file_format` or the file's
    extension; `kwargs` go to PIL's `Image.save`."""
    data_format = standardize_data_format(data_format)
    if file_format is None and isinstance(path, (str, pathlib.Path)):
        file_format = pathlib.Path(path).suffix[1:].lower()
    if file_format and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        warnings.warn("The JPEG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)


def open_image(path, what: str = "load_img"):
    """The PIL image of a path (str, bytes, pathlib.Path) or an io.BytesIO, read whole."""
    pil = _require_pil(what)
    if isinstance(path, io.BytesIO):
        return pil.open(path)
    if not isinstance(path, (pathlib.Path, bytes, str)):
        raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")
    with open(str(pathlib.Path(path).resolve()) if isinstance(path, pathlib.Path) else path, "rb") as f:
        return pil.open(io.BytesIO(f.read()))


def in_color_mode(img, color_mode: str):
    """`img` converted to Keras's color mode: "grayscale" (16- and 32-bit gray kept), "rgb" or
    "rgba"."""
    if color_mode == "grayscale":
        return img if img.mode in ("L", "I;16", "I") else img.convert("L")
    if color_mode in ("rgb", "rgba"):
        mode = color_mode.upper()
        return img if img.mode == mode else img.convert(mode)
    raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """A PIL image of an image file, in `color_mode`, resized by PIL to `target_size` (height,
    width) if given; `keep_aspect_ratio` first crops the center to the target's aspect ratio."""
    img = in_color_mode(open_image(path), color_mode)
    if target_size is None:
        return img
    size = (target_size[1], target_size[0])
    if img.size == size:
        return img
    if interpolation not in _RESAMPLING:
        raise ValueError(f"Invalid interpolation method {interpolation} specified. Supported methods are "
                         f"{', '.join(_RESAMPLING)}")
    if not keep_aspect_ratio:
        return img.resize(size, _RESAMPLING[interpolation])
    width, height = img.size
    crop_height = min(height, width * size[1] // size[0])
    crop_width = min(width, height * size[0] // size[1])
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return img.resize(size, _RESAMPLING[interpolation], box=[left, top, left + crop_width, top + crop_height])
