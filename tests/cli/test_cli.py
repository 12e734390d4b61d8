"""The `nncompile` console script, run in a subprocess for every subcommand, bad input included."""
from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.ir import Builder, f32, parse
from nncompile.ir.printer import print_graph
from nncompile.passes.manager import PASSES, PassManager
from nncompile.passes.pipelines import PIPELINES, pipeline
from nncompile.runtime import reference
from tests.cli.conftest import nnc

SUBCOMMANDS = ("summary", "dump", "compile", "run", "bench", "passes", "tune", "demo")


def _inference(graph):
    return PassManager(pipeline("inference")).run(graph.copy())


def _error_line(result, command: str) -> str:
    """The one stderr line of a failed command, checked for the documented form."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"nncompile {command}: error: "), lines[0]
    return lines[0]


# --- help and passes -----------------------------------------------------------------------------

def test_help_lists_every_subcommand_and_each_has_an_example():
    top = nnc("--help")
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s", top.stdout, re.M), name
    for name in SUBCOMMANDS:
        sub = nnc(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert re.search(rf"Example:\n  nncompile {name}\b", sub.stdout), name


def test_no_subcommand_prints_usage_and_exits_2():
    result = nnc()
    assert result.returncode == 2 and "usage: nncompile" in result.stdout


def test_module_entry_point_runs_the_same_command():
    import subprocess

    result = subprocess.run([sys.executable, "-m", "nncompile.cli", "passes"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("pipelines:")


def test_passes_lists_every_pipeline_and_every_pass_one_line_each():
    result = nnc("passes")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for p in PIPELINES.values():
        assert any(line.split()[:1] == [p.name] and " -> ".join(p.passes) in line for line in lines), p.name
    for name in PASSES:
        assert sum(line.split()[:1] == [name] for line in lines) >= 1, name


# --- summary -------------------------------------------------------------------------------------

def _layer_rows(stdout: str) -> dict[str, list[str]]:
    table = stdout[stdout.index("layer "):].splitlines()[1:]
    return {row.split()[0]: re.split(r"\s{2,}", row.strip()) for row in table}


@pytest.mark.parametrize("batch", [1, 8])
def test_summary_counts_flops_and_parameters_per_layer(tiny, batch):
    result = nnc("summary", tiny.nnir, "--batch", batch)
    assert result.returncode == 0, result.stderr
    rows = _layer_rows(result.stdout)
    # Dense(3) on 4 features: matmul 2*B*4*3, bias add B*3, relu B*3; Dense(2) on 3: matmul
    # 2*B*3*2, add B*2, softmax 5 per element (max, subtract, exp, sum, divide).
    dense = 2 * batch * 4 * 3 + batch * 3 + batch * 3
    head = 2 * batch * 3 * 2 + batch * 2 + 5 * batch * 2
    assert rows["dense"] == ["dense", "matmul, add, relu", "15", f"{dense:,}", rows["dense"][4]]
    assert rows["dense_1"][1:4] == ["matmul, add, softmax", "8", f"{head:,}"]
    assert rows["total"][1:4] == ["6 ops", "23", f"{dense + head:,}"]


def test_summary_of_a_keras_file_starts_with_the_keras_table(tiny, tmp_path):
    pytest.importorskip("nncompile.keras.saving")
    path = str(tmp_path / "tiny.keras")
    tiny.model.save(path)
    result = nnc("summary", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('Model: "tiny"')
    assert "Total params: 23" in result.stdout and _layer_rows(result.stdout)["total"][2] == "23"


# --- dump ----------------------------------------------------------------------------------------

def test_dump_prints_the_ir_after_the_inference_pipeline(tiny):
    result = nnc("dump", tiny.nnir)
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout) == _inference(tiny.graph)


def _headers(stderr: str) -> list[str]:
    return re.findall(r"^// after pass '([^']+)'", stderr, re.M)


def test_print_changed_lists_exactly_the_passes_whose_output_differs(tiny):
    changed, graph = [], tiny.graph.copy()
    for name in pipeline("inference"):
        before = print_graph(graph)
        graph = PassManager([name]).run(graph)
        if print_graph(graph) != before:
            changed.append(name)
    result = nnc("dump", tiny.nnir, "--print-changed")
    assert result.returncode == 0, result.stderr
    assert _headers(result.stderr) == changed and "fuse" in changed


def test_print_after_all_and_print_after_names(tiny):
    every = nnc("dump", tiny.nnir, "--print-after-all")
    assert _headers(every.stderr) == list(pipeline("inference"))
    some = nnc("dump", tiny.nnir, "--print-after", "fuse,schedule")
    assert _headers(some.stderr) == ["fuse", "schedule"]
    final = some.stderr[some.stderr.index("// after pass 'schedule'"):].split("\n", 1)[1]
    assert parse(final) == parse(some.stdout)


def test_dump_dir_files_parse_back_and_replay_the_remaining_passes(tiny, tmp_path):
    dumps = tmp_path / "dumps"
    result = nnc("dump", tiny.nnir, "--dump-dir", dumps)
    assert result.returncode == 0, result.stderr
    names = list(pipeline("inference"))
    files = sorted(os.listdir(dumps))
    assert files == [f"{i:03d}-{n}.nnir" for i, n in enumerate(["input", *names])]
    for name in files:
        parse((dumps / name).read_text())
    assert parse((dumps / files[-1]).read_text()) == parse(result.stdout)
    at = names.index("fuse")
    replay = nnc("dump", dumps / files[at], "--passes", ",".join(names[at:]))
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == result.stdout


def test_dump_elides_large_constants_on_the_terminal_but_not_in_a_file(tmp_path):
    b = Builder()
    x = b.input("x", f32[2, 20])
    graph = b.finish([b.mul(x, b.constant(np.arange(20, dtype=np.float32)))], ["y"])
    (tmp_path / "big.nnir").write_text(f"{graph}\n")
    shown = nnc("dump", tmp_path / "big.nnir", "--passes", "dce")
    assert "dense<f32[20]: ...>" in shown.stdout
    written = nnc("dump", tmp_path / "big.nnir", "--passes", "dce", "-o", tmp_path / "out.nnir")
    assert written.returncode == 0, written.stderr
    assert parse((tmp_path / "out.nnir").read_text()) == graph


def test_dump_batch_fixes_the_batch_dimension(tiny):
    result = nnc("dump", tiny.nnir, "--batch", "3")
    graph = parse(result.stdout)
    assert [str(v.type) for v in graph.data_inputs] == ["f32[3,4]"]
    assert str(graph.outputs[0].type) == "f32[3,2]" and "?" not in result.stdout


def test_dump_training_is_the_step_graph_with_updates(tiny, tmp_path):
    pytest.importorskip("nncompile.keras.saving")
    path = str(tmp_path / "tiny.h5")
    tiny.model.save(path)
    result = nnc("dump", path, "--training")
    assert result.returncode == 0, result.stderr
    graph = parse(result.stdout)
    assert graph.name == "train_step"
    assert sorted(set(graph.updates.values()) & {v.name for v in tiny.graph.param_inputs}) == \
        sorted(v.name for v in tiny.graph.param_inputs)


@pytest.mark.parametrize("emit, pattern", [("llvm", r"define .*@"), ("llvm-opt", r"define .*@"),
                                           ("asm", r"\bret")])
def test_dump_emits_llvm_ir_and_assembly(tiny, emit, pattern):
    result = nnc("dump", tiny.nnir, "--emit", emit)
    assert result.returncode == 0, result.stderr
    assert re.search(pattern, result.stdout)


@pytest.mark.parametrize("batch", [1, 2])
def test_dump_memory_plan_reports_the_lower_bound(tiny, batch):
    result = nnc("dump", tiny.nnir, "--emit", "memory-plan", "--batch", batch)
    assert result.returncode == 0, result.stderr
    # Two intermediates live together at the second kernel: f32[B,3] and f32[B,2]; the final
    # softmax writes the caller's output array.
    lower = 4 * batch * 3 + 4 * batch * 2
    assert re.search(rf"lower bound {lower} bytes", result.stdout.splitlines()[-1])


def test_dump_dot_draws_fused_groups_as_clusters_and_shapes_on_edges(tiny):
    result = nnc("dump", tiny.nnir, "--emit", "dot")
    assert result.returncode == 0, result.stderr
    fused = [n for n in _inference(tiny.graph).nodes if n.op == "fused"]
    assert len(re.findall(r"subgraph cluster_\w+ \{", result.stdout)) == len(fused) == 2
    labels = re.findall(r"-> \w+ \[label=\"([^\"]+)\"\]", result.stdout)
    assert {"f32[?,4]", "f32[?,3]", "f32[4,3]", "f32[?,2]"} <= set(labels)
    assert result.stdout.count("{") == result.stdout.count("}")


def test_dump_svg_without_graphviz_says_so(tiny, tmp_path):
    result = nnc("dump", tiny.nnir, "--emit", "svg", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "'dot' is not installed" in _error_line(result, "dump")


def test_dump_memory_svg_is_xml_with_one_bar_per_buffer(tiny, tmp_path):
    out = tmp_path / "memory.svg"
    result = nnc("dump", tiny.nnir, "--emit", "memory-svg", "-o", out)
    assert result.returncode == 0, result.stderr
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "buffer"]
    assert len(bars) == 2
    assert [l for l in root.iter(f"{ns}line") if l.get("class") == "lower-bound"]


def test_dump_ptx_is_refused_in_one_line(tiny):
    result = nnc("dump", tiny.nnir, "--emit", "ptx")
    assert result.returncode == 1 and "no GPU" in _error_line(result, "dump")


# --- compile and run -----------------------------------------------------------------------------

def _reference(tiny) -> np.ndarray:
    return reference.run(tiny.graph, [np.load(tiny.x)])[0]


def test_compile_writes_artefacts_that_run_again(tiny, tmp_path):
    out = tmp_path / "build"
    result = nnc("compile", tiny.nnir, "--params", tiny.params, "-o", out)
    assert result.returncode == 0, result.stderr
    assert {"model.nnir", "params.npz", "model.ll", "model.opt.ll", "model.s", "model.o",
            "report.txt"} <= set(os.listdir(out))
    assert (out / "model.o").read_bytes()[:4] == b"\x7fELF"
    report = (out / "report.txt").read_text()
    assert "2 fused groups" in report and "matmul -> add -> relu" in report
    assert re.search(r"arena \d+ bytes, lower bound 20 bytes", report)
    assert all(name in report for name in pipeline("inference"))
    y = tmp_path / "y.npy"
    again = nnc("run", out / "model.nnir", "--params", out / "params.npz", "--input", tiny.x, "--output", y)
    assert again.returncode == 0, again.stderr
    np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_compile_writes_the_prepared_values_made_from_the_weights(tmp_path):
    """An Embedding's table times the next Dense kernel is prepared once (passes/prepare.py):
    compile writes that graph and its values, and model.nnir reads them as a parameter."""
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(2000, 32),
                              keras.layers.Dense(48)])
    path, out = str(tmp_path / "table.keras"), tmp_path / "build"
    model.save(path)
    result = nnc("compile", path, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "prepared/0" in (out / "model.nnir").read_text() and (out / "prepared.nnir").exists()
    table, kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    np.testing.assert_allclose(np.load(out / "params.npz")["prepared/0"], table @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_compiled_recurrent_model_runs_again_from_its_ir_and_parameters(tmp_path):
    """A recurrent layer's zero initial state is a scalar constant, bound as a rank-0 parameter:
    model.nnir with params.npz runs and gives what the reference interpreter gives the model."""
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.LSTM(16), keras.layers.Dense(2)])
    path, out = str(tmp_path / "rnn.keras"), tmp_path / "build"
    model.save(path)
    assert nnc("compile", path, "-o", out).returncode == 0
    assert any(shape == () for shape in (a.shape for a in np.load(out / "params.npz").values()))
    tokens = np.random.default_rng(0).integers(0, 50, (3, 6)).astype(np.int32)
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, tokens)
    again = nnc("run", out / "model.nnir", "--params", out / "params.npz", "--input", x, "--output", y)
    assert again.returncode == 0, again.stderr
    want = reference.run(nncompile.trace(model), [tokens])[0]
    np.testing.assert_allclose(np.load(y), want, rtol=1e-5, atol=1e-6)


def test_run_writes_what_the_reference_interpreter_computes(tiny, tmp_path):
    y = tmp_path / "y.npy"
    result = nnc("run", tiny.nnir, "--params", tiny.params, "--input", f"input_layer={tiny.x}",
                 "--output", y, "--compare-reference")
    assert result.returncode == 0, result.stderr
    assert "matches the reference interpreter" in result.stdout
    np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_run_output_must_be_npy_or_npz(tiny, tmp_path):
    """numpy's save appends ".npy" to any other name: the file asked for would never appear."""
    y = tmp_path / "y.txt"
    line = _error_line(nnc("run", tiny.nnir, "--params", tiny.params, "--input", tiny.x, "--output", y), "run")
    assert f"--output {str(y)!r}" in line and ".npy" in line and ".npz" in line
    assert list(tmp_path.iterdir()) == []
    z = tmp_path / "y.npz"
    assert nnc("run", tiny.nnir, "--params", tiny.params, "--input", tiny.x, "--output", z).returncode == 0
    with np.load(z) as saved:
        np.testing.assert_allclose(next(iter(saved.values())), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_run_input_path_may_hold_an_equals_sign(tiny, tmp_path):
    folder = tmp_path / "run=3"
    folder.mkdir()
    x = folder / "x.npy"
    x.write_bytes(open(tiny.x, "rb").read())
    y = tmp_path / "y.npy"
    for spec in (str(x), f"input_layer={x}"):
        result = nnc("run", tiny.nnir, "--params", tiny.params, "--input", spec, "--output", y)
        assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_run_casts_float64_inputs_as_keras_predict_does(tiny, tmp_path):
    x64 = tmp_path / "x64.npy"
    np.save(x64, np.load(tiny.x).astype(np.float64))
    y = tmp_path / "y.npy"
    result = nnc("run", tiny.nnir, "--params", tiny.params, "--input", x64, "--output", y)
    assert result.returncode == 0, result.stderr
    assert np.load(y).dtype == np.float32
    np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_run_a_keras_file(tiny, tmp_path):
    pytest.importorskip("nncompile.keras.saving")
    path, y = str(tmp_path / "tiny.keras"), tmp_path / "y.npy"
    tiny.model.save(path)
    result = nnc("run", path, "--input", tiny.x, "--output", y)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)


