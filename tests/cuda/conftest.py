"""The CUDA kernel tests run in their own pytest process, on the simulator or a real GPU:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda

The simulator has to be chosen before numba is first imported, which the
default test run has long done by the time it reaches this directory; so
there (no simulator, no GPU) the directory is left out.
"""
import os


def cuda_usable():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:            # no CUDA target installed at all
        return False


if not cuda_usable():
    collect_ignore_glob = ["test_*.py"]
