import atexit
import os
import shutil
import sys
import tempfile

import pytest

# The test session and its child processes (every CLI test, the workers, the fresh-process cache
# tests) keep the package's bytecode: compiling its ~200 modules from source is half a second of
# each process's start, even where the environment asks Python not to write it.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from nncompile.codegen import blocking  # noqa: E402

# The pass manager verifies the graph after every pass when this is set: on in tests.
os.environ.setdefault("NNCOMPILE_VERIFY", "1")

# numpy's BLAS (the reference interpreter's products, the tests' own numpy) on one thread: the
# test processes already take every core, and OpenBLAS's threads spin-wait for each other, so a
# product whose second thread has no core to run on waits a time slice for it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Compiled code goes to a cache of this test session only (removed at exit), so runs are hermetic
# and the user's own cache is never touched.
if "NNCOMPILE_CACHE_DIR" not in os.environ:
    os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-test-cache-")
    atexit.register(shutil.rmtree, os.environ["NNCOMPILE_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def tuning_cache(tmp_path, monkeypatch):
    """An empty cache directory, tuning on; the tuned GEMM blocking is read afresh from it, and
    from the session's cache again after the test."""
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(blocking.TUNE_ENV, raising=False)
    blocking._tuned_entry.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    blocking._tuned_entry.cache_clear()
