"""Batch norm and pooling: values against float64 numpy in the float baseline, PA semantics
against the independent scalar references of tests/reference.py, train/eval behaviour,
running statistics and pooling ties. (Gradients: the CASES table of test_functional.py.)"""
import numpy as np
import pytest

import reference as ref
from pafree import F, Tensor, config, no_grad
from pafree.models import AvgPool2d, BatchNorm2d, GlobalAvgPool2d, MaxPool2d

rng = np.random.default_rng(5)


def f32(x):
    return np.asarray(x, np.float32)


def bitwise(op):
    """A reference scalar op over float32 arrays (by their bits), broadcasting."""
    def apply(*arrays):
        arrays = np.broadcast_arrays(*[f32(a) for a in arrays])
        out = [op(*(int(a.view(np.int32)) for a in elems)) for elems in zip(*(a.reshape(-1) for a in arrays))]
        return np.array(out, np.int64).astype(np.uint32).view(np.float32).reshape(arrays[0].shape)
    return apply


pam, pad, pasqrt = bitwise(ref.pam), bitwise(ref.pad), bitwise(ref.pasqrt)


def dyadic(*shape):
    """Multiples of 1/8 in [-4, 4]: every sum and PAM product below is exact in float32, so
    the order of additions does not matter and the reference can sum in any order."""
    return f32(rng.integers(-32, 33, shape) / 8)


