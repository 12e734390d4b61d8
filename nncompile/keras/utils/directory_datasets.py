"""`keras.utils.image_dataset_from_directory` and `text_dataset_from_directory`: a folder of files,
one subfolder per class, as batches for `fit`.

The files are indexed, labelled, shuffled with the seed and split into training and validation
exactly as Keras 3 does it (so a `validation_split` with a seed picks the same files), and read
as Keras's "grain" format reads them, which needs no TensorFlow: images decoded by PIL (Pillow,
which nncompile does not require) and resized with `keras.ops.image.resize`, texts read whole.
A dataset is a `keras.utils.PyDataset` (files read a batch at a time, when asked for) with
Keras's `class_names` and `file_paths`; `fit` reshuffles the order of its batches every epoch
(Keras's tf.data reshuffles its files within a buffer of eight batches instead).

    >>> train, val = image_dataset_from_directory("photos", validation_split=0.2,
    ...                                           subset="both", seed=1, image_size=(64, 64))  # doctest: +SKIP
    >>> train.class_names                                                                       # doctest: +SKIP
    ['cats', 'dogs']
"""
from __future__ import annotations

import multiprocessing.pool
import os
from typing import Callable

import numpy as np

from nncompile.keras.utils.image_utils import in_color_mode, open_image, standardize_data_format
from nncompile.keras.utils.py_dataset import Batches

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}


class DirectoryDataset(Batches):
    """Batches of the files `file_paths` (as `load` reads each) and their labels (None: the
    files alone); `class_names` as Keras names the classes."""

    def __init__(self, file_paths: list[str], labels: np.ndarray | None, load: Callable, batch_size: int | None,
                 class_names: list[str] | None):
        super().__init__(len(file_paths), batch_size)
        self.file_paths, self.class_names = file_paths, class_names
        self._labels, self._load = labels, load

    def batch(self, chosen):
        if isinstance(chosen, slice):
            items = np.stack([self._load(path) for path in self.file_paths[chosen]])
        else:
            items = self._load(self.file_paths[chosen])
        return items if self._labels is None else (items, self._labels[chosen])


# --- indexing, as keras/src/utils/dataset_utils.py ---------------------------------------------

def _valid_files(directory: str, follow_links: bool, formats: tuple[str, ...]):
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links), key=lambda x: x[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                yield root, name


def _index_subdirectory(directory: str, follow_links: bool, formats) -> list[str]:
    """The files under `directory` (relative to its parent), in Keras's order."""
    base = os.path.basename(directory)
    return [os.path.join(base, os.path.relpath(os.path.join(root, name), directory))
            for root, name in _valid_files(directory, follow_links, formats)]


def _class_folders(directory: str, class_names) -> list[str]:
    found = [d for d in sorted(os.listdir(directory))
             if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
    if class_names is None:
        return found
    if not set(class_names).issubset(found):
        raise ValueError(f"The `class_names` passed did not match the names of the subdirectories of the target "
                         f"directory. Expected: {found} (or a subset of it), but received: class_names={class_names}")
    return list(class_names)


def index_directory(directory: str, labels, formats: tuple[str, ...], class_names=None, shuffle: bool = True,
                    seed=None, follow_links: bool = False, verbose: bool = True):
    """(file paths, labels or None, class names or None) of a folder, as Keras indexes it: a
    subfolder per class ("inferred", sorted), or the files with the given list of labels, or
    without labels (None); shuffled by `np.random.RandomState(seed)` as Keras shuffles them."""
    if labels == "inferred":
        folders = _class_folders(directory, class_names)
    else:
        if class_names is not None:
            raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified."
                             if labels is None else
                             "When argument `labels` is specified, argument `class_names` cannot be specified "
                             "(the `class_names` will be the sorted list of labels).")
        folders = [""]
    with multiprocessing.pool.ThreadPool() as pool:
        found = pool.starmap(_index_subdirectory, [(os.path.join(directory, d), follow_links, formats)
                                                   for d in folders])
    files = [name for part in found for name in part]
    if labels == "inferred":
        labels = np.concatenate([np.full(len(part), i, "int32") for i, part in enumerate(found)] or
                                [np.zeros(0, "int32")])
        class_names = folders
    elif labels is not None:
        if len(labels) != len(files):
            raise ValueError(f"Expected the lengths of `labels` to match the number of files in the target "
                             f"directory. len(labels) is {len(labels)} while we found {len(files)} files in "
                             f"directory {directory}.")
        class_names = [str(label) for label in sorted(set(labels))]
        labels = list(labels)       # shuffled below: the caller's list stays as it was
    if verbose:
        print(f"Found {len(files)} files." if labels is None else
              f"Found {len(files)} files belonging to {len(class_names)} classes.")
    paths = [os.path.join(directory, name) for name in files]
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, class_names


def check_validation_split(validation_split, subset, shuffle, seed) -> None:
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, "
                         "to make sure that there is no overlap between the training and validation subset.")


def _subset(paths: list[str], labels, validation_split, subset: str, verbose: bool):
    """Keras's split: the last `int(validation_split * n)` files are the validation subset."""
    if not validation_split:
        return paths, labels
    count = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - count} files for training.")
        return paths[:-count], None if labels is None else labels[:-count]
    if verbose:
        print(f"Using {count} files for validation.")
    return paths[-count:], None if labels is None else labels[-count:]


