"""Tensor: an array plus what autograd needs, and ``apply``, which records a primitive's call.

Tensor's arithmetic operators and array methods (+, *, @, reshape, sum, ...) are
exactly the functional ops; pafree.functional, which builds on this module,
installs them on the class, so nothing here imports upward."""
import numpy as np

from . import registry, tape


def _as_array(data):
    """Floats become float32; integer and bool arrays stay as they are (ids, targets, masks)."""
    if isinstance(data, Tensor):
        return data.data
    if isinstance(data, np.ndarray) and data.dtype == np.float32:
        return data
    if registry.is_device_array(data):
        return data                                   # a device array: kept as is
    arr = np.asanyarray(data)                         # keeps ndarray subclasses (the audit's)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"Tensor: expected real numbers, got dtype {arr.dtype}")
    return arr


class Tensor:
    __array_priority__ = 100          # ndarray <op> Tensor defers to the Tensor's operator

    def __init__(self, data, requires_grad=False):
        self.data = _as_array(data)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only float tensors can require grad, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None             # the tape node that produced this tensor (None: a leaf)

    # --- inspection ---------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def __len__(self):
        return len(self.data)

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def detach(self):
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    def backward(self, grad=None, retain_graph=False):
        tape.backward(self, None if grad is None else _as_array(grad), retain_graph)

    device = property(lambda self: "cuda" if registry.is_device_array(self.data) else "cpu")

    def to(self, device):
        """A new leaf with the data on ``device`` ("cpu" or "cuda"), same requires_grad."""
        if device == "cuda":
            from ..ops import cuda
            data = cuda.to_device(self.data)
        elif device == "cpu":
            data = registry.to_host(self.data)
        else:
            raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
        return Tensor(data, requires_grad=self.requires_grad)

    # comparisons: not differentiable, give bool tensors (== stays identity so Tensors hash)
    def __lt__(self, other): return Tensor(self.data < _as_array(other))
    def __le__(self, other): return Tensor(self.data <= _as_array(other))
    def __gt__(self, other): return Tensor(self.data > _as_array(other))
    def __ge__(self, other): return Tensor(self.data >= _as_array(other))
    __hash__ = object.__hash__


def apply(prim, *inputs, kind="exact", **params):
    """Run primitive ``prim`` on the inputs' data and, if recording, put a node on the tape.

    Inputs that are not Tensors (Python numbers, arrays) are constants; ``params``
    are the primitive's non-differentiable arguments (axis, shape, index, mask).
    """
    tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    arrays = [t.data if t.data.dtype.kind == "f" else t.data.astype(np.float32) for t in tensors]
    if prim.elementwise and len(arrays) > 1:
        try:
            np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = " and ".join(str(a.shape) for a in arrays)
            raise ValueError(f"{prim.name}: shapes {shapes} do not broadcast") from None
    out = Tensor(prim(*arrays, **params))
    if tape.is_recording() and any(t.requires_grad for t in tensors):
        out.requires_grad = True
        out._node = tape.Node(prim, kind, tensors, arrays, out.data, params)
    return out
