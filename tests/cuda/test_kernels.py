"""The CUDA kernels against the CPU backend (pafree.ops) and independent references, on tiny shapes.

Elementwise ops and exact slopes must equal the CPU results bit for bit (the
same bits.py source runs on both). Sums add in float32 in increasing index
order on both backends, so they are compared bit for bit with a sequential
reference (np.add.accumulate) and within the summation-order bound with
numpy's pairwise np.sum.
"""
import numpy as np
import pytest

import pafree.ops as ops
from pafree.ops import cpu
from pafree.ops import cuda as gpu

SPECIAL = np.array([
    0.0, -0.0, 1e-45, -1e-40, 1.1754944e-38, 1.0, -1.0, 0.5, 1.5, -1.5, 2.0, 3.0, 0.75,
    1.4426950, 0.6931472, 127.99, 128.0, -126.0, -126.5, -127.0, -150.0, 1e30, -3e38, 3.4028235e38,
    np.inf, -np.inf, np.nan], np.float32)


def values(n, seed):
    """SPECIAL followed by random floats spread over many binades and both signs."""
    rng = np.random.default_rng(seed)
    rand = rng.standard_normal(n) * np.exp2(rng.integers(-40, 40, n))
    return np.concatenate([SPECIAL, rand.astype(np.float32)])


def bits(x):
    return np.ascontiguousarray(x, np.float32).view(np.int32)


def host(x):
    return x.copy_to_host()


@pytest.mark.parametrize("name", sorted(gpu.UNARY))
def test_unary_equals_cpu_bit_for_bit(name):
    x = values(40, seed=1)
    np.testing.assert_array_equal(bits(host(gpu.unary(name, x))), bits(cpu.unary(name, x)))


@pytest.mark.parametrize("name", sorted(gpu.BINARY))
def test_binary_equals_cpu_bit_for_bit(name):
    special = values(0, seed=0)
    a, b = (v.reshape(-1) for v in np.meshgrid(special, special))     # every pair of specials
    rng = np.random.default_rng(2)
    a = np.concatenate([a, values(60, 3)[-60:], rng.standard_normal(20).astype(np.float32)])
    b = np.concatenate([b, values(60, 4)[-60:], rng.standard_normal(20).astype(np.float32)])
    np.testing.assert_array_equal(bits(host(gpu.binary(name, a, b))), bits(cpu.binary(name, a, b)))


def test_public_functions_match_pafree_ops():
    x, y = values(10, 5)[:36].reshape(6, 6), values(10, 6)[:36].reshape(6, 6)
    for name in ("paexp2", "palog2", "paexp", "palog", "pasqrt",
                 "paexp2_slope", "palog2_slope", "pasqrt_slope"):
        np.testing.assert_array_equal(bits(host(getattr(gpu, name)(x))), bits(getattr(ops, name)(x)))
    for name in ("pam", "pad", "papow", "pam_slope"):
        np.testing.assert_array_equal(bits(host(getattr(gpu, name)(x, y))), bits(getattr(ops, name)(x, y)))
    for got, want in zip(gpu.pad_slope(x, y), ops.pad_slope(x, y)):
        np.testing.assert_array_equal(bits(host(got)), bits(want))


