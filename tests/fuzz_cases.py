"""Seeded mutation fuzzing of what nncompile reads: IR text, cached machine code, model configs.

Run as a child process by tests/test_fuzz.py (`python fuzz_cases.py DOMAIN SEED COUNT`), so that a
crash or a hang of the process is seen as such. Every case must end in a result equal to the
reference interpreter's or in one of the documented errors (`ALLOWED`); anything else is printed
with the mutated input and the child exits 1. The last line of output counts the outcomes.
"""
from __future__ import annotations

import collections
import io
import json
import math
import os
import re
import sys
import tempfile
import traceback
import zipfile

import numpy as np

import nncompile
from nncompile.ir import BATCH, Builder, IRError, f32, parse
from nncompile.ir.optable import Fusion, get_op
from nncompile.ir.types import is_symbol
from nncompile.runtime import disk_cache
from nncompile.runtime.reference import run as reference_run

ALLOWED = {"ir": (IRError,), "cache": (), "config": (ValueError, TypeError)}
# Inputs with more elements than this are not drawn: the case stops after compiling.
_MAX_FED = 1 << 16
_TOLERANCE = {np.float16: 2e-2, np.float32: 1e-4, np.float64: 1e-9}


class Mismatch(AssertionError):
    pass


# The input of the running case, shown when it fails.
current = {"input": ""}


# --- shared: run a graph compiled and on the reference interpreter ---------------------------------

def _draw(rng: np.random.Generator, v, env: dict) -> np.ndarray | None:
    shape = tuple(env.setdefault(d, 3) if is_symbol(d) else d for d in v.type.shape)
    if math.prod(shape) > _MAX_FED:
        return None
    dtype = v.type.dtype.numpy
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _assert_same(got, want) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        raise Mismatch(f"compiled {got.dtype}{list(got.shape)} but reference {want.dtype}{list(want.shape)}")
    tolerance = _TOLERANCE.get(got.dtype.type)
    if tolerance is None:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, equal_nan=True)


def compiled_equals_reference(graph, rng: np.random.Generator) -> str:
    """Compile `graph`, run it on drawn inputs and compare with the reference interpreter."""
    env: dict = {}
    for v in graph.param_inputs:
        if v.name not in graph.params:
            array = _draw(rng, v, env)
            if array is None:
                return "too large to feed"
            graph.params[v.name] = array
    exe = nncompile.compile(graph)
    arrays = [_draw(rng, v, env) for v in graph.data_inputs]
    if any(a is None for a in arrays):
        return "compiled"
    try:
        want = reference_run(graph, arrays)
    except IRError as e:   # the reference refuses these inputs (an index out of range): so must the code
        try:
            exe(*arrays)
        except IRError:
            return "refused at run time"
        raise Mismatch(f"the reference refused the inputs ({e}) but the compiled code ran") from None
    got = exe(*arrays)
    got = got if isinstance(got, list) else [got]
    for g, w in zip(got, want):
        _assert_same(g, w)
    return "ran"


# --- IR text ------------------------------------------------------------------------------------

def _seed_graphs():
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    w = b.param("w", rng.standard_normal((6, 5)).astype(np.float32))
    bias = b.param("bias", rng.standard_normal(5).astype(np.float32))
    h = b.op("tanh", b.op("add", b.op("matmul", x, w), bias))
    s = b.op("softmax", h, axis=1)
    m = b.op("reduce_mean", b.op("mul", s, h), axes=(1,), keepdims=True)
    mlp = b.finish([s, b.op("sub", h, m)], ["probs", "centered"])
    fused = nncompile.compile(mlp).graph
    return [str(mlp), str(fused)]


_NUMBERS = ["0", "1", "2", "3", "-1", "7", "64", "2147483648", "4611686018427387904"]
_DTYPES = ["f32", "f16", "f64", "i32", "i64", "i8", "bool"]


