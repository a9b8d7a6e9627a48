"""The engine: Tensor, tape, registry, config, bad input. Gradients of linear/shape ops
are checked against dense float64 formulas built independently of the implementation."""
import numpy as np
import pytest

import pafree
from pafree import F, Tensor, config, no_grad
from pafree.autograd import apply, registry

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- Tensor --------------------------------------------------------------------------
def test_tensor_stores_float32_and_keeps_integers():
    assert Tensor(np.ones(3, np.float64)).dtype == np.float32
    assert Tensor([1.5, 2.0]).dtype == np.float32
    assert Tensor(np.arange(3)).dtype.kind == "i"
    assert Tensor(np.array([True, False])).dtype == bool


def test_integer_tensor_refuses_grad():
    with pytest.raises(TypeError, match="float"):
        Tensor(np.arange(3), requires_grad=True)


def test_attributes_and_detach():
    x = Tensor(randn(2, 3), requires_grad=True)
    assert (x.shape, x.ndim, x.size) == ((2, 3), 2, 6)
    assert x.T.shape == (3, 2)
    d = x.detach()
    assert d.data is x.data and not d.requires_grad
    assert x.numpy() is x.data


def test_operators_map_to_functional():
    a, b = randn(3, 4), randn(3, 4) + 3
    x, y = Tensor(a), Tensor(b)
    np.testing.assert_array_equal((x + y).data, a + b)
    np.testing.assert_array_equal((x - y).data, a - b)
    np.testing.assert_array_equal((-x).data, -a)
    np.testing.assert_array_equal((2.0 - x).data, 2 - a)
    np.testing.assert_allclose((x * y).data, a * b, rtol=1e-6)
    np.testing.assert_allclose((x / y).data, a / b, rtol=1e-6)
    np.testing.assert_allclose((x @ y.T).data, a @ b.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal((x > 0).data, a > 0)
    with config.mode("pa"):
        np.testing.assert_array_equal((x * y).data, pafree.ops.pam(a, b))
        np.testing.assert_array_equal((x / y).data, pafree.ops.pad(a, b))
        np.testing.assert_array_equal((x @ y.T).data, pafree.ops.pam_matmul(a, b.T))


# --- tape ----------------------------------------------------------------------------
def test_nodes_are_recorded_in_execution_order_and_freed():
    x = Tensor(randn(3), requires_grad=True)
    a = x + 1.0
    b = a * a
    c = b.sum()
    assert a._node.seq < b._node.seq < c._node.seq
    assert b._node.inputs[0] is a
    c.backward()
    assert b._node.inputs is None and b._node.ans is None


def test_gradient_accumulates_over_uses_and_calls():
    a = randn(4)
    x = Tensor(a, requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * a + 1, rtol=1e-6)
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * a + 3, rtol=1e-6)


