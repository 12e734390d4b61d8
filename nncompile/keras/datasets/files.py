"""What the dataset loaders share: where each file comes from, and reading the pickled parts of
dataset files without letting a tampered file run code."""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np

from nncompile.keras.utils import get_file

# Keras's mirror of the small datasets.
KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# Rebuilding a numpy array from a pickle needs these globals and nothing else; both spellings of
# `multiarray` cover files written by numpy 1 and numpy 2.
_ALLOWED_GLOBALS = frozenset({("numpy", "ndarray"), ("numpy", "dtype"),
                              ("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")})


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the cache, where to download it, its hash."""
    name: str
    origin: str
    file_hash: str
    cache_subdir: str = "datasets"

    def fetch(self, fname: str | None = None, extract: bool = False) -> str:
        """The local path (downloaded and checked on first use); `fname` renames it in the cache."""
        return get_file(fname or self.name, origin=self.origin, file_hash=self.file_hash,
                        cache_subdir=self.cache_subdir, extract=extract)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain Python data, and refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Refusing to deserialize `{module}.{name}` while loading a "
                                     "Keras dataset. The file may be corrupted or malicious.")


def _read_npy(stream: io.BytesIO, member: str, path: str) -> np.ndarray:
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError:
        # An object array (ragged sequences): skip the header, unpickle under restrictions.
        stream.seek(0)
        major, _ = np.lib.format.read_magic(stream)
        if major not in (1, 2, 3):
            raise ValueError(f"{path}: member {member} has an unsupported .npy version {major}")
        # Versions 2 and 3 differ only in the header's text encoding, not its layout.
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        read_header(stream)
        return RestrictedUnpickler(stream).load()


def load_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file by name, object arrays included, without arbitrary unpickling."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as raw:
                    arrays[member[:-4]] = _read_npy(io.BytesIO(raw.read()), member, path)
    return arrays


def load_pickle(path: str) -> object:
    """A Python 2 pickle (as CIFAR ships) under the same restrictions; byte strings stay bytes."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="bytes").load()


def require(arrays: dict, names: tuple[str, ...], path: str) -> list[np.ndarray]:
    """The named arrays, or one error saying which ones the file lacks."""
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"{path} is not the expected dataset file: it lacks {', '.join(missing)} "
                         f"(it holds {', '.join(sorted(arrays)) or 'nothing'})")
    return [arrays[n] for n in names]
