"""Utilities of `keras.utils`. Only the public names live here (the helpers' own imports, such
as numpy or os, stay in their modules, as `keras.utils` exposes neither)."""
from nncompile.keras.utils.arrays import normalize, pad_sequences, to_categorical
from nncompile.keras.utils.files import extract_archive, get_file, hash_file, keras_home, validate_file
from nncompile.keras.utils.progbar import Progbar
from nncompile.keras.utils.py_dataset import PyDataset, Sequence
from nncompile.keras.utils.seeding import set_random_seed

__all__ = ["Progbar", "PyDataset", "Sequence", "clear_session", "extract_archive", "get_file", "hash_file",
           "keras_home", "normalize", "pad_sequences", "register_keras_serializable", "set_random_seed",
           "to_categorical", "validate_file"]


def __getattr__(name: str):
    """Keras 3 also offers `clear_session` (from `keras.backend`) and
    `register_keras_serializable` (from `keras.saving`) here; imported when first asked, as
    those modules import this one."""
    if name == "clear_session":
        from nncompile.keras.backend import clear_session
        return clear_session
    if name == "register_keras_serializable":
        from nncompile.keras.saving import register_keras_serializable
        return register_keras_serializable
    raise AttributeError(f"module 'keras.utils' has no attribute {name!r}")
