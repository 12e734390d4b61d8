"""`keras.preprocessing`: the paths older tutorials import from (`keras.preprocessing.sequence`,
`keras.preprocessing.timeseries_dataset_from_array`)."""
from nncompile.keras.preprocessing import sequence
from nncompile.keras.utils import timeseries_dataset_from_array

__all__ = ["sequence", "timeseries_dataset_from_array"]