def mutate_text(text: str, rng: np.random.Generator) -> str:
    lines = text.split("\n")
    kind = int(rng.integers(8))
    if kind == 0:   # a number
        spots = [m for m in re.finditer(r"(?<![%\w])-?\d+", text)]
        if spots:
            m = spots[int(rng.integers(len(spots)))]
            return text[:m.start()] + str(rng.choice(_NUMBERS)) + text[m.end():]
    if kind == 1:   # an op
        spots = list(re.finditer(r"= (\w+)\(", text))
        if spots:
            m = spots[int(rng.integers(len(spots)))]
            return text[:m.start(1)] + str(rng.choice(sorted(nncompile.ir.OPS))) + text[m.end(1):]
    if kind == 2:   # a dtype
        spots = list(re.finditer(r"\b(f16|f32|f64|i8|i32|i64|bool)\[", text))
        if spots:
            m = spots[int(rng.integers(len(spots)))]
            return text[:m.start(1)] + str(rng.choice(_DTYPES)) + text[m.end(1):]
    if kind == 3:   # a value read
        refs = list(re.finditer(r"%[\w/#]+", text))
        if len(refs) > 1:
            m, other = (refs[int(i)] for i in rng.integers(len(refs), size=2))
            return text[:m.start()] + other.group() + text[m.end():]
    if kind == 4 and len(lines) > 2:   # a line dropped
        del lines[int(rng.integers(1, len(lines) - 1))]
        return "\n".join(lines)
    if kind == 5 and len(lines) > 2:   # a line repeated or two lines swapped
        i, j = (int(k) for k in rng.integers(1, len(lines) - 1, size=2))
        lines[i], lines[j] = lines[j], lines[i]
        if rng.random() < 0.5:
            lines.insert(i, lines[j])
        return "\n".join(lines)
    if kind == 6:   # cut short
        return text[:int(rng.integers(len(text)))]
    at = int(rng.integers(len(text)))   # a character changed
    return text[:at] + str(rng.choice(list("(){}[]<>,:=%?\"#\\ x0\u00e9\n"))) + text[at + 1:]


def _same_arity(op: str) -> list[str]:
    opdef = get_op(op)
    return sorted(name for name, other in nncompile.ir.OPS.items()
                  if other.fusion is Fusion.ELEMENTWISE and len(other.inputs) == len(opdef.inputs)
                  and not other.attrs and name != "constant")


def rewired(text: str, rng: np.random.Generator) -> str:
    """`text` rebuilt op by op with some ops swapped for others of their arity and some inputs
    for earlier values, keeping only what the shape rules accept: valid graphs the code
    generator has never seen, where text mutations mostly give parse errors."""
    graph = parse(text)
    b = Builder()
    values = {v: b.graph.add_input(v.name, v.type, param=v.is_param) for v in graph.inputs}
    for node in graph.nodes:
        op, args = node.op, [values[v] for v in node.inputs]
        if node.op != "fused" and not node.attrs and rng.random() < 0.4:
            op = str(rng.choice(_same_arity(node.op)))
        if args and rng.random() < 0.3:
            args[int(rng.integers(len(args)))] = list(values.values())[int(rng.integers(len(values)))]
        try:
            outs = b.op(op, *args, **node.attrs)
        except IRError:
            try:
                outs = b.op(node.op, *[values[v] for v in node.inputs], **node.attrs)
            except IRError:   # an earlier swap changed this op's input types: keep the seed
                return text
        values.update(zip(node.outputs, outs if isinstance(outs, tuple) else (outs,)))
    return str(b.finish([values[v] for v in graph.outputs], graph.output_names))


def ir_case(rng: np.random.Generator, seeds: list[str]) -> str:
    text = seeds[int(rng.integers(len(seeds)))]
    if rng.random() < 0.5:
        text = rewired(text, rng)
    else:
        for _ in range(int(rng.integers(1, 4))):
            text = mutate_text(text, rng)
    current["input"] = text
    graph = parse(text)
    return compiled_equals_reference(graph, rng)


# --- cached machine code ------------------------------------------------------------------------