def test_no_grad_records_nothing():
    x = Tensor(randn(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._node is None

    @no_grad()
    def f(t, depth):
        return f(t, depth - 1) if depth else t + 1.0
    assert f(x, 2)._node is None
    assert (x + 1.0)._node is not None      # recording is back on after nested decorated calls


def test_backward_non_scalar_needs_grad():
    y = Tensor(randn(3), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"scalar.*\(3,\)"):
        y.backward()
    y.backward(np.ones(3, np.float32))


def test_backward_twice_through_freed_graph():
    x = Tensor(randn(3), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    a = randn(3)
    x = Tensor(a, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * a, rtol=1e-6)


def test_missing_rule_names_the_primitive():
    prim = registry.Primitive("test_rule_less", np.negative)
    try:
        y = apply(prim, Tensor(randn(2), requires_grad=True), kind="approx").sum()
        with pytest.raises(NotImplementedError, match="'test_rule_less' has no approx"):
            y.backward()
    finally:
        del registry.PRIMITIVES["test_rule_less"], registry.KERNELS["test_rule_less"]


def test_backend_is_chosen_by_array_type():
    class FakeDeviceArray:            # what marks a numba device array, real or simulated
        def copy_to_host(self):
            raise AssertionError("not called")
    kernel = registry.Kernel("test_backends", lambda x: "cpu")
    try:
        kernel.register("cuda", lambda x: "cuda")
        assert kernel(np.zeros(1)) == "cpu"
        assert kernel(FakeDeviceArray()) == "cuda"
    finally:
        del registry.KERNELS["test_backends"]


def test_a_kernel_refuses_a_backend_it_does_not_claim():
    class FakeDeviceArray:
        def copy_to_host(self):
            raise AssertionError("not called")
    kernel = registry.Kernel("test_host_only", lambda x: "cpu", backends=("cpu",))
    try:
        with pytest.raises(ValueError, match="does not claim backend 'cuda'"):
            kernel.register("cuda", lambda x: "cuda")
        with pytest.raises(NotImplementedError, match="test_host_only has no cuda kernel"):
            kernel(FakeDeviceArray())
        with pytest.raises(ValueError, match="already registered"):
            registry.Kernel("test_host_only", lambda x: "cpu")
    finally:
        del registry.KERNELS["test_host_only"]


def test_kernels_and_primitives_are_apart():
    """Kernel-only helpers are dispatched but never differentiated: no vjp rules to carry."""
    assert set(registry.PRIMITIVES) < set(registry.KERNELS)
    for name, kernel in registry.KERNELS.items():
        is_primitive = isinstance(kernel, registry.Primitive)
        assert is_primitive == (name in registry.PRIMITIVES), name
        assert not is_primitive or kernel.vjp, f"primitive {name} has no vjp rule"
    for name in ("pam_slope", "pad_slope_a", "scatter_add", "first_max", "zeros", "adamw_pa"):
        assert not isinstance(registry.KERNELS[name], registry.Primitive), name


def test_mismatched_shapes_name_both_shapes_and_the_op():
    x, y = Tensor(randn(3, 4)), Tensor(randn(5))
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\) and \(5,\)"):
        x + y
    with config.mode("pa"), pytest.raises(ValueError, match=r"pam: shapes \(3, 4\) and \(5,\)"):
        x * y
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(3, 4\)"):
        x @ x


# --- gradients of linear and shape ops, against dense float64 formulas --------------------
def test_unbroadcast_sums_over_broadcast_axes():
    x = Tensor(randn(4, 1, 3), requires_grad=True)
    b = Tensor(randn(5, 1), requires_grad=True)
    g = randn(4, 5, 3)
    (x + b).backward(g)
    np.testing.assert_allclose(x.grad, g.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(b.grad, g.sum(axis=(0, 2))[:, None], rtol=1e-5)


def test_sum_mean_max_gradients():
    a = randn(3, 4)
    x = Tensor(a, requires_grad=True)
    g = randn(3)
    x.sum(axis=1).backward(g)
    np.testing.assert_array_equal(x.grad, np.repeat(g[:, None], 4, axis=1))
    x.grad = None
    x.max(axis=0).backward(g[:1].repeat(4))
    expect = np.zeros((3, 4), np.float32)
    expect[a.argmax(axis=0), np.arange(4)] = g[0]
    np.testing.assert_array_equal(x.grad, expect)
    x.grad = None
    x.mean().backward()
    np.testing.assert_allclose(x.grad, np.full((3, 4), 1 / 12), rtol=1e-6)


def test_reductions_take_a_numpy_integer_axis():
    a = randn(3, 4)
    for axis in (1, np.int64(1)):
        x = Tensor(a, requires_grad=True)
        F.sum(x, axis=axis).sum().backward()
        np.testing.assert_array_equal(x.grad, np.ones((3, 4), np.float32))
        x = Tensor(a, requires_grad=True)
        F.max(x, axis=axis).sum().backward()
        assert x.grad.sum() == 3


def test_reshape_transpose_gradients_are_permutations():
    x = Tensor(randn(2, 3, 4), requires_grad=True)
    g = randn(4, 2, 3)
    x.permute(2, 0, 1).backward(g)
    np.testing.assert_array_equal(x.grad, g.transpose(1, 2, 0))
    x.grad = None
    x.reshape(6, 4).backward(g.reshape(6, 4))
    np.testing.assert_array_equal(x.grad, g.reshape(2, 3, 4))


def test_embedding_gradient_is_one_hot_transpose_times_grad():
    w = Tensor(randn(5, 3), requires_grad=True)
    ids = np.array([[1, 4, 1], [0, 1, 2]])
    g = randn(2, 3, 3)
    out = F.embedding(w, ids)
    np.testing.assert_array_equal(out.data, w.data[ids])
    out.backward(g)
    one_hot = (ids.reshape(-1, 1) == np.arange(5)).astype(np.float64)
    np.testing.assert_allclose(w.grad, one_hot.T @ g.reshape(-1, 3), rtol=1e-6)


def test_negative_and_repeated_indices_scatter_add():
    x = Tensor(randn(4, 2), requires_grad=True)
    idx = np.array([-1, 0, 3, -1])
    g = randn(4, 2)
    x[idx].backward(g)
    one_hot = (idx[:, None] % 4 == np.arange(4)).astype(np.float64)
    np.testing.assert_allclose(x.grad, one_hot.T @ g, rtol=1e-6)


def test_slicing_gradient():
    x = Tensor(randn(4, 5), requires_grad=True)
    g = randn(2, 5)
    x[1:3].backward(g)
    expect = np.zeros((4, 5), np.float32)
    expect[1:3] = g
    np.testing.assert_array_equal(x.grad, expect)


def test_concatenate_and_stack_gradients_split():
    a = Tensor(randn(2, 3), requires_grad=True)
    b = Tensor(randn(2, 1), requires_grad=True)
    g = randn(2, 4)
    F.concatenate([a, b], axis=1).backward(g)
    np.testing.assert_array_equal(a.grad, g[:, :3])
    np.testing.assert_array_equal(b.grad, g[:, 3:])
    c = Tensor(randn(2, 3), requires_grad=True)
    s = F.stack([a, c], axis=1)
    assert s.shape == (2, 2, 3)
    np.testing.assert_array_equal(s.data, np.stack([a.data, c.data], axis=1))
    gs = randn(2, 2, 3)
    s.backward(gs)
    np.testing.assert_array_equal(c.grad, gs[:, 1])


def test_where_and_masked_fill_route_gradients():
    x = Tensor(randn(3, 4), requires_grad=True)
    mask = rng.random((3, 4)) < 0.5
    g = randn(3, 4)
    out = F.masked_fill(x, mask, -1.0)
    np.testing.assert_array_equal(out.data, np.where(mask, -1.0, x.data))
    out.backward(g)
    np.testing.assert_array_equal(x.grad, np.where(mask, 0, g))


def test_relu_gradient_takes_the_right_segment_at_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0])


# --- config ------------------------------------------------------------------------
def test_presets():
    assert set(config.PRESETS["standard"].values()) == {"standard"}
    assert config.PRESETS["pa-matmul"]["matmul"] == "pa-approx"
    assert config.PRESETS["pa-matmul"]["norm"] == "standard"
    pa = config.PRESETS["pa"]
    assert pa["loss"] == "pa-exact" and pa["softmax"] == pa["norm"] == "pa-approx"


def test_mode_context_restores_and_overrides():
    before = config.get()
    with config.mode("pa", norm="pa-exact") as modes:
        assert modes["norm"] == "pa-exact" and config.mode_of("matmul") == "pa-approx"
    assert config.get() == before


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="preset"):
        config.set("fast")
    with pytest.raises(ValueError, match="component"):
        config.set(attention="standard")
    with pytest.raises(ValueError, match="mode"):
        config.set(matmul="pa")
    with pytest.raises(ValueError, match="derivative"):
        F.mul(1.0, 2.0, derivative="float")


def test_derivative_kind_is_recorded_at_forward_time():
    x = Tensor(randn(3), requires_grad=True)
    with config.mode("pa"):
        y = F.mul(x, 3.0)
        z = F.mul(x, 3.0, derivative="exact")
    assert (y._node.kind, z._node.kind) == ("approx", "exact")
    assert y._node.prim.name == "pam"
    assert F.mul(x, 3.0)._node.prim.name == "fmul"