def ref_batch_norm(x, w, b, eps=1e-5):
    mu = x.mean((0, 2, 3), keepdims=True)
    var = x.var((0, 2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)


# --- batch norm --------------------------------------------------------------------

def test_batch_norm_standard_matches_numpy_and_updates_running_statistics():
    x = rng.normal(1.0, 2.0, (4, 3, 5, 5))
    norm = BatchNorm2d(3, momentum=0.25)
    norm.weight.data[...] = rng.normal(size=3)
    norm.bias.data[...] = rng.normal(size=3)
    with config.mode("standard"):
        y = norm(f32(x)).data
    np.testing.assert_allclose(y, ref_batch_norm(x, norm.weight.data, norm.bias.data),
                               rtol=1e-4, atol=1e-4)
    count = 4 * 5 * 5
    np.testing.assert_allclose(norm.running_mean.data, 0.25 * x.mean((0, 2, 3)), rtol=1e-5)
    unbiased = x.var((0, 2, 3)) * count / (count - 1)
    np.testing.assert_allclose(norm.running_var.data, 0.75 + 0.25 * unbiased, rtol=1e-5)


def test_batch_norm_eval_uses_running_statistics_only():
    norm = BatchNorm2d(2)
    norm.running_mean.data[...] = [1.0, -2.0]
    norm.running_var.data[...] = [4.0, 0.25]
    norm.weight.data[...] = [2.0, 1.0]
    norm.bias.data[...] = [0.5, 0.0]
    norm.eval()
    x = f32(rng.normal(size=(3, 2, 2, 2)))
    expected = (x - f32([1, -2])[:, None, None]) / np.sqrt(f32([4, 0.25]) + 1e-5)[:, None, None]
    expected = expected * f32([2, 1])[:, None, None] + f32([0.5, 0])[:, None, None]
    for mode in ("standard", "pa"):
        with config.mode(mode), no_grad():
            whole = norm(x).data
            alone = norm(x[1:2]).data               # no batch statistics: the same answer
        np.testing.assert_array_equal(whole[1:2], alone)
        np.testing.assert_allclose(whole, expected, rtol=0.3 if mode == "pa" else 1e-5,
                                   atol=0.05 if mode == "pa" else 1e-5)
    np.testing.assert_array_equal(norm.running_mean.data, [1.0, -2.0])   # not moved in eval


def test_batch_norm_training_depends_on_the_batch():
    norm = BatchNorm2d(2)
    x = f32(rng.normal(size=(4, 2, 3, 3)))
    with config.mode("standard"), no_grad():
        assert not np.allclose(norm(x).data[:2], norm(x[:2]).data)
        with pytest.raises(ValueError, match="more than one value per channel"):
            norm(x[:1, :, :1, :1])


@pytest.mark.parametrize("derivative", ["exact", "approx"])
def test_batch_norm_pa_is_the_documented_graph_of_pa_primitives(derivative):
    """mean = sum ⊘ n; var = sum (x - mean) ⊙ (x - mean) ⊘ n; y = (x - mean) ⊘ pasqrt(var + eps)
    ⊙ w + b; running += momentum ⊙ (batch - running), the variance's sum ⊘ (n - 1)."""
    x, w, b = dyadic(2, 3, 2, 2), dyadic(3), dyadic(3)
    running_mean, running_var = dyadic(3), f32(rng.uniform(0.5, 2, 3))
    rm, rv = running_mean.copy(), running_var.copy()
    with config.mode("pa"):
        y = F.batch_norm(Tensor(x), w, b, rm, rv, momentum=0.1, derivative=derivative).data
    n = np.float32(8)
    channel = lambda v: v.reshape(1, 3, 1, 1)
    mean = pad(x.sum((0, 2, 3), keepdims=True), n)           # exact sums (see dyadic)
    centred = x - mean
    squares = pam(centred, centred).sum((0, 2, 3), keepdims=True)
    var = pad(squares, n)
    expected = pad(centred, pasqrt(var + np.float32(1e-5)))
    expected = pam(expected, channel(w)) + channel(b)
    np.testing.assert_array_equal(y, expected)
    momentum = np.float32(0.1)
    np.testing.assert_array_equal(
        rm, running_mean + pam(mean.reshape(3) - running_mean, momentum))
    np.testing.assert_array_equal(
        rv, running_var + pam(pad(squares.reshape(3), np.float32(7)) - running_var, momentum))


def test_batch_norm_buffers_are_state_not_parameters():
    norm = BatchNorm2d(4)
    assert [n for n, _ in norm.named_parameters()] == ["weight", "bias"]
    assert sorted(norm.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    other = BatchNorm2d(4)
    state = norm.state_dict()
    state["running_var"][...] = 3.0
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.running_var.data, 3.0)
    assert norm.running_var.data[0] == 1.0        # state_dict copies


# --- pooling ----------------------------------------------------------------------

def ref_pool(x, k, s, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = reduce(x[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return out


@pytest.mark.parametrize("k,s,shape", [(2, 2, (2, 3, 4, 6)), (3, 2, (1, 2, 7, 5)),
                                       (3, 1, (2, 1, 4, 4)), (2, 2, (1, 1, 5, 5))])
def test_pooling_standard_matches_loops(k, s, shape):
    x = rng.normal(size=shape)
    with config.mode("standard"), no_grad():
        np.testing.assert_array_equal(MaxPool2d(k, s)(f32(x)).data, ref_pool(f32(x), k, s, np.max))
        np.testing.assert_allclose(AvgPool2d(k, s)(f32(x)).data, ref_pool(x, k, s, np.mean),
                                   rtol=1e-5, atol=1e-6)


def test_avg_pool_pa_is_sum_pad_count():
    x = f32(rng.normal(size=(2, 2, 6, 6)))
    with config.mode("pa"), no_grad():
        got3 = AvgPool2d(3)(x).data
        got2 = AvgPool2d(2)(x).data
        pooled = GlobalAvgPool2d()(x).data
    with config.mode("standard"), no_grad():
        float2 = AvgPool2d(2)(x).data
    windows = np.stack([x[:, :, i:i + 4:3, j:j + 4:3] for i in range(3) for j in range(3)], 2)
    np.testing.assert_array_equal(got3, pad(windows.sum(2), np.float32(9)))   # numpy's order
    np.testing.assert_array_equal(got2, float2)        # ⊘ 4 is exact: PA = float
    np.testing.assert_array_equal(pooled, pad(x.sum((2, 3)), np.float32(36)))
    assert pooled.shape == (2, 2)


def test_max_pool_tie_gives_the_gradient_to_the_first_in_the_window():
    x = Tensor(f32([[[[1, 3, 3, 0],
                      [3, 2, 0, 0],
                      [5, 5, 2, 2],
                      [5, 5, 2, 2]]]]), requires_grad=True)
    y = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(y.data, [[[[3, 3], [5, 2]]]])
    y.backward(f32([[[[1, 2], [3, 4]]]]))
    np.testing.assert_array_equal(x.grad, [[[[0, 1, 2, 0],       # row-major: (0,1) before (1,0)
                                             [0, 0, 0, 0],
                                             [3, 0, 4, 0],
                                             [0, 0, 0, 0]]]])


def test_overlapping_max_pool_adds_gradients_of_shared_elements():
    x = Tensor(f32([[[[0, 0, 0], [0, 9, 0], [0, 0, 0]]]]), requires_grad=True)
    y = F.max_pool2d(x, 2, stride=1)                   # the 9 is the max of all four windows
    y.backward(np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(x.grad[0, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])


def test_pool_window_larger_than_input_is_an_error():
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.max_pool2d(np.zeros((1, 1, 2, 2), np.float32), 3)
