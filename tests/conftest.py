import atexit
import os
import shutil
import tempfile

# The pass manager verifies the graph after every pass when this is set: on in tests.
os.environ.setdefault("NNCOMPILE_VERIFY", "1")

# Compiled code goes to a cache of this test session only (removed at exit), so runs are hermetic
# and the user's own cache is never touched.
if "NNCOMPILE_CACHE_DIR" not in os.environ:
    os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-test-cache-")
    atexit.register(shutil.rmtree, os.environ["NNCOMPILE_CACHE_DIR"], ignore_errors=True)
