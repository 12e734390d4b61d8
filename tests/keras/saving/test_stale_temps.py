"""A save killed before its rename leaves a temporary beside the target; the next save of that
target removes it, but never a temporary whose writer still runs, another host's, or another
target's."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from nncompile import keras
from nncompile.keras import layers

# A writer that stops half-way through its temporary file, as a save does when it is killed.
HALF_WRITTEN_SAVE = """
import sys, time
from nncompile.keras.saving.files import atomic_write

def write(temp):
    with open(temp, "wb") as f:
        f.write(b"half a model")
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write)
"""


def _start_half_written_save(path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HALF_WRITTEN_SAVE, str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    return child


def _temps(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def test_next_save_removes_the_temporary_of_a_killed_save_but_not_a_live_one(tmp_path):
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2)])
    path = tmp_path / "m.keras"
    writer = _start_half_written_save(path)
    try:
        live = _temps(tmp_path)
        assert len(live) == 1 and (tmp_path / live[0]).read_bytes() == b"half a model"
        model.save(path)
        assert _temps(tmp_path) == live   # its writer still runs: kept
    finally:
        writer.kill()   # SIGKILL: no chance to clean up
        writer.wait()
    others = [f".m.keras.otherhost.{writer.pid}.abcdefgh.tmp",   # another machine's, same pid
              live[0].replace(".m.keras.", ".n.keras.", 1)]          # another target's
    for name in others:
        (tmp_path / name).write_bytes(b"")
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.keras", *others])
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(keras.models.load_model(path).predict(x, verbose=0),
                                  model.predict(x, verbose=0))
