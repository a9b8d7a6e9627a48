"""np.matmul's shape rules, once, for every backend: pure Python on shape tuples.

Nothing here creates an array, so the CPU GEMM and the CUDA host code (whose
device arrays have shapes but not numpy's methods) share it.
"""
from collections import namedtuple

from ..indices import size

# The operands as stacks of matrices: A as (size(batch_a), m, k), B as
# (size(batch_b), k, n); their products broadcast to ``batch``; the result has
# ``out_shape`` (np.matmul's: a 1-D operand's axis dropped again).
MatmulShapes = namedtuple("MatmulShapes", "batch_a batch_b batch m k n out_shape")


def broadcast_batch(shape_a, shape_b, op):
    """numpy's broadcast of two batch shapes, or ValueError naming ``op``."""
    ndim = max(len(shape_a), len(shape_b))
    padded_a = (1,) * (ndim - len(shape_a)) + tuple(shape_a)
    padded_b = (1,) * (ndim - len(shape_b)) + tuple(shape_b)
    batch = []
    for extent_a, extent_b in zip(padded_a, padded_b):
        if extent_a != extent_b and extent_a != 1 and extent_b != 1:
            raise ValueError(f"{op}: batch shapes {tuple(shape_a)} and {tuple(shape_b)} "
                             f"do not broadcast")
        batch.append(extent_b if extent_a == 1 else extent_a)
    return tuple(batch)


def matmul_shapes(shape_a, shape_b, op, transpose_a=False, transpose_b=False):
    """np.matmul's shapes for a @ b, optionally with the last two axes of a or b swapped
    first (``a.T @ b``, ``a @ b.T``): 1-D promotion, batch broadcasting and the errors.

    Returns MatmulShapes; raises ValueError for a 0-d operand, a transposed 1-D
    operand, inner dimensions that differ and batches that do not broadcast.
    """
    shape_a, shape_b = tuple(shape_a), tuple(shape_b)
    if not shape_a or not shape_b:
        raise ValueError(f"{op}: operands must have at least one dimension")
    if (transpose_a and len(shape_a) < 2) or (transpose_b and len(shape_b) < 2):
        raise ValueError(f"{op}: a 1-D operand cannot be transposed")
    if transpose_a:
        shape_a = shape_a[:-2] + (shape_a[-1], shape_a[-2])
    if transpose_b:
        shape_b = shape_b[:-2] + (shape_b[-1], shape_b[-2])
    matrix_a = (1,) + shape_a if len(shape_a) == 1 else shape_a
    matrix_b = shape_b + (1,) if len(shape_b) == 1 else shape_b
    if matrix_a[-1] != matrix_b[-2]:
        raise ValueError(f"{op}: shapes {matrix_a} and {matrix_b} do not align")
    batch = broadcast_batch(matrix_a[:-2], matrix_b[:-2], op)
    (m, k), n = matrix_a[-2:], matrix_b[-1]
    out_shape = batch + (m, n)
    if len(shape_a) == 1:
        out_shape = out_shape[:-2] + out_shape[-1:]
    if len(shape_b) == 1:
        out_shape = out_shape[:-1]
    return MatmulShapes(matrix_a[:-2], matrix_b[:-2], batch, m, k, n, out_shape)
