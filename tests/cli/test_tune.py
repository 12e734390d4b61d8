"""`nncompile tune`: --show reports the host and the blocking in use; a search (run here with a fake
clock in place of the compiled GEMMs) prints every candidate, keeps the fastest and builds the
kernel library's common kernels for it."""
from __future__ import annotations

import re

from nncompile.cli.main import main
from nncompile.codegen import blocking, library
from nncompile.runtime import tuning
from tests.cli.conftest import nnc


def test_show_reports_the_host_and_the_blocking_in_use(tuning_cache):
    result = nnc("tune", "--show", env={"NNCOMPILE_CACHE_DIR": str(tuning_cache)})
    assert result.returncode == 0, result.stderr
    derived = tuning.derived()
    assert result.stdout.startswith("host: ") and "L1d " in result.stdout
    assert f"derived from the caches: KC {derived.kc}, MC {derived.mc}; tuned: none" in result.stdout
    assert re.search(rf"in use \(f32\): MR \d+ x NR \d+, KC {derived.kc}, MC {derived.mc}", result.stdout)


def test_a_bad_tune_setting_is_a_one_line_error(tuning_cache):
    result = nnc("tune", "--show", env={"NNCOMPILE_CACHE_DIR": str(tuning_cache), blocking.TUNE_ENV: "on"})
    assert result.returncode == 1
    assert result.stderr.strip() == ("nncompile tune: error: NNCOMPILE_TUNE is 'on'; expected 0 "
                                     "(derived blocking only) or 1 (tuned, the default)")


def test_the_search_prints_every_candidate_and_keeps_the_fastest(tuning_cache, monkeypatch, capsys):
    mr, _ = tuning.register_tile()
    trials = tuning.candidates(tuning.derived(), mr)
    winner = trials[4]
    monkeypatch.setattr(tuning, "CompiledGemms", lambda: lambda trial, shape: 1.0 if trial == winner else 3.0)
    built = []
    monkeypatch.setattr(library, "build", built.extend)      # building them is the library's tests' part
    assert main(["tune", "--quick", "--rounds", "1"]) == 0
    assert built == library.common_kernels()
    out = capsys.readouterr().out
    assert f"kernel library: {len(built)} common kernels built for this blocking" in out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \| \d+", line)]
    assert len(rows) == len(trials)
    assert f"| {winner.kc} | {winner.mc} (best) |" in out
    assert f"best: KC {winner.kc}, MC {winner.mc}, kept in {tuning_cache}" in out
    assert main(["tune", "--show"]) == 0
    assert f"in use (f32): MR {mr} x NR" in capsys.readouterr().out
    assert blocking.tuned(*tuning.register_tile()) == winner