def _encoded(labels, label_mode, classes: int):
    if labels is None:
        return None
    labels = np.asarray(labels)
    if label_mode == "binary":
        return labels.astype("float32")[:, None]
    if label_mode == "categorical":
        return np.eye(classes, dtype="float32")[labels]
    return labels.astype("int32")


def _datasets(paths, labels, class_names, options: dict, make: Callable, what: str, allowed: str):
    """One dataset, or [training, validation] for subset="both"; `make(paths, labels)`."""
    split, subset, verbose = options["validation_split"], options["subset"], options["verbose"]
    parts = ["training", "validation"] if subset == "both" else [subset]
    made = []
    for part in parts:
        chosen, chosen_labels = _subset(paths, labels, split, part, verbose)
        if not chosen:
            kind = f"{part} {what}" if subset == "both" else what
            raise ValueError(f"No {kind} found in directory {options['directory']}. {allowed}")
        made.append(make(chosen, chosen_labels))
    return made if subset == "both" else made[0]


def _check_labels(labels, label_mode, class_names) -> None:
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple)):
            raise ValueError(f"`labels` argument should be a list/tuple of integer labels, of the same size as the "
                             f"number of image files in the target directory. If you wish to infer the labels from "
                             f"the subdirectory names in the target directory, pass `labels=\"inferred\"`. If you "
                             f"wish to get a dataset that only contains images (no labels), pass `labels=None`. "
                             f"Received: labels={labels}")
        if class_names:
            raise ValueError(f'You can only pass `class_names` if `labels="inferred"`. Received: labels={labels}, '
                             f"and class_names={class_names}")
    if label_mode not in {"int", "categorical", "binary", None}:
        raise ValueError(f'`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode}")


def _indexed(directory, labels, label_mode, class_names, formats, options: dict):
    """Labels checked, files indexed and shuffled; (paths, encoded labels, class names)."""
    _check_labels(labels, label_mode, class_names)
    if labels is None or label_mode is None:
        labels = label_mode = None
    if options["format"] not in ("tf", "grain"):
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={options["format"]}')
    check_validation_split(options["validation_split"], options["subset"], options["shuffle"], options["seed"])
    seed = np.random.randint(1e6) if options["seed"] is None else options["seed"]
    paths, labels, class_names = index_directory(directory, labels, formats, class_names, options["shuffle"],
                                                 seed, options["follow_links"], options["verbose"])
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. '
                         f"Received: class_names={class_names}")
    return paths, _encoded(labels, label_mode, len(class_names) if class_names else 0), class_names


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None,
                                 format="tf", verbose=True):
    """Batches of (images, labels) from a folder with a subfolder of image files (bmp, gif, jpeg,
    png) per class, as Keras 3 makes them: float32 images of `image_size`, labels by
    `label_mode` ("int", "categorical" one-hot, "binary" (n, 1) floats, None: images only)."""
    if color_mode not in _CHANNELS:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: '
                         f"color_mode={color_mode}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    elif not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise ValueError(f"Invalid `image_size` value. Expected a tuple of 2 integers. Received: "
                         f"image_size={image_size}")
    interpolation = interpolation.lower()
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"Argument `interpolation` should be one of {_INTERPOLATIONS}. Received: "
                         f"interpolation={interpolation}")
    if pad_to_aspect_ratio and crop_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    options = dict(directory=directory, validation_split=validation_split, subset=subset, verbose=verbose,
                   format=format, seed=seed, shuffle=shuffle, follow_links=follow_links)
    paths, encoded, class_names = _indexed(directory, labels, label_mode, class_names, IMAGE_FORMATS, options)
    data_format = standardize_data_format(data_format)
    resize = dict(size=tuple(image_size), interpolation=interpolation, crop_to_aspect_ratio=crop_to_aspect_ratio,
                  pad_to_aspect_ratio=pad_to_aspect_ratio, data_format=data_format)

    def load(path: str) -> np.ndarray:
        from nncompile.keras import ops     # ops' layers import keras.utils
        image = np.asarray(in_color_mode(open_image(path, "image_dataset_from_directory"), color_mode), "float32")
        image = image[..., None] if image.ndim == 2 else image
        image = image.transpose(2, 0, 1) if data_format == "channels_first" else image
        return np.asarray(ops.image.resize(image, **resize), "float32")

    def make(chosen, chosen_labels):
        return DirectoryDataset(chosen, chosen_labels, load, batch_size, class_names)
    return _datasets(paths, encoded, class_names, options, make, "images",
                     f"Allowed formats: {IMAGE_FORMATS}")


def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, format="tf", verbose=True):
    """Batches of (texts, labels) from a folder with a subfolder of .txt files per class, as
    Keras 3 makes them; the texts are numpy arrays of str (of at most `max_length` characters)."""
    options = dict(directory=directory, validation_split=validation_split, subset=subset, verbose=verbose,
                   format=format, seed=seed, shuffle=shuffle, follow_links=follow_links)
    paths, encoded, class_names = _indexed(directory, labels, label_mode, class_names, (".txt",), options)

    def load(path: str) -> str:
        with open(path) as f:
            text = f.read()
        return text if max_length is None else text[:max_length]

    def make(chosen, chosen_labels):
        return DirectoryDataset(chosen, chosen_labels, load, batch_size, class_names)
    return _datasets(paths, encoded, class_names, options, make, "text files", "Allowed format: .txt")
