"""What each `nncompile` subcommand does, given its parsed arguments (main.py parses them).

Every command returns the exit status; user-level failures raise ValueError, TypeError or
OSError with a message naming the file, input or option, which main.py prints on one line.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np

from nncompile import phases
from nncompile.cli import draw
from nncompile.cli.load import Loaded, batch_sizes, load, uses_batch
from nncompile.codegen import module_parts
from nncompile.ir import BATCH, Graph, print_graph
from nncompile.ir.cost import node_cost
from nncompile.passes.manager import PassManager
from nncompile.passes.memory import check_fits
from nncompile.passes.pipelines import describe, pipeline

# Constants with more elements than this print as `dense<f32[784,128]: ...>` unless asked for.
ELIDE_ABOVE = 16
DEFAULT_BENCH_BATCHES = "1,32,256"
NPY_MAGIC = b"\x93NUMPY"


# --- shared steps ------------------------------------------------------------------------------

def _load(args: argparse.Namespace) -> Loaded:
    return load(args.model, training=getattr(args, "training", False),
                params=getattr(args, "params", None), seed=getattr(args, "seed", 0))


def _one_batch(args: argparse.Namespace) -> int | None:
    """The single --batch size of dump, compile and summary (None when not given)."""
    if args.batch is None:
        return None
    sizes = batch_sizes(args.batch)
    if len(sizes) != 1:
        raise ValueError(f"--batch {args.batch!r}: {args.command} takes one batch size, e.g. --batch 32")
    return sizes[0]


def _batched(graph: Graph, batch: int | None, args: argparse.Namespace | None = None) -> Graph:
    """`graph` with the batch dimension fixed to `batch` (types re-inferred), if given, and the
    symbols of --size."""
    sizes = _sizes(graph, args)
    if batch is not None:
        if not uses_batch(graph):
            raise ValueError(f"--batch {batch}: graph {graph.name!r} has no symbolic batch dimension '?' "
                             f"in its inputs ({', '.join(str(v.type) for v in graph.data_inputs)})")
        sizes[BATCH] = batch
    if not sizes:
        return graph
    from nncompile.passes.infer_shapes import fix_dims

    return fix_dims(graph, sizes)


def _sizes(graph: Graph, args: argparse.Namespace | None) -> dict[str, int]:
    """--size NAME=N (repeatable): symbols of the graph's inputs other than the batch."""
    symbols = _input_symbols(graph)
    sizes = {}
    for spec in getattr(args, "size", None) or []:
        name, _, size = spec.partition("=")
        if not size.isdigit() or not name:
            raise ValueError(f"--size {spec!r}: expected NAME=N, e.g. --size {symbols[0] if symbols else 'steps'}=100")
        if name not in symbols:
            raise ValueError(f"--size {spec!r}: graph {graph.name!r} has no symbolic dimension {name!r} in its "
                             f"inputs; its symbols besides the batch: {', '.join(symbols) or 'none'}")
        sizes[name] = int(size)
    return sizes


def _input_symbols(graph: Graph) -> list[str]:
    """The symbolic dimensions of the graph's data inputs other than the batch, in order."""
    return list(dict.fromkeys(d for v in graph.data_inputs for d in v.type.shape
                              if isinstance(d, str) and d != BATCH))


def _require_sizes(graph: Graph, what: str) -> None:
    """Refuse a graph whose inputs keep symbols besides the batch that `what` needs sizes of."""
    left = _input_symbols(graph)
    if left:
        raise ValueError(f"graph {graph.name!r} has symbolic dimensions besides the batch "
                         f"({', '.join(left)}); {what} needs their sizes: give them with "
                         f"{' '.join(f'--size {name}=N' for name in left)}")


def _pass_names(args: argparse.Namespace) -> list[str]:
    """--passes a,b if given, else the passes of --pipeline (default by --training)."""
    if getattr(args, "passes", None):
        return [name.strip() for name in args.passes.split(",") if name.strip()]
    name = args.pipeline or ("training" if getattr(args, "training", False) else "inference")
    return list(pipeline(name))