def test_run_casts_int64_token_ids_that_fit_and_names_those_that_do_not(tmp_path):
    pytest.importorskip("nncompile.keras.saving")
    model = keras.Sequential([keras.Input((4,), dtype="int32", name="tokens"), keras.layers.Embedding(10, 3),
                              keras.layers.GlobalAveragePooling1D()])
    path, x, y = str(tmp_path / "emb.keras"), tmp_path / "x.npy", tmp_path / "y.npy"
    model.save(path)
    tokens = np.array([[1, 2, 3, 9], [0, 0, 5, 5]])   # np.save keeps numpy's default int64
    np.save(x, tokens)
    result = nnc("run", path, "--input", x, "--output", y)
    assert result.returncode == 0, result.stderr
    table = model.get_weights()[0]
    np.testing.assert_allclose(np.load(y), table[tokens].mean(axis=1), rtol=1e-6)
    np.save(x, tokens + 2 ** 40)
    line = _error_line(nnc("run", path, "--input", x, "--output", y), "run")
    assert "input 'tokens'" in line and "beyond i32's range" in line


def test_size_fixes_a_sequence_length_for_summary_compile_bench_and_the_memory_plan(tmp_path):
    """Input(shape=(None,)): the length is a symbol of its own, which these commands need a size
    for; without one they say which symbol and how to give it."""
    pytest.importorskip("nncompile.keras.saving")
    model = keras.Sequential([keras.Input((None,), dtype="int32", name="tokens"), keras.layers.Embedding(50, 8),
                              keras.layers.GlobalAveragePooling1D(name="pool"), keras.layers.Dense(2, name="head")])
    path = str(tmp_path / "varlen.keras")
    model.save(path)
    symbol = nncompile.trace(model).data_inputs[0].type.shape[1]
    for command in (["summary", path], ["compile", path, "-o", tmp_path / "out"], ["bench", path],
                    ["dump", path, "--emit", "memory-plan"]):
        line = _error_line(nnc(*command), command[0])
        assert f"--size {symbol}=N" in line, line
    wrong = _error_line(nnc("summary", path, "--size", "steps=3"), "summary")
    assert "no symbolic dimension 'steps'" in wrong and symbol in wrong
    at_10, at_20 = (nnc("summary", path, "--batch", "2", "--size", f"{symbol}={n}") for n in (10, 20))
    assert at_10.returncode == 0 and at_20.returncode == 0, at_10.stderr + at_20.stderr
    dense = {n: _layer_rows(r.stdout)["head"] for n, r in ((10, at_10), (20, at_20))}
    assert dense[10] == dense[20]   # after the pooling the length is gone
    pooled = {n: _layer_rows(r.stdout)["pool"] for n, r in ((10, at_10), (20, at_20))}
    assert pooled[10] != pooled[20]
    compiled = nnc("compile", path, "--batch", "2", "--size", f"{symbol}=10", "-o", tmp_path / "out")
    assert compiled.returncode == 0, compiled.stderr
    assert "i32[2,10]" in (tmp_path / "out" / "model.nnir").read_text()
    benched = nnc("bench", path, "--batch", "1", "--size", f"{symbol}=10", "--seconds", "0.05")
    assert benched.returncode == 0, benched.stderr


