"""Op families; importing this package registers every op in the op table."""
from nncompile.ir.ops import elementwise, fused, linalg, nn, pooling, reduction, scan, shape  # noqa: F401
from nncompile.ir.ops import decompositions  # noqa: F401  (cholesky, triangular_solve, lu, det)
from nncompile.ir.ops import grad  # noqa: F401  (the ops of the backward pass)
