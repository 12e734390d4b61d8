"""Utilities of `keras.utils`. Only the public names live here (the helpers' own imports, such
as numpy or os, stay in their modules, as `keras.utils` exposes neither)."""
from nncompile.keras.backend import is_keras_tensor, standardize_dtype
from nncompile.keras.utils.arrays import normalize, pad_sequences, to_categorical
from nncompile.keras.utils.data_tuples import pack_x_y_sample_weight, unpack_x_y_sample_weight
from nncompile.keras.utils.dataset_split import split_dataset
from nncompile.keras.utils.directory_datasets import image_dataset_from_directory, text_dataset_from_directory
from nncompile.keras.utils.files import extract_archive, get_file, hash_file, keras_home, validate_file
from nncompile.keras.utils.graph import get_source_inputs
from nncompile.keras.utils.image_utils import array_to_img, img_to_array, load_img, save_img
from nncompile.keras.utils.progbar import Progbar
from nncompile.keras.utils.py_dataset import PyDataset, Sequence
from nncompile.keras.utils.seeding import set_random_seed
from nncompile.keras.utils.timeseries import timeseries_dataset_from_array

__all__ = ["Progbar", "PyDataset", "Sequence", "array_to_img", "clear_session", "extract_archive", "get_file",
           "get_source_inputs", "hash_file", "image_dataset_from_directory", "img_to_array", "is_keras_tensor",
           "keras_home", "load_img", "normalize", "pack_x_y_sample_weight", "pad_sequences", "save_img",
           "set_random_seed", "split_dataset", "standardize_dtype", "text_dataset_from_directory",
           "timeseries_dataset_from_array", "to_categorical", "unpack_x_y_sample_weight", "validate_file"]


# Keras 3 also offers these of `keras.saving` here; imported when first asked (`__getattr__`),
# as keras.saving imports this module.
_FROM_SAVING = ("CustomObjectScope", "custom_object_scope", "deserialize_keras_object", "get_custom_objects",
                "get_registered_name", "get_registered_object", "register_keras_serializable",
                "serialize_keras_object")
__all__ += _FROM_SAVING


def __getattr__(name: str):
    """`clear_session` (of `keras.backend`) and the names of `_FROM_SAVING`, as Keras 3 has them."""
    if name == "clear_session":
        from nncompile.keras.backend import clear_session
        return clear_session
    if name in _FROM_SAVING:
        from nncompile.keras import saving
        return getattr(saving, name)
    raise AttributeError(f"module 'keras.utils' has no attribute {name!r}")