@pytest.mark.parametrize("shape_a, shape_b", [((4, 1, 3), (5, 1)), ((3,), (2, 3)), ((), (2, 2)), ((2, 3), (2, 3))])
def test_binary_broadcasting(shape_a, shape_b):
    rng = np.random.default_rng(7)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    got = host(gpu.pam(a, b))
    assert got.shape == np.broadcast_shapes(shape_a, shape_b)
    np.testing.assert_array_equal(bits(got), bits(ops.pam(a, b)))
    np.testing.assert_array_equal(bits(host(gpu.sub(a, b))), bits(np.subtract(a, b)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # the simulator adds numpy scalars: inf - inf
def test_float_add_sub_neg_are_ieee():
    a, b = values(20, 8), values(20, 9)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(bits(host(gpu.add(a, b))), bits(np.add(a, b)))
        np.testing.assert_array_equal(bits(host(gpu.sub(a, b))), bits(np.subtract(a, b)))
    np.testing.assert_array_equal(bits(host(gpu.neg(a))), bits(np.negative(a)))


def test_relu_where_and_layout_copies_match_numpy():
    x = values(13, 15)[:40].reshape(2, 4, 5)
    np.testing.assert_array_equal(bits(host(gpu.relu(x))), bits(np.maximum(x, np.float32(0))))
    y = values(5, 16)[:5]
    cond = np.arange(20).reshape(4, 5) % 3 == 0
    np.testing.assert_array_equal(bits(host(gpu.where(x, y, cond))), bits(np.where(cond, x, y)))
    for axes in (None, (0, 2, 1), (2, 0, 1), (-1, 0, 1)):
        np.testing.assert_array_equal(bits(host(gpu.transpose(x, axes))), bits(np.transpose(x, axes)))
    np.testing.assert_array_equal(bits(host(gpu.broadcast_to(y, (3, 5)))), bits(np.broadcast_to(y, (3, 5))))
    np.testing.assert_array_equal(host(gpu.reshape(x, (4, -1))), x.reshape(4, -1))
    np.testing.assert_array_equal(bits(host(gpu.zeros((2, 3)))), np.zeros((2, 3), np.int32))
    np.testing.assert_array_equal(host(gpu.ones_like(x)), np.ones_like(x))
    np.testing.assert_array_equal(bits(host(gpu.copy(x))), bits(x))


def test_floor_and_isfinite_match_numpy():
    x = np.concatenate([values(30, 17), np.float32([-0.5, -2.5, 2.5, -1.0, 8388607.5, -8388607.5, -7e-39])])
    np.testing.assert_array_equal(bits(host(gpu.floor(x))), bits(np.floor(x)))
    np.testing.assert_array_equal(host(gpu.isfinite(x)), np.isfinite(x))


@pytest.mark.parametrize("idx", [
    (slice(1, 3), 2), (np.array([0, 2, 2]), slice(None)), (np.arange(3), np.array([4, 0, 1])), 1, ...])
def test_getitem_and_scatter_add_match_numpy(idx):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    got = host(gpu.getitem(x, idx))
    np.testing.assert_array_equal(got, x[idx])
    values = rng.standard_normal(np.shape(x[idx])).astype(np.float32)
    want = x.copy()
    np.add.at(want, idx, values)                      # repeated positions add up, in order
    out = gpu.to_device(x.copy())
    gpu.scatter_add(out, idx, values)
    np.testing.assert_array_equal(bits(host(out)), bits(want))


def test_masks_shifts_and_joins_match_numpy():
    rng = np.random.default_rng(19)
    x = rng.integers(-3, 4, (3, 4, 5)).astype(np.float32)           # ties: the first maximum wins
    x[1, 2, 3] = np.nan
    for axis in (0, 1, -1, None):
        mask = np.zeros(x.shape, bool)
        if axis is None:
            mask.reshape(-1)[np.argmax(x)] = True
        else:
            np.put_along_axis(mask, np.argmax(x, axis=axis, keepdims=True), True, axis=axis)
        np.testing.assert_array_equal(host(gpu.first_max(x, axis)), mask)
    np.testing.assert_array_equal(host(gpu.nonnegative(values(5, 20))), values(5, 20) >= 0)
    y = (rng.standard_normal((3, 4)) * 8).astype(np.float32)
    y[1] = -np.inf
    with np.errstate(invalid="ignore"):
        top = np.floor(np.max(y, axis=1, keepdims=True))
    np.testing.assert_array_equal(host(gpu.integer_shift(y, 1)), np.where(np.isfinite(top), top, 0))
    parts = gpu.split(x, [1, 3], 1)
    for got, want in zip(parts, np.split(x, [1], axis=1)):
        np.testing.assert_array_equal(bits(host(got)), bits(want))
    np.testing.assert_array_equal(bits(host(gpu.concatenate(*parts, axis=1))), bits(x))


def test_ops_chain_stays_on_the_device():
    """Device arrays in, device arrays out: a chain of kernels with no host copy in between."""
    x = values(20, 10)
    y = gpu.pam(gpu.paexp2(gpu.to_device(x)), gpu.palog2(gpu.to_device(x)))
    assert gpu.is_device_array(y)
    np.testing.assert_array_equal(bits(host(y)), bits(ops.pam(ops.paexp2(x), ops.palog2(x))))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 2), None])
def test_sum_is_sequential_float32(axis):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 5, 4)) * np.exp2(rng.integers(-10, 10, (3, 5, 4)))).astype(np.float32)
    got = host(gpu.reduce_sum(x, axis=axis))
    ref = x
    for ax in sorted(range(3) if axis is None else np.atleast_1d(axis) % 3, reverse=True):
        ref = np.add.accumulate(ref, axis=ax, dtype=np.float32).take(-1, axis=ax)
    np.testing.assert_array_equal(got, ref)
    # against numpy's pairwise sum: the summation-order bound n * eps * sum|x|
    n = x.size // max(ref.size, 1)
    bound = n * np.finfo(np.float32).eps * np.sum(np.abs(x), axis=axis, dtype=np.float64)
    assert np.all(np.abs(got - np.sum(x, axis=axis, dtype=np.float64)) <= bound)


