"""The PAM GEMMs on the CPU: the forward product and its exact derivatives.

shapes: np.matmul's shape rules for every backend; tiles: register tiles and
the choice of loop per tile; host: workspaces, batch maps, task split;
forward: ``pam_matmul``; grads: ``pam_matmul_exact_grads``. How they work:
docs/gemm.md.
"""
from .forward import pam_matmul
from .grads import pam_matmul_exact_grads

__all__ = ["pam_matmul", "pam_matmul_exact_grads"]
