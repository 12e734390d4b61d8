"""`keras.preprocessing`: the paths older tutorials import from (`keras.preprocessing.sequence`,
`keras.preprocessing.image`, `keras.preprocessing.image_dataset_from_directory`, ...)."""
from nncompile.keras.preprocessing import image, sequence
from nncompile.keras.utils import (image_dataset_from_directory, text_dataset_from_directory,
                                   timeseries_dataset_from_array)

__all__ = ["image", "image_dataset_from_directory", "sequence", "text_dataset_from_directory",
           "timeseries_dataset_from_array"]