def _cache_model():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    return b.finish([b.op("sigmoid", b.op("matmul", x, w))], ["y"])


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(5))
    if kind == 0:   # bits flipped
        raw = bytearray(data)
        for at in rng.integers(len(raw), size=int(rng.integers(1, 9))):
            raw[at] ^= 1 << int(rng.integers(8))
        return bytes(raw)
    if kind == 1:
        return data[:int(rng.integers(len(data)))]
    if kind == 2:
        return data + rng.bytes(int(rng.integers(1, 4096)))
    if kind == 3:   # a slice overwritten
        at = int(rng.integers(len(data)))
        junk = rng.bytes(int(rng.integers(1, 256)))
        return data[:at] + junk + data[at + len(junk):]
    return rng.bytes(int(rng.integers(0, 2 * len(data))))


def cache_case(rng: np.random.Generator, _seeds) -> str:
    graph = _cache_model()
    entry = disk_cache.directory() / (nncompile.compile(graph)._key + ".o")
    good = entry.read_bytes()
    bad = mutate_bytes(good, rng)
    entry.write_bytes(bad)
    current["input"] = f"an entry of {len(bad)} bytes ({'sound' if bad == good else 'bad'})"
    exe = nncompile.compile(graph)
    if exe.from_cache != (bad == good):
        raise Mismatch(f"from_cache is {exe.from_cache} for a {'sound' if bad == good else 'bad'} entry")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    _assert_same(exe(x), reference_run(graph, [x])[0])
    return "ran"


# --- model configs ------------------------------------------------------------------------------

def _saved_model() -> bytes:
    from nncompile import keras

    model = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dropout(0.25),
                              keras.layers.Dense(2, activation="softmax")])
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    with open(path, "rb") as f:
        return f.read()


_VALUES = ["yes", "", -1, 0, 1e30, -1e-3, None, [], {}, [1, 2], {"a": 1}, True, 2.5, "relu",
           "no_such_thing", [[[[[]]]]]]


def _places(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key, path + (key,)
            yield from _places(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield node, i, path + (i,)
            yield from _places(value, path + (i,))


def mutate_config(config: dict, rng: np.random.Generator) -> dict:
    places = list(_places(config))
    holder, key, _ = places[int(rng.integers(len(places)))]
    if rng.random() < 0.2 and isinstance(holder, dict):
        del holder[key]
    else:
        value = _VALUES[int(rng.integers(len(_VALUES)))]
        holder[key] = json.loads(json.dumps(value))
    return config


def config_case(rng: np.random.Generator, saved: bytes) -> str:
    from nncompile import keras

    with zipfile.ZipFile(io.BytesIO(saved)) as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    for _ in range(int(rng.integers(1, 3))):
        config = mutate_config(config, rng)
    files["config.json"] = json.dumps(config).encode()
    current["input"] = json.dumps(config)
    path = os.path.join(tempfile.mkdtemp(), "mutated.keras")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    model = keras.models.load_model(path)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    got = model.predict(x, verbose=0)
    want = reference_run(nncompile.trace(model), [x])[0]
    _assert_same(got, want)
    return "ran"


# --- the driver ---------------------------------------------------------------------------------

CASES = {"ir": (ir_case, _seed_graphs), "cache": (cache_case, lambda: None), "config": (config_case, _saved_model)}


def main(domain: str, seed: int, count: int) -> int:
    case, make_seeds = CASES[domain]
    seeds = make_seeds()
    outcomes: collections.Counter = collections.Counter()
    failures = 0
    for number in range(count):
        rng = np.random.default_rng([seed, number])
        try:
            current["input"] = ""
            outcome = case(rng, seeds)
        except ALLOWED[domain] as e:
            outcome = f"refused: {type(e).__name__}"
        except Exception:   # anything else is a defect: show the input that caused it
            failures += 1
            print(f"--- {domain} case {number} (seed {seed}) failed on:\n{current['input']}\n"
                  f"{traceback.format_exc()}", file=sys.stderr)
            continue
        outcomes[outcome] += 1
    print(json.dumps({"cases": count, "failures": failures, "outcomes": dict(outcomes)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
