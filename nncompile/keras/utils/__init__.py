"""Utilities of `keras.utils`. Only the public names live here (the helpers' own imports, such
as numpy or os, stay in their modules, as `keras.utils` exposes neither)."""
from nncompile.keras.utils.arrays import normalize, pad_sequences, to_categorical
from nncompile.keras.utils.files import extract_archive, get_file, hash_file, keras_home, validate_file
from nncompile.keras.utils.progbar import Progbar
from nncompile.keras.utils.py_dataset import PyDataset, Sequence
from nncompile.keras.utils.seeding import set_random_seed

__all__ = ["Progbar", "PyDataset", "Sequence", "extract_archive", "get_file", "hash_file",
           "keras_home", "normalize", "pad_sequences", "set_random_seed", "to_categorical",
           "validate_file"]