def _run_passes(args: argparse.Namespace, graph: Graph) -> tuple[Graph, PassManager]:
    """The graph after the selected passes, printing and dumping as the options say."""
    print_after = "all" if getattr(args, "print_after_all", False) else \
        [n.strip() for n in (getattr(args, "print_after", None) or "").split(",") if n.strip()]
    dump_dir = getattr(args, "dump_dir", None)
    if not dump_dir and os.environ.get("NNCOMPILE_DUMP_DIR"):
        dump_dir = os.path.join(os.environ["NNCOMPILE_DUMP_DIR"], graph.name)   # as nncompile.compile
    passes = PassManager(_pass_names(args), dump_dir=dump_dir or "", print_after=print_after,
                         print_changed=getattr(args, "print_changed", False))
    return passes.run(graph.copy()), passes


def _executable(scheduled: Graph, passes: PassManager):
    """Native code for the graph the passes gave, without running a pipeline again (so that
    dumps and the pass report show exactly one run)."""
    from nncompile.runtime import cpu

    return cpu.Executable(scheduled, passes)


def _table(header: tuple[str, ...], rows: list[tuple], right: set[int]) -> str:
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                     for row in [header, *rows])


def _write_text(path: str | None, text: str) -> None:
    if path is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# --- summary -------------------------------------------------------------------------------------

def layer_table(graph: Graph, env: dict[str, int]) -> str:
    """Per layer (node loc): its ops, parameter count, FLOPs and bytes moved; then the total."""
    layers: dict[str, list] = {}
    for node in graph.nodes:
        layers.setdefault(node.loc or "(no layer)", []).append(node)
    params: dict[str, int] = {}
    for v in graph.param_inputs:
        reader = next((n for n in graph.nodes if v in n.inputs), None)
        where = (reader.loc or "(no layer)") if reader else "(unused)"
        params[where] = params.get(where, 0) + int(np.prod(v.type.shape, dtype=np.int64))
    rows, totals = [], [0, 0, 0]
    for name in [*layers, *(["(unused)"] if "(unused)" in params else [])]:
        nodes = layers.get(name, [])
        counts: dict[str, int] = {}
        for node in nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        ops = ", ".join(op if n == 1 else f"{op} x{n}" for op, n in counts.items())
        flops = sum(node_cost(node, env).flops for node in nodes)
        moved = sum(node_cost(node, env).bytes for node in nodes)
        count = params.get(name, 0)
        rows.append((name, ops or "-", f"{count:,}", f"{flops:,}", f"{moved:,}"))
        totals = [totals[0] + count, totals[1] + flops, totals[2] + moved]
    rows.append(("total", f"{sum(len(n) for n in layers.values())} ops", *(f"{t:,}" for t in totals)))
    return _table(("layer", "ops", "params", "FLOPs", "bytes"), rows, right={2, 3, 4})


def summary(args: argparse.Namespace) -> int:
    loaded = _load(args)
    batch = _one_batch(args) or 1
    graph = _batched(loaded.graph, None, args)
    if loaded.model is not None:
        loaded.model.summary()
        print()
    _require_sizes(graph, "counting FLOPs")
    inputs = ", ".join(f"{v.name}: {v.type}" for v in graph.data_inputs)
    outputs = ", ".join(f"{n}: {v.type}" for n, v in zip(graph.output_names, graph.outputs))
    print(f"graph {graph.name!r}: inputs {inputs}; outputs {outputs}")
    env = {BATCH: batch} if uses_batch(graph) else {}
    print(f"ops, parameters and FLOPs per layer{f' at batch {batch}' if env else ''}:")
    print(layer_table(graph, env))
    return 0


# --- dump --------------------------------------------------------------------------------------

def _elide(args: argparse.Namespace) -> bool:
    """--elide-constants, by default only on stdout: a file written with -o must parse back."""
    return args.output is None if args.elide_constants is None else args.elide_constants


def _memory_plan(args, scheduled, passes):
    _require_sizes(scheduled, "the memory plan")
    return _executable(scheduled, passes).memory_plan(batch=_one_batch(args) or 1)


