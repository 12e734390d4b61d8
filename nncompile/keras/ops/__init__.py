"""`keras.ops`: Keras 3's op namespace, each op defined once on top of nncompile's op table.

Called on arrays and numbers, an op computes at once and returns a numpy array (as Keras's numpy
backend). Called on IR `Value`s inside `with ops.tracing(builder):`, it adds nodes to that
builder's graph and returns a `Value` (see `nncompile.keras.ops.core`).

>>> from nncompile.keras import ops
>>> ops.softmax(np.zeros((1, 4), "float32"))
array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
"""
from nncompile.keras.ops import image
from nncompile.keras.ops.core import active_builder, result_type, tracing
from nncompile.keras.ops.decompositions import (cholesky, cholesky_inverse, det, inv, logdet, lu_factor,
                                                slogdet, solve, solve_triangular)
from nncompile.keras.ops.einops import rearrange
from nncompile.keras.ops.linalg import (cdist, cross, dot, einsum, matmul, norm, outer, tensordot,
                                        vdot)
from nncompile.keras.ops.loops import (associative_scan, cond, fori_loop, map, scan, switch,
                                       vectorized_map, while_loop)
from nncompile.keras.ops.convolution import (adaptive_average_pool, adaptive_max_pool, average_pool,
                                             conv, conv_transpose, depth_to_space, depthwise_conv,
                                             max_pool, separable_conv, space_to_depth)
from nncompile.keras.ops.nn import (batch_normalization, binary_crossentropy,
                                    categorical_crossentropy, celu, dot_product_attention, elu,
                                    gelu, glu, hard_shrink, hard_sigmoid, hard_silu, hard_swish,
                                    hard_tanh, layer_normalization, leaky_relu, log_sigmoid,
                                    log_softmax, moments, multi_hot, normalize, one_hot, psnr, relu,
                                    relu6, rms_normalization, selu, sigmoid, silu, soft_shrink,
                                    softmax, softplus, softsign, sparse_categorical_crossentropy,
                                    sparse_plus, sparse_sigmoid, sparsemax, squareplus, swish,
                                    tanh_shrink, threshold)
from nncompile.keras.ops.numpy import (abs, absolute, add, all, amax, amin, any, argmax, argmin,
                                       ceil, clip, cos, cosh, count_nonzero, cumsum, divide, equal,
                                       erf, exp, exp2, expm1, floor, floor_divide, greater,
                                       greater_equal, isfinite, isinf, isnan, less, less_equal, log,
                                       log10, log1p, log2, logical_and, logical_not, logical_or,
                                       logical_xor, logsumexp, max, maximum, mean, min, minimum,
                                       mod, multiply, negative, not_equal, power, prod, reciprocal,
                                       round, rsqrt, sign, sin, sinh, sqrt, square, std,
                                       stop_gradient, subtract, sum, tan, tanh, true_divide, trunc,
                                       var)
from nncompile.keras.ops.numpy_math import (allclose, gcd, lcm, fmax, fmin, arccos, arccosh, arcsin, arcsinh, arctan,
                                            arctan2, arctanh, cbrt, copy, cumprod, deg2rad,
                                            divide_no_nan, fabs, fmod, heaviside, hypot, isclose,
                                            isneginf, isposinf, ldexp, logaddexp, logaddexp2,
                                            nan_to_num, ptp, rad2deg, sinc)
from nncompile.keras.ops.numpy_arrays import (angle, diagflat, append, array, array_split, conj, conjugate,
                                              diag, diagonal, diff, digitize, dsplit, dstack, dtype,
                                              empty, empty_like, fliplr, flipud, geomspace, hsplit,
                                              imag, inner, is_tensor, isin, isreal, kron, linspace,
                                              logspace, meshgrid, real, roll, rot90, searchsorted,
                                              select, trace, tri, unravel_index, vander, vsplit)
from nncompile.keras.ops.signal import (bartlett, blackman, correlate, extract_sequences, hamming, hanning,
                                        kaiser)
from nncompile.keras.ops.statistics import (average, corrcoef, histogram, nancumprod, nancumsum,
                                            nanmax, nanmean, nanmin, nanprod, nanstd, nansum, nanvar,
                                            trapezoid)
from nncompile.keras.ops.sorting import (argpartition, argsort, in_top_k, median, nanargmax, nanargmin, nanmedian,
                                         nanpercentile, nanquantile, percentile, quantile, sort,
                                         top_k)
from nncompile.keras.ops.scatter import (bincount, scatter, scatter_update, segment_max, segment_min, segment_prod,
                                         segment_sum, slice_update)
from nncompile.keras.ops.arrays import (arange, broadcast_to, cast, concatenate, convert_to_numpy,
                                        convert_to_tensor, expand_dims, eye, flip, full, full_like,
                                        get_item, hstack, identity, moveaxis, ndim, ones, ones_like,
                                        pad, ravel, repeat, reshape, saturate_cast, shape, size,
                                        slice, split, squeeze, stack, swapaxes, take,
                                        take_along_axis, tile, transpose, tril, triu, unstack,
                                        vstack, where, zeros, zeros_like)

__all__ = [name for name in dir() if not name.startswith("_")
           and name not in ("arrays", "convolution", "core", "decompositions", "einops", "image_color",
                            "image_filters", "image_resize", "linalg", "loops", "nn", "numpy",
                            "numpy_arrays", "numpy_math", "scatter", "signal",
                            "sorting", "statistics")]
