"""The pass manager: registry, timings, verification, dumps, report."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from nncompile.ir import Builder, Graph, IRError, VerifyError, f32, parse
from nncompile.passes import PASSES, PassManager, fix_dims, register_pass, run_pipeline
from nncompile.passes.dce import dce
from nncompile.passes.infer_shapes import infer_shapes
from nncompile.runtime.reference import run

HEADER = re.compile(r"^// after pass '([\w-]+)' \((\d+) nodes, \d+\.\d\d ms\)$")


def _corrupt_type(graph: Graph) -> Graph:
    graph.nodes[0].outputs[0].type = f32[7, 7]
    return graph


def _rebuild(graph: Graph) -> Graph:
    return graph.copy()


def test_registry_holds_the_passes_with_docs():
    assert {"dce", "infer-shapes"} <= set(PASSES)
    assert PASSES["dce"].fn is dce and PASSES["infer-shapes"].fn is infer_shapes
    assert PASSES["dce"].doc and PASSES["infer-shapes"].doc


def test_registering_a_name_twice_fails():
    with pytest.raises(IRError, match="pass 'dce' is registered twice"):
        register_pass("dce", doc="again")(dce)
    assert PASSES["dce"].fn is dce


def test_unknown_pass_lists_valid_names():
    with pytest.raises(IRError, match="unknown pass 'fold_everything'") as info:
        PassManager(["dce", "fold_everything"])
    assert "dce" in str(info.value) and "infer-shapes" in str(info.value)


def test_print_after_must_name_a_pipeline_pass(tmp_path):
    with pytest.raises(IRError, match="cannot print after pass 'infer-shapes'.*pipeline: dce"):
        PassManager(["dce"], dump_dir=str(tmp_path), print_after=["infer-shapes"])


def test_run_applies_passes_and_records_timings(dead_code_graph):
    pm = PassManager(["infer-shapes", "dce", "dce"])
    out = pm.run(dead_code_graph)
    assert [n.op for n in out.nodes] == ["mul", "relu", "sub"]
    assert [name for name, _ in pm.timings] == ["infer-shapes", "dce", "dce"]
    assert all(isinstance(s, float) and s >= 0 for _, s in pm.timings)
    pm.run(out)
    assert len(pm.timings) == 3


def test_run_pipeline_gives_the_same_results(dead_code_graph):
    x, y = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    before = run(dead_code_graph, [x, y])
    out = run_pipeline(dead_code_graph, ["dce"], verify=True)
    assert len(out.nodes) == 3
    np.testing.assert_array_equal(run(out, [x, y])[0], before[0])


def test_verification_names_the_pass_that_broke_the_graph(dead_code_graph, scratch_pass):
    scratch_pass("test_corrupt_type", _corrupt_type)
    pm = PassManager(["infer-shapes", "test_corrupt_type", "dce"], verify=True)
    with pytest.raises(VerifyError, match=r"^after pass 'test_corrupt_type': "):
        pm.run(dead_code_graph)
    assert [name for name, _ in pm.timings] == ["infer-shapes", "test_corrupt_type"]


def test_verification_follows_the_environment(dead_code_graph, scratch_pass, monkeypatch):
    scratch_pass("test_corrupt_type", _corrupt_type)
    with pytest.raises(VerifyError, match="after pass 'test_corrupt_type'"):
        PassManager(["test_corrupt_type"]).run(dead_code_graph.copy())
    monkeypatch.setenv("NNCOMPILE_VERIFY", "0")
    PassManager(["test_corrupt_type"]).run(dead_code_graph.copy())
    PassManager(["test_corrupt_type"], verify=False).run(dead_code_graph.copy())


@pytest.mark.parametrize("verify", [True, False])
def test_a_broken_input_graph_is_caught_before_the_first_pass(dead_code_graph, verify):
    _corrupt_type(dead_code_graph)
    with pytest.raises(VerifyError, match="^before the first pass: "):
        PassManager(["dce"], verify=verify).run(dead_code_graph)


def test_a_pass_must_return_a_graph(dead_code_graph, scratch_pass):
    scratch_pass("test_returns_none", lambda graph: None)
    with pytest.raises(IRError, match="pass 'test_returns_none' returned NoneType; expected a Graph"):
        PassManager(["test_returns_none"]).run(dead_code_graph)


def _files(path) -> list[str]:
    return sorted(os.listdir(path))


def _read(path) -> tuple[str, str]:
    header, _, body = path.read_text().partition("\n")
    return header, body


def test_dump_all_writes_replayable_files(dead_code_graph, tmp_path):
    expected_input = dead_code_graph.copy()
    expected_mid = infer_shapes(dead_code_graph.copy())
    out = PassManager(["infer-shapes", "dce"], dump_dir=str(tmp_path)).run(dead_code_graph)

    assert _files(tmp_path) == ["000-input.nnir", "001-infer-shapes.nnir", "002-dce.nnir"]
    header, body = _read(tmp_path / "000-input.nnir")
    assert header == "// input (8 nodes)"
    assert parse(header + "\n" + body) == expected_input
    for name, expected, nodes in [("001-infer-shapes", expected_mid, 8), ("002-dce", out, 3)]:
        text = (tmp_path / f"{name}.nnir").read_text()
        match = HEADER.match(text.partition("\n")[0])
        assert match and match.groups() == (name[4:], str(nodes))
        assert parse(text) == expected


def test_dump_after_named_passes(dead_code_graph, tmp_path):
    PassManager(["infer-shapes", "dce", "infer-shapes"], dump_dir=str(tmp_path),
                print_after=["infer-shapes"]).run(dead_code_graph)
    assert _files(tmp_path) == ["000-input.nnir", "001-infer-shapes.nnir", "003-infer-shapes.nnir"]


def test_dump_all_by_name(dead_code_graph, tmp_path):
    PassManager(["dce", "dce"], dump_dir=str(tmp_path), print_after="all").run(dead_code_graph)
    assert _files(tmp_path) == ["000-input.nnir", "001-dce.nnir", "002-dce.nnir"]


def test_dump_only_changed(dead_code_graph, tmp_path, scratch_pass):
    scratch_pass("test_rebuild", _rebuild)
    pm = PassManager(["infer-shapes", "test_rebuild", "dce", "dce"], dump_dir=str(tmp_path),
                     print_changed=True)
    out = pm.run(dead_code_graph)
    assert _files(tmp_path) == ["000-input.nnir", "003-dce.nnir"]
    assert parse((tmp_path / "003-dce.nnir").read_text()) == out


def test_a_changed_constant_counts_as_a_change(tmp_path, scratch_pass):
    b = Builder()
    x = b.input("x", f32[2])
    g = b.finish([b.add(x, b.constant(np.array([1.0, 2.0], np.float32)))])

    def bump(graph: Graph) -> Graph:
        graph.nodes[0].attrs["value"] = graph.nodes[0].attrs["value"] + 1
        return graph

    scratch_pass("test_bump", bump)
    pm = PassManager(["test_bump"], print_changed=True, dump_dir=str(tmp_path))
    pm.run(g)
    assert _files(tmp_path) == ["000-input.nnir", "001-test_bump.nnir"]
    assert [s.changed for s in pm.stats] == [True]


def test_a_change_of_types_only_counts_as_a_change(dead_code_graph, tmp_path, scratch_pass):
    scratch_pass("test_fix_batch", lambda graph: fix_dims(graph, {"?": 3}))
    pm = PassManager(["test_fix_batch", "dce"], print_after="test_fix_batch", print_changed=True,
                     dump_dir=str(tmp_path))
    out = pm.run(dead_code_graph)
    assert [(s.name, s.nodes_before, s.nodes_after, s.changed) for s in pm.stats] == [
        ("test_fix_batch", 8, 8, True), ("dce", 8, 3, True)]
    assert _files(tmp_path) == ["000-input.nnir", "001-test_fix_batch.nnir"]
    assert out.outputs[0].type == f32[3, 4]


def test_a_changed_node_type_alone_counts_as_a_change(dead_code_graph, scratch_pass):
    scratch_pass("test_corrupt_type", _corrupt_type)
    pm = PassManager(["test_corrupt_type"], verify=False)
    pm.run(dead_code_graph)
    assert [s.changed for s in pm.stats] == [True]


def test_dump_dir_from_the_environment(dead_code_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_DUMP_DIR", str(tmp_path / "env"))
    PassManager(["dce"]).run(dead_code_graph)
    assert _files(tmp_path / "env") == ["000-input.nnir", "001-dce.nnir"]
    PassManager(["dce"], dump_dir=str(tmp_path / "arg")).run(dead_code_graph)
    assert _files(tmp_path / "arg") == ["000-input.nnir", "001-dce.nnir"]


def test_no_dumps_by_default(dead_code_graph, monkeypatch, capsys):
    monkeypatch.delenv("NNCOMPILE_DUMP_DIR", raising=False)
    PassManager(["dce"]).run(dead_code_graph)
    assert capsys.readouterr().err == ""


def test_print_after_without_dump_dir_prints_to_stderr(dead_code_graph, monkeypatch, capsys):
    monkeypatch.delenv("NNCOMPILE_DUMP_DIR", raising=False)
    out = PassManager(["infer-shapes", "dce"], print_after="dce").run(dead_code_graph)
    err = capsys.readouterr().err
    header, _, body = err.partition("\n")
    assert HEADER.match(header).groups() == ("dce", "3")
    assert parse(body) == out


def test_report_lists_every_pass(dead_code_graph, scratch_pass):
    scratch_pass("test_rebuild", _rebuild)
    pm = PassManager(["infer-shapes", "test_rebuild", "dce"])
    pm.run(dead_code_graph)
    lines = pm.report().splitlines()
    assert lines[0].split() == ["pass", "time", "ms", "nodes", "changed"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["infer-shapes", "test_rebuild", "dce", "total"]
    assert [r[2:] for r in rows[:3]] == [["8", "->", "8", "no"], ["8", "->", "8", "no"],
                                         ["8", "->", "3", "yes"]]
    times = [float(r[1]) for r in rows]
    assert times[-1] == pytest.approx(sum(times[:-1]), abs=0.02)
