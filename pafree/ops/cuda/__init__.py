"""pafree.ops.cuda: the bit logic of bits.py on numba CUDA device arrays.

Three modules, one layer each:
- ``kernels``: the device kernels (``cuda.jit``), each registered in ``KERNELS``
  with the signature the PTX audit compiles (pafree.audit.ptx);
- ``layout``: host-side launch shapes and geometry (broadcast strides, index
  positions, axis views; the matmul shape rules are pafree.ops.gemm.shapes, shared
  with the CPU GEMM);
- ``api``: the host functions, pafree.ops' names and arguments on device arrays
  (host data is copied to the device first); the elementwise PA ops among them
  are generated from pafree.ops.elementwise, the table the CPU side uses too.

Float sums (reductions, the PAM GEMM, scatter_add) add in float32 in increasing
index order, one axis at a time: the order of the CPU GEMM, so products agree
bit for bit; numpy's np.sum (the autograd's CPU sum) adds long contiguous axes
pairwise, so sums agree within float32 summation-order rounding
(tests/cuda/test_train_step.py shows a whole step equal bit for bit once the
CPU adds in this order too). Importing this package needs no GPU: kernels
compile at their first launch. pafree.autograd.registry.use_cuda() registers
the host functions as the "cuda" backend of the registry's kernels.
"""
from .api import *  # noqa: F401,F403
from .kernels import BINARY, KERNELS, UNARY, pam_gemm_small, pam_gemm_tiled  # noqa: F401
from .layout import MAX_BLOCKS, SIMULATED, SMALL_TILE, THREADS, TILE, WARP  # noqa: F401
from .layout import blocks_for, launch, same_shapes  # noqa: F401
