"""Graph passes and the manager that runs them; importing this package registers every pass."""
from nncompile.passes import dce, infer_shapes  # noqa: F401  (registers the passes)
from nncompile.passes import crop_borders, cse, fold_batchnorm, fold_constants, gather_first, gather_in_scan, layout, remove_noops, scan_sums, simplify  # noqa: F401
from nncompile.passes import fusion  # noqa: F401  (registers "fuse")
from nncompile.passes import schedule  # noqa: F401  (registers "schedule"; memory.py plans the arena)
from nncompile.passes.infer_shapes import fix_dims
from nncompile.passes.manager import PASSES, PassInfo, PassManager, register_pass, run_pipeline

__all__ = ["PASSES", "PassInfo", "PassManager", "fix_dims", "register_pass", "run_pipeline"]
