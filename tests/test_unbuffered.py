"""pafree.ops.unbuffered against numpy, bit for bit: its kernels replace numpy's buffered
ufunc loops and reductions on the PA path, so every result must be numpy's."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from pafree.ops import unbuffered as U


def bits(x):
    return np.asarray(x, np.float32).view(np.int32)


def floats(shape):
    """float32 arrays mixing magnitudes (so the order of the adds shows in the rounding),
    with zeros of both signs."""
    return hnp.arrays(np.float32, shape, elements=st.one_of(
        st.floats(-2.0 ** 14, 2.0 ** 14, width=32), st.floats(-2.0 ** -10, 2.0 ** -10, width=32),
        st.sampled_from([0.0, -0.0, 1.0, 3e7])))


@st.composite
def array_and_axes(draw, max_dims=4, max_side=12):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=max_side))
    x = draw(floats(shape))
    axes = draw(st.one_of(st.none(), st.sets(st.integers(0, len(shape) - 1)).map(tuple),
                          st.integers(-len(shape), len(shape) - 1)))
    return x, axes


@given(array_and_axes(), st.booleans())
def test_reduce_sum_is_np_sum_bit_for_bit(case, keepdims):
    x, axes = case
    want = np.sum(x, axis=axes, keepdims=keepdims)
    got = U.reduce_sum(x, axes, keepdims)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("n", [7, 8, 9, 127, 128, 129, 255, 256, 257, 1000, 8191, 8192, 8193,
                               70001])
@pytest.mark.parametrize("layout", ["flat", "rows", "columns", "middle"])
def test_reduce_sum_long_axes_pairwise_like_numpy(n, layout):
    """Lengths around numpy's unroll (8), block (128) and buffer (8192) sizes."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(3 * n) * rng.choice([1e-3, 1.0, 1e3], 3 * n)).astype(np.float32)
    x, axis = {"flat": (x, None), "rows": (x.reshape(3, n), 1), "columns": (x.reshape(n, 3), 0),
               "middle": (x.reshape(1, 3, n, 1), (1, 2))}[layout]
    np.testing.assert_array_equal(bits(U.reduce_sum(x, axis)), bits(np.sum(x, axis=axis)))


@given(array_and_axes(max_dims=3), st.booleans(), st.data())
def test_reduce_sum_of_c_ordered_slices_is_np_sum(case, keepdims, data):
    """Views whose strides still fall from the first axis to the last (slices of the
    attention's key/value projections): numpy walks them in C order too."""
    x, axes = case
    slices = tuple(slice(data.draw(st.integers(0, n)), None) for n in x.shape)
    view = x[slices]
    np.testing.assert_array_equal(bits(U.reduce_sum(view, axes, keepdims)),
                                  bits(np.sum(view, axis=axes, keepdims=keepdims)))


@given(array_and_axes(), st.booleans())
def test_reduce_max_is_np_max(case, keepdims):
    x, axes = case
    shape = x.shape
    if any(shape[a] == 0 for a in (range(x.ndim) if axes is None else np.atleast_1d(axes))):
        with pytest.raises(ValueError):
            U.reduce_max(x, axes, keepdims)
        return
    x = x.copy()
    if x.size:
        x.reshape(-1)[0] = np.nan if x.size > 3 else x.reshape(-1)[0]
    want = np.max(x, axis=axes, keepdims=keepdims)
    got = U.reduce_max(x, axes, keepdims)
    assert got.shape == want.shape
    np.testing.assert_array_equal(bits(got), bits(want))


def test_integer_shift_floors_the_max_and_zeroes_non_finite():
    x = np.float32([[1.5, -3.0, 2.9], [-np.inf, -np.inf, -np.inf], [np.nan, 1.0, 2.0],
                    [-0.5, -7.25, -1.0]])
    want = np.floor(np.max(x, axis=-1, keepdims=True))
    want = np.where(np.isfinite(want), want, np.float32(0))
    np.testing.assert_array_equal(bits(U.integer_shift(x, -1)), bits(want))


@given(st.data())
def test_apply_and_where_broadcast_like_numpy(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=5))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, base_shape=shape))
    a, b = data.draw(floats(shapes.input_shapes[0])), data.draw(floats(shapes.input_shapes[1]))
    cond = data.draw(hnp.arrays(bool, shapes.input_shapes[2]))
    for ufunc in (np.add, np.subtract):
        np.testing.assert_array_equal(bits(U.apply(ufunc, a, b)), bits(ufunc(a, b)))
    np.testing.assert_array_equal(bits(U.where(cond, a, b)), bits(np.where(cond, a, b)))
    np.testing.assert_array_equal(bits(U.apply(np.add, a, np.float32(-0.0))), bits(a + np.float32(-0.0)))


@given(st.data())
def test_scatter_add_rows_is_sorted_segment_sums(data):
    rows, width = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    idx = data.draw(hnp.arrays(np.int64, data.draw(hnp.array_shapes(max_dims=2, max_side=8)),
                               elements=st.integers(-rows, rows - 1)))
    values = data.draw(floats(idx.shape + (width,)))
    start = data.draw(floats((rows, width)))
    out = start.copy()
    U.scatter_add(out, idx, values)
    # the old CPU kernel: stable sort, np.add.reduceat per segment, one add per row
    flat_idx = np.where(idx.reshape(-1) < 0, idx.reshape(-1) + rows, idx.reshape(-1))
    order = np.argsort(flat_idx, kind="stable")
    sorted_rows = flat_idx[order]
    want = start.copy()
    if sorted_rows.size:
        starts = np.flatnonzero(np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1])))
        want[sorted_rows[starts]] += np.add.reduceat(values.reshape(-1, width)[order], starts, axis=0)
    np.testing.assert_array_equal(bits(out), bits(want))


def test_scatter_add_basic_index_and_bad_rows():
    out = np.zeros((3, 4, 5), np.float32)
    values = np.arange(24, dtype=np.float32).reshape(3, 4, 2) - 11
    U.scatter_add(out, (slice(None), slice(None), slice(1, 3)), values)
    want = np.zeros((3, 4, 5), np.float32)
    want[:, :, 1:3] += values
    np.testing.assert_array_equal(bits(out), bits(want))
    with pytest.raises(IndexError):
        U.scatter_add(np.zeros((2, 3), np.float32), np.array([0, 2]), np.ones((2, 3), np.float32))


@given(array_and_axes(), st.data())
def test_first_max_marks_numpys_argmax(case, data):
    x, axes = case
    if not isinstance(axes, int) and axes is not None:
        axes = axes[0] if axes else None
    x = x.copy()
    if x.size and data.draw(st.booleans()):
        x.reshape(-1)[data.draw(st.integers(0, x.size - 1))] = np.nan
    if x.size == 0 or (axes is not None and x.shape[axes] == 0):
        return
    want = np.zeros(x.shape, bool)
    if axes is None:
        want.reshape(-1)[np.argmax(x)] = True
    else:
        np.put_along_axis(want, np.argmax(x, axis=axes, keepdims=True), True, axis=axes)
    np.testing.assert_array_equal(U.first_max(x, axes), want)
