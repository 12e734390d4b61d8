"""Model files -> the graph the command works on (and the Keras model, when the file holds one).

    .h5 .hdf5 .keras   a Keras model (nncompile.keras.saving), traced into its inference graph,
                       or its training step graph with `training=True`
    .nnir              IR text, e.g. a file `nncompile dump --dump-dir` or `compile -o` wrote
    .onnx              an ONNX model (nncompile.onnx), its symbolic leading dimension the batch

IR text holds no parameter values. They come from an .npz file (`params=`, one array per
parameter name, as `nncompile compile -o` writes next to its model.nnir); a parameter the file
lacks is filled deterministically: normal with standard deviation 0.1 for floats, zeros
otherwise, drawn from a generator seeded by `seed` and the parameter's name, so the same file
and seed always give the same values.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nncompile.ir import BATCH, Graph, parse
from nncompile.ir.errors import IRError

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
_ZIP = b"PK\x03\x04"
FILL_STD = 0.1


@dataclass
class Loaded:
    """A model file's graph, with every parameter bound; `model` is the Keras model if any."""

    path: str
    graph: Graph
    model: Any = None


def load(path: str, *, training: bool = False, params: str | None = None, seed: int = 0) -> Loaded:
    """Read the model file at `path` (see the module doc); errors name the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model file {path!r} is a directory; expected a model file")
    suffix = os.path.splitext(path)[1].lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise ValueError(f"model file {path!r}: unknown file type {suffix or '(no suffix)'!r}; expected "
                         f"{', '.join(READERS)}")
    return reader(path, training=training, params=params, seed=seed)


def _keras(path: str, *, training: bool, params: str | None, seed: int) -> Loaded:
    if params is not None:
        raise ValueError(f"--params applies to .nnir files; {path!r} holds its own weights")
    from nncompile.keras import saving   # the Keras stack is imported only for Keras files

    # Only the training step needs the loss and optimizer: a custom loss, which the file names
    # but cannot hold, must not keep its model from being summarized, compiled or run.
    model = saving.load_model(path, compile=training)
    return Loaded(path, step_graph(model, path) if training else _trace(model), model)


def _trace(model) -> Graph:
    from nncompile.keras.models import trace

    return trace(model)


def step_graph(model, path: str) -> Graph:
    """The training step graph of a Keras model saved after `compile()`: forward pass, loss,
    backward pass and optimizer update in one graph."""
    from nncompile.keras.training import build_step_graph, standardize_targets

    compiled = getattr(model, "_compiled", None)
    if compiled is None:
        raise ValueError(f"model file {path!r}: the model was saved without compile() (no loss or "
                         f"optimizer), so it has no training step; compile it before saving")
    dummies = []
    for tensor, loss in zip(model.outputs, compiled.losses):
        sparse = loss is not None and "sparse" in type(loss).__name__.lower()
        shape = (1,) if sparse else (1, *(d or 1 for d in tensor.shape[1:]))
        dummies.append(np.zeros(shape, np.int32 if sparse else np.float32))
    targets = standardize_targets(model, dummies if len(dummies) > 1 else dummies[0], compiled.losses)
    return build_step_graph(model, compiled, targets, train=True)[0]


def _nnir(path: str, *, training: bool, params: str | None, seed: int) -> Loaded:
    text = _read_text(path)
    try:
        graph = parse(text)
    except IRError as e:
        raise IRError(f"model file {path!r}: {e}") from None
    given = _read_params(params) if params is not None else {}
    unknown = sorted(set(given) - {v.name for v in graph.param_inputs})
    if unknown:
        raise ValueError(f"--params {params!r} has array {unknown[0]!r}, which is not a parameter of "
                         f"{path!r}; parameters: {', '.join(v.name for v in graph.param_inputs) or 'none'}")
    for v in graph.param_inputs:
        graph.params[v.name] = (_checked_param(v, given[v.name], params) if v.name in given
                                else fill_param(v.name, v.type, seed))
    return Loaded(path, graph)


def _read_text(path: str) -> str:
    """The UTF-8 text of the IR file at `path`; an error names the file, line and byte."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"model file {path!r}: line {line}: byte {data[e.start]:#04x} at offset "
                         f"{e.start} is not UTF-8; IR text is UTF-8") from None


def _read_params(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"--params file {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ZIP:   # np.load would try other formats, and pickle, and say so
        raise ValueError(f"--params file {path!r} is not an .npz archive (a zip of .npy arrays, "
                         f"as numpy.savez writes); it starts with {head!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, AttributeError, zipfile.BadZipFile) as e:
        raise ValueError(f"--params file {path!r} is not a readable .npz archive "
                         f"({type(e).__name__}: {e})") from None
    # np.load gives the raw bytes of a member that is not an .npy array.
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise ValueError(f"--params file {path!r}: member {name!r} is not an .npy array")
    return arrays


def _checked_param(v, array: np.ndarray, path: str) -> np.ndarray:
    if array.dtype != v.type.dtype.numpy or array.shape != tuple(v.type.shape):
        raise ValueError(f"--params {path!r}: parameter {v.name!r} is {array.dtype}{list(array.shape)}; "
                         f"the graph declares {v.type}")
    return np.array(array, order="C")   # not ascontiguousarray, which makes a scalar a vector


def fill_param(name: str, type, seed: int) -> np.ndarray:
    """The deterministic value of a parameter the file gives none for (see the module doc)."""
    if not type.is_static:
        raise ValueError(f"parameter {name!r} has the symbolic type {type}; give its value with --params")
    dtype = type.dtype.numpy
    if type.dtype.is_float:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        return (rng.standard_normal(type.shape) * FILL_STD).astype(dtype)
    return np.zeros(type.shape, dtype)


def _onnx(path: str, *, training: bool, params: str | None, seed: int) -> Loaded:
    import nncompile.onnx

    if training or params is not None:
        raise ValueError(f"model file {path!r}: an ONNX model is imported for inference with its "
                         f"own weights (no --training, no --params)")
    graph = nncompile.onnx.load(path)
    leading = {v.type.shape[0] for v in graph.data_inputs if v.type.rank and isinstance(v.type.shape[0], str)}
    if len(leading) == 1 and BATCH not in leading:   # the commands' --batch sets '?'
        graph = nncompile.onnx.load(path, dims={leading.pop(): BATCH})
    return Loaded(path, graph)


READERS: dict[str, Callable[..., Loaded]] = {
    **{suffix: _keras for suffix in KERAS_SUFFIXES},
    ".nnir": _nnir,
    ".onnx": _onnx,
}


def batch_sizes(text: str) -> list[int]:
    """`--batch 1,32,256` as sizes; a ValueError names what is wrong."""
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size < 1:
            raise ValueError(f"--batch {text!r}: expected positive integers separated by commas, e.g. 1,32,256")
        sizes.append(size)
    return sizes


def uses_batch(graph: Graph) -> bool:
    """Whether some data input has the symbolic batch dimension."""
    return any(BATCH in v.type.shape for v in graph.data_inputs)
