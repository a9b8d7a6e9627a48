"""PAM kernels on the GPU beside float32 kernels on the same GPU, printed as time ratios.

    python benchmarks/gpu.py [--sizes 512 1024 2048] [--elements 16777216] [--repeat 10]
                             [--task digits]

GEMM: pafree's shared-memory tiled PAM GEMM against
  * FLOAT BASELINE (numba): the very same tiled kernel with a real float32
    multiply-add in place of the PAM product: the like-for-like ratio;
  * FLOAT BASELINE (cuBLAS via CuPy), only if CuPy is installed: the vendor's best.
Elementwise: PAM against a float32 multiply kernel of the same shape.
Training step: ``pafree train``'s PA step of the task's default model on the GPU
and on the CPU (the float baseline has no device kernels, so no float row).
Kernels are timed alone (outputs preallocated), best of --repeat runs.
The float kernels live here, in the benchmark, never in pafree (they multiply).
Needs a CUDA GPU; exits with a message when there is none.
"""
import argparse
import os
import sys
import time

import numpy as np
from numba import cuda

from pafree.ops import cuda as gpu

TILE = gpu.TILE


@cuda.jit(fastmath=False)
def float_gemm_tiled(a, b, out):
    """FLOAT BASELINE: gpu.pam_gemm_tiled with a float32 multiply in place of the PAM product."""
    sa = cuda.shared.array((TILE, TILE), np.float32)
    sb = cuda.shared.array((TILE, TILE), np.float32)
    m, k = a.shape
    n = b.shape[1]
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = np.float32(0)
    for k0 in range(0, k, TILE):
        sa[ty, tx] = a[row, k0 + tx] if row < m and k0 + tx < k else np.float32(0)
        sb[ty, tx] = b[k0 + ty, col] if k0 + ty < k and col < n else np.float32(0)
        cuda.syncthreads()
        for kk in range(TILE):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    if row < m and col < n:
        out[row, col] = acc


@cuda.jit(fastmath=False)
def float_multiply(a, b, out):
    """FLOAT BASELINE: elementwise float32 multiply."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a[i] * b[i]


def best_time(fn, repeat):
    """Fastest of ``repeat`` runs (after one warm-up run that also compiles), in seconds."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_gemm(n, repeat, cupy):
    rng = np.random.default_rng(0)
    a = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    out = cuda.device_array((n, n), np.float32)
    grid = ((n + TILE - 1) // TILE, (n + TILE - 1) // TILE)
    a3, b3, out3 = (x.reshape(1, n, n) for x in (a.view(np.int32), b.view(np.int32), out))
    t_pam = best_time(lambda: gpu.pam_gemm_tiled[grid + (1,), (TILE, TILE)](a3, b3, out3), repeat)
    t_float = best_time(lambda: float_gemm_tiled[grid, (TILE, TILE)](a, b, out), repeat)
    line = (f"GEMM {n}x{n}x{n}: PAM {t_pam * 1e3:8.3f} ms | float32 same tiling {t_float * 1e3:8.3f} ms"
            f" | PAM/float {t_pam / t_float:5.2f}x")
    if cupy is not None:
        ca, cb = cupy.asarray(a), cupy.asarray(b)
        t_blas = best_time(lambda: cupy.matmul(ca, cb), repeat)
        line += f" | cuBLAS {t_blas * 1e3:8.3f} ms, PAM/cuBLAS {t_pam / t_blas:6.2f}x"
    print(line, flush=True)


def bench_elementwise(size, repeat):
    rng = np.random.default_rng(1)
    a = cuda.to_device(rng.standard_normal(size).astype(np.float32))
    b = cuda.to_device(rng.standard_normal(size).astype(np.float32))
    out = cuda.device_array(size, np.float32)
    blocks = gpu.blocks_for(size)
    ai, bi, oi = (x.view(np.int32) for x in (a, b, out))
    t_pam = best_time(lambda: gpu.BINARY["pam"][blocks, gpu.THREADS](ai, bi, gpu.same_shapes(2), oi), repeat)
    t_float = best_time(lambda: float_multiply[blocks, gpu.THREADS](a, b, out), repeat)
    print(f"elementwise x{size}: PAM {t_pam * 1e3:8.3f} ms | float32 multiply {t_float * 1e3:8.3f} ms"
          f" | PAM/float {t_pam / t_float:5.2f}x", flush=True)


def bench_train_step(task, repeat, **overrides):
    """One PA training step of the task's default model (``pafree train``'s step: forward,
    loss, backward, clipping, AdamW, schedule) on the GPU and on the CPU, same batches."""
    from pafree.run import build
    times = {}
    for device in ("cuda", "cpu"):
        run = build(task, "pa", device=device, **overrides)
        batches = [run.batch(t) for t in range(repeat + 1)]
        run.train_step(batches[0])                    # compiles the kernels
        start = time.perf_counter()
        for batch in batches[1:]:
            run.train_step(batch)                     # the loss copy to the host syncs
        times[device] = (time.perf_counter() - start) / repeat
    print(f"PA training step, {task} defaults: GPU {times['cuda'] * 1e3:8.1f} ms | "
          f"CPU {times['cpu'] * 1e3:8.1f} ms | CPU/GPU {times['cpu'] / times['cuda']:5.2f}x", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--elements", type=int, default=1 << 24)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--task", default="digits", help="task of the training-step row")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU found (or NUMBA_ENABLE_CUDASIM is set); nothing measured.",
              file=sys.stderr)
        return 1
    try:
        import cupy
    except ImportError:
        cupy = None
    device = cuda.get_current_device()
    print(f"GPU: {device.name.decode() if isinstance(device.name, bytes) else device.name}"
          f" (compute capability {device.compute_capability[0]}.{device.compute_capability[1]})"
          + ("" if cupy else "; CuPy not installed: no cuBLAS column"))
    for n in args.sizes:
        bench_gemm(n, args.repeat, cupy)
    bench_elementwise(args.elements, args.repeat)
    bench_train_step(args.task, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
