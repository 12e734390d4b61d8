import os

# The pass manager verifies the graph after every pass when this is set: on in tests.
os.environ.setdefault("NNCOMPILE_VERIFY", "1")