def test_sum_keepdims_and_max():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert host(gpu.reduce_sum(x, axis=1, keepdims=True)).shape == (4, 1)
    for axis in (0, 1, None):
        np.testing.assert_array_equal(host(gpu.reduce_max(x, axis=axis)), np.max(x, axis=axis))
    np.testing.assert_array_equal(host(gpu.reduce_max(x, axis=0, keepdims=True)),
                                  np.max(x, axis=0, keepdims=True))
    x[2, 1] = np.nan
    x[0, 1] = np.inf
    np.testing.assert_array_equal(host(gpu.reduce_max(x, axis=0)), np.max(x, axis=0))


def sequential_pam_matmul(a, b):
    """Reference: every PAM product, summed in float32 in increasing k."""
    products = ops.pam(a[..., :, :, None], b[..., None, :, :])        # (..., M, K, N)
    return np.add.accumulate(products, axis=-2, dtype=np.float32)[..., -1, :]


@pytest.mark.parametrize("shape_a, shape_b", [
    ((17, 20), (20, 3)),          # two k tiles, ragged edges in every direction
    ((2, 3, 5), (5, 4)),          # batched @ shared
    ((2, 3, 5), (2, 5, 4)),       # batched @ batched
])
def test_pam_matmul_bit_exact(shape_a, shape_b):
    rng = np.random.default_rng(13)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    a.reshape(-1)[1] = np.inf                                          # pam(inf, x) = inf, NaN with a +-inf mix
    got = host(gpu.pam_matmul(a, b))
    np.testing.assert_array_equal(bits(got), bits(ops.pam_matmul(a, b)))
    np.testing.assert_array_equal(bits(got), bits(sequential_pam_matmul(a, b)))


@pytest.mark.parametrize("transpose_a, transpose_b", [(True, False), (False, True), (True, True)])
def test_pam_matmul_transposed_operands(transpose_a, transpose_b):
    rng = np.random.default_rng(15)
    a = rng.standard_normal((2, 5, 3) if transpose_a else (2, 3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5) if transpose_b else (5, 4)).astype(np.float32)
    got = host(gpu.pam_matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b))
    want = ops.pam_matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("shape_a, shape_b", [((3, 5), (5, 4)), ((2, 3, 5), (5, 4))])
def test_pam_matmul_exact_grads_equal_cpu(shape_a, shape_b):
    rng = np.random.default_rng(16)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    dy = rng.standard_normal(np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (3, 4)).astype(np.float32)
    for got, want in zip(gpu.pam_matmul_exact_grads(a, b, dy), ops.pam_matmul_exact_grads(a, b, dy)):
        assert tuple(got.shape) == want.shape
        np.testing.assert_array_equal(bits(host(got)), bits(want))


def test_pam_matmul_vectors_and_errors():
    rng = np.random.default_rng(14)
    v = rng.standard_normal(5).astype(np.float32)
    m = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(host(gpu.pam_matmul(v, m)), ops.pam_matmul(v, m))
    np.testing.assert_array_equal(host(gpu.pam_matmul(m.T.copy(), v)), ops.pam_matmul(m.T, v))
    with pytest.raises(ValueError):
        gpu.pam_matmul(m, m)


def test_every_kernel_has_every_backend_it_claims():
    """use_cuda() gives every registry kernel that claims "cuda" its device function; only the
    float baseline (it multiplies), its AdamW update and mixed precision's rounding are host only."""
    from pafree.autograd import registry
    registry.use_cuda()
    assert registry.missing_backends() == []
    host_only = {name for name, k in registry.KERNELS.items() if "cuda" not in k.backends}
    assert host_only == {"fmul", "fdiv", "fexp2", "flog2", "fsqrt", "fmatmul", "adamw_standard",
                         "round_to"}


def test_a_kernel_missing_from_the_cuda_table_is_found(monkeypatch):
    """The check above can fail: a kernel claiming "cuda" that use_cuda() does not cover."""
    from pafree.autograd import registry
    kernel = registry.Kernel("test_uncovered", lambda x: x)
    try:
        registry.use_cuda()
        assert registry.missing_backends() == [("test_uncovered", "cuda")]
    finally:
        del registry.KERNELS["test_uncovered"]