EMITTERS: dict[str, Callable[[argparse.Namespace, Graph, PassManager], str]] = {
    "ir": lambda args, g, p: print_graph(g, ELIDE_ABOVE if _elide(args) else None),
    "llvm": lambda args, g, p: _executable(g, p).llvm_ir(),
    "llvm-opt": lambda args, g, p: _executable(g, p).llvm_ir(optimized=True),
    "asm": lambda args, g, p: _executable(g, p).assembly(),
    "memory-plan": lambda args, g, p: _memory_plan(args, g, p).table(),
    "dot": lambda args, g, p: draw.graph_dot(g),
    "svg": lambda args, g, p: draw.dot_to_svg(draw.graph_dot(g)),
    "memory-svg": lambda args, g, p: draw.memory_svg(_memory_plan(args, g, p)),
}
EMIT_CHOICES = (*EMITTERS, "ptx")


def dump(args: argparse.Namespace) -> int:
    if args.emit == "ptx":
        raise ValueError("--emit ptx: nncompile has no GPU (NVPTX) backend yet; "
                         f"emit one of {', '.join(EMITTERS)}")
    loaded = _load(args)
    scheduled, passes = _run_passes(args, _batched(loaded.graph, _one_batch(args), args))
    _write_text(args.output, EMITTERS[args.emit](args, scheduled, passes))
    return 0


# --- compile -------------------------------------------------------------------------------------

def _kernel_rows(graph: Graph, env: dict[str, int]) -> list[tuple]:
    rows = []
    for number, node in enumerate(graph.nodes):
        kernel = f"fused {node.attrs['kind']}" if node.op == "fused" else node.op
        result = ", ".join(str(v.type) for v in node.outputs)
        rows.append((f"%{number}", kernel, node.loc or "-", result, f"{node_cost(node, env).flops:,}"))
    return rows


def compile_report(loaded: Loaded, exe, batch: int, times: dict[str, phases.Spent], seconds: float) -> str:
    """Kernels, fused groups, arena vs lower bound, compile time per phase (`times` of a compile
    that took `seconds`) and per pass."""
    graph = exe.graph
    env = {BATCH: batch} if any(BATCH in v.type.shape for v in graph.inputs) else {}
    fused = [(i, n) for i, n in enumerate(graph.nodes) if n.op == "fused"]
    plan = exe.memory_plan(batch=batch)
    ratio = plan.arena_bytes / plan.lower_bound if plan.lower_bound else 1.0
    lines = [f"model {loaded.path}: graph {graph.name!r}, {len(graph.nodes)} kernels, "
             f"{len(fused)} fused groups",
             "", f"kernels (FLOPs{f' at batch {batch}' if env else ''}):",
             _table(("kernel", "op", "layer", "result", "FLOPs"), _kernel_rows(graph, env), right={4}),
             "", "fused groups:"]
    lines += [f"  %{i} {n.attrs['kind']} ({n.loc or '-'}): {' -> '.join(b.op for b in n.attrs['body'].nodes)}"
              for i, n in fused] or ["  none"]
    lines += ["", f"memory at batch {batch}: arena {plan.arena_bytes} bytes, lower bound "
                  f"{plan.lower_bound} bytes, ratio {ratio:.3f}",
              "", f"compile time per phase{' (machine code from the disk cache)' if exe.from_cache else ''}:",
              phases.table(times, seconds),
              "", "compile time per pass:", exe.pass_report]
    return "\n".join(lines) + "\n"


def compile_(args: argparse.Namespace) -> int:
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise FileExistsError(f"-o {args.output!r} is a file; expected a folder (created if missing)")
    start = time.perf_counter()
    with phases.recorded() as times:   # from reading the model to loading its machine code
        loaded = _load(args)
        batch = _one_batch(args)
        graph = _batched(loaded.graph, batch, args)
        _require_sizes(graph, "the report's FLOPs and memory plan")
        scheduled, passes = _run_passes(args, graph)
        exe = _executable(scheduled, passes)
    seconds = time.perf_counter() - start
    os.makedirs(args.output, exist_ok=True)
    report = compile_report(loaded, exe, batch or 1, times, seconds)
    files = {
        "model.nnir": f"// {loaded.path} after {', '.join(passes.passes)}; parameters in params.npz\n"
                      f"{exe.graph}\n",
        "model.ll": exe.llvm_ir(),
        "model.opt.ll": exe.llvm_ir(optimized=True),
        "model.s": exe.assembly(),
        "report.txt": report,
    }
    if exe.prepared is not None:   # what the weights alone make, once per change of them
        files["prepared.nnir"] = f"// the values model.nnir reads as prepared/*; parameters in params.npz\n" \
                                 f"{exe.prepared.graph}\n"
    for name, text in files.items():
        _write_text(os.path.join(args.output, name), text)
    objects = {f"model.{i}.o" if i else "model.o": part for i, part in enumerate(module_parts.unpack(exe.object_code))}
    for name, part in objects.items():
        with open(os.path.join(args.output, name), "wb") as f:
            f.write(part)
    exe.make_prepared()
    np.savez(os.path.join(args.output, "params.npz"), **exe.params)
    print(report, end="")
    print(f"\nwrote {', '.join([*files, *objects, 'params.npz'])} to {args.output}")
    return 0