def test_a_model_compiled_with_a_custom_loss_is_summarized_and_run_without_it(tiny, tmp_path):
    """The file names a loss function it cannot hold: only the training step needs it."""
    pytest.importorskip("nncompile.keras.saving")

    def my_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred))

    model = keras.models.clone_model(tiny.model)
    model.set_weights(tiny.model.get_weights())
    model.compile(optimizer="adam", loss=my_loss)
    path, y = str(tmp_path / "custom_loss.keras"), tmp_path / "y.npy"
    model.save(path)
    assert nnc("summary", path).returncode == 0
    result = nnc("run", path, "--input", tiny.x, "--output", y)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(y), _reference(tiny), rtol=1e-5, atol=1e-6)
    assert "my_loss" in _error_line(nnc("dump", path, "--training"), "dump")


def test_run_fills_missing_parameters_deterministically_by_seed(tiny, tmp_path):
    outs = []
    for seed in (0, 0, 1):
        y = tmp_path / f"y{len(outs)}.npy"
        assert nnc("run", tiny.nnir, "--input", tiny.x, "--output", y, "--seed", seed).returncode == 0
        outs.append(np.load(y))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def test_bench_reports_every_batch_size(tiny):
    result = nnc("bench", tiny.nnir, "--batch", "1,4", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["1", "4"]
    assert all(float(r[1]) > 0 and float(r[3].replace(",", "")) > 0 for r in rows)


def test_demo_still_trains_and_dumps(tmp_path):
    result = nnc("demo", "--epochs", "1", "--dump-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "final: loss" in result.stdout
    assert {"train_step", "main"} <= set(os.listdir(tmp_path))


# --- the environment -----------------------------------------------------------------------------

def test_nncompile_dump_dir_dumps_from_a_python_program(tiny, tmp_path):
    import subprocess

    program = ("import numpy as np, nncompile; g = nncompile.ir.parse(open(%r).read()); "
               "g.params.update(np.load(%r)); exe = nncompile.compile(g); print(exe.graph)"
               % (tiny.nnir, tiny.params))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            env={**os.environ, "NNCOMPILE_DUMP_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    files = sorted(os.listdir(tmp_path / "main"))
    assert files[0] == "000-input.nnir" and len(files) == len(pipeline("inference")) + 1
    assert parse((tmp_path / "main" / files[0]).read_text()) == tiny.graph
    assert parse((tmp_path / "main" / files[-1]).read_text()) == parse(result.stdout)


def test_nncompile_dump_dir_applies_to_the_command(tiny, tmp_path):
    result = nnc("dump", tiny.nnir, env={"NNCOMPILE_DUMP_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert len(os.listdir(tmp_path / "main")) == len(pipeline("inference")) + 1


# --- bad input: one line on stderr, exit 1 (2 for usage errors) ----------------------------------

def _bad_files(tmp_path, tiny) -> dict[str, str]:
    texts = {"corrupt.nnir": "func @main(%x: f32[?,4]) -> (y: f32[?,4]) {\n  %0 = relu(%x : f32[?,4]\n}\n",
             "corrupt.h5": "not an HDF5 file\n", "net.onnx": "", "text.npy": "1 2 3\n"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "wide.npy", np.zeros((2, 5), np.float32))
    np.save(tmp_path / "flags.npy", np.zeros((2, 4), np.bool_))
    np.savez(tmp_path / "two.npz", a=np.zeros(4, np.float32), b=np.zeros(4, np.float32))
    blobs = {"junk.npz": b"junk", "zip_junk.npz": b"PK\x03\x04junk", "member.npz": _npz_of_bytes(),
             **_bad_updates(tiny.graph),
             "non_utf8.nnir": str(tiny.graph).replace("relu", "r\xe9lu", 1).encode("latin-1")}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    names = [*texts, *blobs, "wide.npy", "flags.npy", "missing.nnir", "two.npz"]
    return {"nnir": tiny.nnir, "x": tiny.x, **{n.replace(".", "_"): str(tmp_path / n) for n in names}}


def _npz_of_bytes() -> bytes:
    """An .npz whose member for a parameter holds bytes, not an .npy array."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("dense/kernel.npy", b"not an array")
    return buffer.getvalue()


def _bad_updates(graph) -> dict[str, bytes]:
    """The tiny model's IR with a result that updates its input, and two that update one bias."""
    text, (ret,) = str(graph), re.findall(r"return .*", str(graph))
    def extra(results: str, values: str) -> bytes:
        return text.replace(") {", f", {results}) {{", 1).replace(ret, f"{ret}, {values}").encode()
    return {"updates_input.nnir": extra("u: f32[?,4] {updates %input_layer}", "%input_layer"),
            "updates_twice.nnir": extra("u: f32[3] {updates %dense/bias}, v: f32[3] {updates "
                                        "%dense/bias}", "%dense/bias, %dense/bias")}


BAD_INPUT = [
    ("summary", ["{missing_nnir}"], "model file '.*missing.nnir' does not exist"),
    ("dump", ["{corrupt_nnir}"], r"corrupt.nnir': line 2, column \d+: expected"),
    ("dump", ["{corrupt_h5}"], "corrupt.h5"),
    ("dump", ["{net_onnx}"], "net.onnx' holds no ONNX graph"),
    ("dump", ["{nnir}", "--print-after", "fusion"], "pass 'fusion'"),
    ("compile", ["{nnir}", "--passes", "dce,nope", "-o", "{x}.out"], "unknown pass 'nope'"),
    ("bench", ["{nnir}", "--pipeline", "fast"], "unknown pipeline 'fast'"),
    ("run", ["{nnir}", "--input", "{wide_npy}"], r"expected shape \(None, 4\), received shape \(2, 5\)"),
    ("run", ["{nnir}", "--input", "{flags_npy}"], "expected dtype f32, received bool"),
    ("run", ["{nnir}", "--input", "{x}", "--input", "{x}"], "takes 1 inputs"),
    ("run", ["{nnir}", "--input", "{text_npy}"], r"text.npy' is not a .npy file \(no NumPy header\)"),
    ("run", ["{nnir}", "--input", "{two_npz}"], r"two.npz' is an .npz archive; give one .npy file per input"),
    ("compile", ["{nnir}", "-o", "{x}"], r"-o '.*x.npy' is a file; expected a folder"),
    ("bench", ["{nnir}", "--batch", "1,zero"], "--batch '1,zero': expected positive integers"),
    ("summary", ["{nnir}", "--batch", "0"], "--batch '0'"),
    ("summary", ["{nnir}", "--params", "{junk_npz}"],
     r"--params file '.*junk.npz' is not an .npz archive .*it starts with b'junk'"),
    ("run", ["{nnir}", "--input", "{x}", "--params", "{zip_junk_npz}"],
     r"zip_junk.npz' is not a readable .npz archive \(BadZipFile"),
    ("dump", ["{nnir}", "--params", "{member_npz}"], r"member 'dense/kernel' is not an .npy array"),
    ("run", ["{updates_input_nnir}", "--input", "{x}"],
     r"updates_input.nnir': line 1, column \d+: result 'u' updates %input_layer, which is not a "
     r"parameter of @main"),
    ("dump", ["{updates_twice_nnir}"],
     r"updates_twice.nnir': line 1, column \d+: result 'v' updates %dense/bias, which result 'u' "
     r"already updates"),
    ("summary", ["{non_utf8_nnir}"], r"model file '.*non_utf8.nnir': line 4: byte 0xe9 .* not UTF-8"),
]


@pytest.mark.parametrize("command, args, message", BAD_INPUT, ids=[f"{c}-{m[:20]}" for c, _, m in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_1(tiny, tmp_path, command, args, message):
    files = _bad_files(tmp_path, tiny)
    result = nnc(command, *[a.format(**files) for a in args])
    assert result.returncode == 1, result.stderr
    assert re.search(message, _error_line(result, command))


@pytest.mark.parametrize("args", [["dump", "m.nnir", "--emit", "png"], ["compile", "m.nnir"],
                                  ["run", "m.nnir"], ["frobnicate"], ["demo", "--epochs", "0"]])
def test_usage_errors_exit_2(args):
    result = nnc(*args)
    assert result.returncode == 2 and "usage: nncompile" in result.stderr


def test_debug_shows_the_traceback(tiny, tmp_path):
    result = nnc("dump", str(tmp_path / "missing.nnir"), "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "FileNotFoundError" in result.stderr
