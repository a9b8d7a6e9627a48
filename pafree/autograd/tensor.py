"""Tensor: an array plus what autograd needs; operators map onto pafree.functional."""
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
            registry.use_cuda()
            from ..ops import cuda
            data = cuda.to_device(self.data)
        elif device == "cpu":
            data = registry.to_host(self.data)
        else:
            raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
        return Tensor(data, requires_grad=self.requires_grad)

    # --- arithmetic: exactly the functional ops --------------------------------------
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __neg__(self): return F.neg(self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __pow__(self, p): return F.pow(self, p)

    # comparisons: not differentiable, give bool tensors (== stays identity so Tensors hash)
    def __lt__(self, other): return Tensor(self.data < _as_array(other))
    def __le__(self, other): return Tensor(self.data <= _as_array(other))
    def __gt__(self, other): return Tensor(self.data > _as_array(other))
    def __ge__(self, other): return Tensor(self.data >= _as_array(other))
    __hash__ = object.__hash__

    def __getitem__(self, idx): return F.getitem(self, idx)

    # --- shape ops and reductions -------------------------------------------------
    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def transpose(self, *axes):
        return F.transpose(self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None)

    permute = transpose

    def swapaxes(self, a, b):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return F.transpose(self, tuple(axes))

    T = property(lambda self: F.transpose(self, None))

    def sum(self, axis=None, keepdims=False): return F.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return F.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return F.max(self, axis, keepdims)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def relu(self): return F.relu(self)


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


from .. import functional as F  # noqa: E402  (functional builds on Tensor and apply)
