"""`keras.preprocessing`: the paths older tutorials import from (`keras.preprocessing.sequence`)."""
from nncompile.keras.preprocessing import sequence

__all__ = ["sequence"]