# --- run -----------------------------------------------------------------------------------------

def _read_array(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"--input file {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(b"PK"):
        raise ValueError(f"--input file {path!r} is an .npz archive; give one .npy file per input")
    if head != NPY_MAGIC:   # numpy's own message would speak of pickled data
        raise ValueError(f"--input file {path!r} is not a .npy file (no NumPy header); "
                         f"save the array with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"--input file {path!r} is not a readable .npy file ({e})") from None
    return array


def _as_input_dtype(array: np.ndarray, value) -> np.ndarray:
    """Numbers of another type become the input's, as Keras's predict casts them: floats and
    integers into a float input (np.random.rand makes float64), integers into an integer input
    when every one fits (np.save of Python ints makes int64 token ids); any other mismatch is
    left for the runtime's error."""
    want = value.type.dtype
    numeric = np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    if want.is_float and numeric:
        return array.astype(want.numpy, copy=False)
    if np.issubdtype(want.numpy, np.integer) and np.issubdtype(array.dtype, np.integer):
        limits = np.iinfo(want.numpy)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise ValueError(f"input {value.name!r} ({value.type}): its {array.dtype} values run from "
                             f"{array.min()} to {array.max()}, beyond {want}'s range")
        return array.astype(want.numpy, copy=False)
    return array


def _feeds(specs: list[str], graph: Graph) -> dict[str, np.ndarray]:
    """`--input PATH` (in input order) or `--input NAME=PATH`, one per data input."""
    names = [v.name for v in graph.data_inputs]
    feeds: dict[str, np.ndarray] = {}
    for position, spec in enumerate(specs):
        # NAME=PATH only when NAME is an input: a path may hold '=' itself.
        name, _, path = spec.partition("=")
        if not path or (name not in names and os.path.exists(spec)):
            name, path = "", spec
        if not name:
            if position >= len(names):
                raise ValueError(f"graph {graph.name!r} takes {len(names)} inputs ({', '.join(names)}); "
                                 f"got {len(specs)} --input files")
            name = names[position]
        if name not in names:
            raise ValueError(f"--input {spec!r}: graph {graph.name!r} has no input {name!r}; "
                             f"inputs: {', '.join(names)}")
        feeds[name] = _as_input_dtype(_read_array(path), graph.data_inputs[names.index(name)])
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ValueError(f"no --input for input {missing[0]!r} of graph {graph.name!r}; inputs: "
                         f"{', '.join(names)}")
    return feeds


def _compare(graph: Graph, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """Each output against the reference interpreter on the graph before any pass."""
    from nncompile.runtime import reference

    expected = dict(zip(graph.output_names, reference.run(graph, feeds)))
    for name, got in outputs.items():
        want = expected[name]
        exact = not np.issubdtype(want.dtype, np.floating)
        same = np.array_equal(got, want) if exact else np.allclose(got, want, rtol=1e-4, atol=1e-5)
        diff = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
        if not same:
            raise ValueError(f"output {name!r} differs from the reference interpreter: max abs "
                             f"difference {diff:.3g} (tolerance rtol 1e-4, atol 1e-5)")
        print(f"output {name!r}: matches the reference interpreter (max abs difference {diff:.3g})")


def run(args: argparse.Namespace) -> int:
    if args.output and not args.output.endswith((".npy", ".npz")):   # numpy would add ".npy" to it
        raise ValueError(f"--output {args.output!r}: expected a path ending in .npy (one output) or .npz "
                         f"(any number of outputs)")
    loaded = _load(args)
    graph = loaded.graph
    feeds = _feeds(args.input, graph)
    scheduled, passes = _run_passes(args, graph)
    outputs = _executable(scheduled, passes).run(feeds)
    if args.output:
        if args.output.endswith(".npz"):
            np.savez(args.output, **outputs)
        elif len(outputs) == 1:
            np.save(args.output, next(iter(outputs.values())))
        else:
            raise ValueError(f"--output {args.output!r}: the model has {len(outputs)} outputs "
                             f"({', '.join(outputs)}); give an .npz path to save them all")
    else:
        for name, array in outputs.items():
            print(f"{name}: {array.dtype}{list(array.shape)}")
            print(np.array2string(array, threshold=64, precision=6))
    if args.compare_reference:
        _compare(graph, feeds, outputs)
    return 0


# --- bench ---------------------------------------------------------------------------------------

def _index_ranges(graph: Graph) -> dict:
    """The data inputs that are a gather's indices, directly or through casts (token ids into an
    Embedding, which Keras lets a float Input hold), with the size of the axis they index."""
    ranges: dict = {}
    for node in graph.nodes:
        if node.op != "gather":
            continue
        index = node.inputs[1]
        while index.producer is not None and index.producer.op == "cast":
            index = index.producer.inputs[0]
        data = node.inputs[0].type
        size = data.shape[node.attrs["axis"] % data.rank]
        if isinstance(size, int):
            ranges[index] = min(ranges.get(index, size), size)
    return ranges


def _sample(graph: Graph, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random inputs: valid indices for those a gather reads, normal floats, else integer zeros."""
    ranges = _index_ranges(graph)
    arrays = []
    for v in graph.data_inputs:
        shape = tuple(batch if d == BATCH else d for d in v.type.shape)
        dtype = v.type.dtype.numpy
        if v in ranges:
            arrays.append(rng.integers(0, ranges[v], shape).astype(dtype))
        elif v.type.dtype.is_float:
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            arrays.append(np.zeros(shape, dtype))
    return arrays


def _time(exe, arrays: list[np.ndarray], seconds: float) -> list[float]:
    """Seconds per call: a few warm-up calls, then calls until `seconds` have passed (>= 5)."""
    for _ in range(3):
        exe(*arrays)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        exe(*arrays)
        times.append(time.perf_counter() - start)
    return times


def bench(args: argparse.Namespace) -> int:
    loaded = _load(args)
    graph = _batched(loaded.graph, None, args)
    _require_sizes(graph, "bench")
    if uses_batch(graph):
        sizes = batch_sizes(args.batch or DEFAULT_BENCH_BATCHES)
    elif args.batch:
        raise ValueError(f"--batch {args.batch!r}: graph {graph.name!r} has a fixed batch (inputs "
                         f"{', '.join(str(v.type) for v in graph.data_inputs)})")
    else:
        sizes = [None]
    if args.seconds <= 0:
        raise ValueError(f"--seconds {args.seconds}: expected a positive number of seconds")
    scheduled, passes = _run_passes(args, graph)
    exe = _executable(scheduled, passes)
    rng = np.random.default_rng(args.seed)
    rows = []
    for batch in sizes:
        check_fits(exe.memory_plan(batch=batch or 1))   # before the inputs are drawn
        arrays = _sample(graph, batch or 1, rng)
        samples = len(arrays[0]) if arrays and arrays[0].ndim else 1
        times = _time(exe, arrays, args.seconds)
        median = statistics.median(times)
        rows.append((batch or samples, f"{median * 1e3:.4f}", f"{min(times) * 1e3:.4f}",
                     f"{samples / median:,.0f}", len(times)))
    print(f"{loaded.path}: graph {graph.name!r}, {len(scheduled.nodes)} kernels")
    print(_table(("batch", "median ms", "min ms", "samples/s", "runs"), rows, right={0, 1, 2, 3, 4}))
    return 0


# --- passes --------------------------------------------------------------------------------------

def passes(args: argparse.Namespace) -> int:
    print(describe())
    return 0


def export(args: argparse.Namespace) -> int:
    import nncompile.onnx

    loaded = _load(args)
    nncompile.onnx.save(loaded.graph, args.output, opset=args.opset)
    print(f"wrote {args.output}")
    return 0
