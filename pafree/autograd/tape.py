"""The tape: a node per recorded operation, and backward as a reverse walk.

Every differentiable operation run while recording makes a ``Node`` holding
its primitive, the derivative kind chosen at forward time, its inputs and its
answer. Nodes are numbered in execution order; ``backward`` gathers the nodes
the root depends on, walks them from the newest to the oldest, asks each
primitive's vjp rules for the gradients of the inputs that need one, sums
gradients with float adds and frees each node's buffers once it is done.
"""
import contextlib
import itertools

from . import registry as R

_counter = itertools.count()
_recording = [True]


class no_grad(contextlib.ContextDecorator):
    """Inside this context (or decorated function) nothing is recorded."""

    def _recreate_cm(self):
        return no_grad()             # a fresh one per decorated call: recursion restores correctly

    def __enter__(self):
        self._previous = _recording[0]
        _recording[0] = False

    def __exit__(self, *exc):
        _recording[0] = self._previous
        return False


def is_recording():
    return _recording[0]


class Node:
    """One recorded operation: ``ans = prim(*arrays, **params)`` with derivative ``kind``."""
    __slots__ = ("seq", "prim", "kind", "inputs", "arrays", "ans", "params")

    def __init__(self, prim, kind, inputs, arrays, ans, params):
        self.seq = next(_counter)
        self.prim = prim
        self.kind = kind
        self.inputs = inputs
        self.arrays = arrays
        self.ans = ans
        self.params = params

    def free(self):
        self.inputs = self.arrays = self.ans = None


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``, undoing numpy broadcasting (float adds)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = R.sum_(grad, axis=tuple(range(extra)), keepdims=False)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = R.sum_(grad, axis=axes, keepdims=True)
    return grad


def _nodes_behind(root):
    """The nodes ``root`` depends on, newest first (reverse execution order)."""
    seen, stack, nodes = {id(root)}, [root], []
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(
                f"backward through '{node.prim.name}' a second time: its buffers were freed "
                "by the first backward (pass retain_graph=True to keep them)")
        nodes.append(node)
        for t in node.inputs:
            if t.requires_grad and t._node is not None and id(t._node) not in seen:
                seen.add(id(t._node))
                stack.append(t._node)
    nodes.sort(key=lambda n: n.seq, reverse=True)
    return nodes


def _accumulate_leaf(tensor, grad):
    if tensor.grad is None:
        tensor.grad = R.copy(grad)  # a copy the leaf owns
    else:
        tensor.grad = R.add(tensor.grad, grad)


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad")
    if grad is None:
        if root.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar, got shape {root.shape}; "
                "pass grad= of that shape")
        grad = R.ones_like(root.data)
    elif grad.shape != root.shape:
        raise ValueError(f"backward: grad of shape {grad.shape} for a tensor of shape {root.shape}")
    if root._node is None:
        _accumulate_leaf(root, grad)
        return
    pending = {id(root._node): grad}
    for node in _nodes_behind(root._node):
        g = pending.pop(id(node), None)
        if g is None:
            continue
        rules = node.prim.vjp.get(node.kind)
        if rules is None:
            raise NotImplementedError(
                f"primitive '{node.prim.name}' has no {node.kind} derivative rule")
        if callable(rules):
            in_grads = rules(g, node.ans, *node.arrays, **node.params)
        else:
            in_grads = [rule(g, node.ans, *node.arrays, **node.params) if t.requires_grad else None
                        for rule, t in zip(rules, node.inputs)]
        for t, gi in zip(node.inputs, in_grads):
            if gi is None or not t.requires_grad:
                continue
            gi = unbroadcast(gi, t.shape)
            if t._node is None:
                _accumulate_leaf(t, gi)
            else:
                key = id(t._node)
                pending[key] = R.add(pending[key], gi) if key in pending else gi
        if not retain_graph:
            node.free()
