"""pafree.functional (F): every differentiable operation, built from the registered primitives.

Each function belongs to a model component (see pafree.config). With
``derivative=None`` it uses that component's mode; ``derivative="approx"`` or
``"exact"`` forces the piecewise affine forward with that derivative kind for
this call. Composites (softmax, layer_norm, cross_entropy, gelu, ...) are
written once against an ``Arith`` (the multiplying operations of one mode), so
the float baseline and the PA versions are the same graph with different
primitives, and their gradients come from that graph.

Exponentials and logarithms are base 2 inside: softmax-like functions subtract
an integer shift n = floor(max(x ⊙ log2 e)), which PA arithmetic handles
exactly (paexp2(z - n) = 2**-n paexp2(z)).
"""

import numpy as np

from . import config
from .autograd import registry as R
from .autograd.tensor import Tensor, _as_array, apply
from .ops.indices import index_range, size
from .ops import bits, patches, unbuffered

LOG2E = np.int32(bits.LOG2E).view(np.float32)      # float32(log2 e), the constant of paexp/palog
GELU_SIGMOID = np.float32(-1.702)                   # gelu(x) ≈ x · sigmoid(1.702 x)
KINDS = R.KINDS     # the derivative kinds


class Arith:
    """The multiplying operations of one mode: PA primitives (with a derivative kind) or the float baseline."""

    def __init__(self, mode):
        self.mode = mode
        pa = mode != "standard"
        self.kind = mode[len("pa-"):] if pa else "exact"
        self._mul, self._div, self._exp2, self._log2, self._sqrt, self._matmul = (
            (R.pam, R.pad, R.paexp2, R.palog2, R.pasqrt, R.pam_matmul) if pa else
            (R.fmul, R.fdiv, R.fexp2, R.flog2, R.fsqrt, R.fmatmul))

    def mul(self, a, b): return apply(self._mul, a, b, kind=self.kind)
    def div(self, a, b): return apply(self._div, a, b, kind=self.kind)
    def exp2(self, x): return apply(self._exp2, x, kind=self.kind)
    def log2(self, x): return apply(self._log2, x, kind=self.kind)
    def sqrt(self, x): return apply(self._sqrt, x, kind=self.kind)
    def matmul(self, a, b): return apply(self._matmul, a, b, kind=self.kind)

    def exp(self, x):
        if self.kind == "approx":       # one node, the analytic rule dx = dY ⊙ Y (SPEC section 4)
            return apply(R.paexp, x, kind="approx")
        return self.exp2(self.mul(x, LOG2E))    # exact and float: through the graph

    def log(self, x):
        if self.kind == "approx":       # one node, the analytic rule dx = dY ⊘ x
            return apply(R.palog, x, kind="approx")
        return self.div(self.log2(x), LOG2E)

    def pow(self, x, p): return self.exp2(self.mul(p, self.log2(x)))


_ARITH = {mode: Arith(mode) for mode in config.COMPONENT_MODES}


def _check_kind(derivative):
    if derivative is not None and derivative not in KINDS:
        raise ValueError(f"derivative must be None, 'exact' or 'approx', got {derivative!r}")


def _arith(component, derivative):
    """The arithmetic for one call: the component's configured mode unless a derivative kind is forced."""
    _check_kind(derivative)
    return _ARITH[config.mode_of(component) if derivative is None else "pa-" + derivative]


def _pa_arith(derivative):
    """PA arithmetic for the pa* functions: the forced kind, else the 'other' component's, else approx."""
    _check_kind(derivative)
    if derivative is None:
        mode = config.mode_of("other")
        derivative = mode[len("pa-"):] if mode != "standard" else "approx"
    return _ARITH["pa-" + derivative]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


# --- the PA primitives and their derived ops (always piecewise affine) ---------------
def pam(a, b, derivative=None): return _pa_arith(derivative).mul(a, b)
def pad(a, b, derivative=None): return _pa_arith(derivative).div(a, b)
def paexp2(x, derivative=None): return _pa_arith(derivative).exp2(x)
def palog2(x, derivative=None): return _pa_arith(derivative).log2(x)
def pasqrt(x, derivative=None): return _pa_arith(derivative).sqrt(x)
def paexp(x, derivative=None): return _pa_arith(derivative).exp(x)
def palog(x, derivative=None): return _pa_arith(derivative).log(x)
def papow(x, p, derivative=None): return _pa_arith(derivative).pow(x, p)


# --- multiplying ops: PA or float by the 'other' component ---------------------------
def mul(a, b, derivative=None): return _arith("other", derivative).mul(a, b)
def div(a, b, derivative=None): return _arith("other", derivative).div(a, b)
def exp(x, derivative=None): return _arith("other", derivative).exp(x)
def log(x, derivative=None): return _arith("other", derivative).log(x)
def sqrt(x, derivative=None): return _arith("other", derivative).sqrt(x)
def pow(x, p, derivative=None):
    """x ** p = exp2(p ⊙ log2 x), for x > 0 (as papow); use mul(x, x) for squares of any sign."""
    return _arith("other", derivative).pow(x, p)


def matmul(a, b, derivative=None):
    """a @ b with numpy's batch broadcasting; both operands at least 2-D. A PA matmul's output
    is ⊙ alpha when ``config.pam_offset()`` is set (the paper's section 2.7)."""
    a, b = _tensor(a), _tensor(b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    return _matmul(a, b, derivative)


def _matmul(a, b, derivative):
    """The matmul component's product of checked operands (matmul's and conv2d's): in PA
    modes ⊙ alpha when ``config.pam_offset()`` is set (the paper's section 2.7); in mixed
    precision the operands and the output are rounded to the format, and (round_to's rule)
    their gradients too: the float32 GEMM between is exact on the format's values as long as
    its results stay in the format's range (docs/arithmetic.md)."""
    ar = _arith("matmul", derivative)
    precision = config.precision_of()
    if precision != "fp32":
        a, b = (apply(R.round_to, x, precision=precision) for x in (a, b))
    out = ar.matmul(a, b)
    alpha = config.pam_offset()
    if alpha is not None and ar.mode != "standard":
        out = ar.mul(out, np.float32(alpha))
    if precision != "fp32":
        out = apply(R.round_to, out, precision=precision)
    return out


def _pair(value, name, least):
    """An int or a pair of ints, each at least ``least``, as a pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < least for v in pair):
        raise ValueError(f"{name} must be at least {least}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _float_tensor(x, op, name):
    x = _tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a float tensor, got dtype {x.dtype}")
    return x


def _patches(x, kernel, stride, padding, op):
    """Checked NCHW x and the unfold parameters: (x, kernel, stride, padding, (OH, OW))."""
    x = _float_tensor(x, op, "input")
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = _pair(kernel, "kernel size", 1)
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    for axis, k, p in zip(("height", "width"), kernel, padding):
        extent = x.shape[2 + (axis == "width")] + p + p
        if k > extent:
            raise ValueError(f"{op}: kernel {axis} {k} is larger than the padded input {axis} {extent}")
    out = tuple(patches.out_size(n, k, s, p) for n, k, s, p in zip(x.shape[2:], kernel, stride, padding))
    return x, kernel, stride, padding, out


def unfold(x, kernel_size, stride=1, padding=0):
    """The patches of NCHW x (zero padding) as columns: (N, C*kh*kw, OH*OW), row
    (c*kh + di)*kw + dj, column i*OW + j (pafree.ops.patches; index work only, every mode)."""
    x, kernel, stride, padding, _ = _patches(x, kernel_size, stride, padding, "unfold")
    return apply(R.unfold, x, kernel=kernel, stride=stride, padding=padding)


def conv2d(x, w, bias=None, stride=1, padding=0, groups=1, derivative=None):
    """2-D convolution (cross-correlation, as torch) of x (N, C, H, W) with w (O, C/groups,
    kh, kw), zero padding, component 'matmul'. Lowered to one batched matmul per call:
    the patches P = unfold(x) (N, groups, C/groups*kh*kw, OH*OW) and
    out[n, o, :] = w[o] @ P[n, group of o] (+ bias[o], one add after the sum), in PA modes
    sum_k pam(w[o, k], P[n, k, l]) from +0.0 in increasing k = (c, di, dj); gradients are
    matmul's (exact or approx) then fold's. See docs/autograd.md, "Convolution"."""
    op = "conv2d"
    w = _float_tensor(w, op, "weight")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D (O, C/groups, kh, kw), got shape {w.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    x, kernel, stride, padding, (oh, ow) = _patches(x, w.shape[2:], stride, padding, op)
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    if c % groups or o % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels {c} "
                         f"and the output channels {o}")
    if cg != c // groups:
        raise ValueError(f"{op}: weight {w.shape} has {cg} input channels per group, "
                         f"input {x.shape} with groups={groups} needs {c // groups}")
    if bias is not None:
        bias = _float_tensor(bias, op, "bias")
        if bias.shape != (o,):
            raise ValueError(f"{op}: bias must have shape ({o},), got {bias.shape}")
    k = size((cg, *kernel))
    cols = apply(R.unfold, x, kernel=kernel, stride=stride, padding=padding)
    y = _matmul(reshape(w, (groups, o // groups, k)), reshape(cols, (n, groups, k, oh * ow)),
                derivative)
    y = reshape(y, (n, o, oh, ow))
    return y if bias is None else add(y, reshape(bias, (1, o, 1, 1)))


# --- ops with no multiplication: the same in every mode ------------------------------
# (``derivative`` is accepted for a uniform signature; add, compare and copy have one
# derivative, so it changes nothing.)
def add(a, b, derivative=None): _check_kind(derivative); return apply(R.add, a, b)
def sub(a, b, derivative=None): _check_kind(derivative); return apply(R.sub, a, b)
def neg(x, derivative=None): _check_kind(derivative); return apply(R.neg, x)
def relu(x, derivative=None): _check_kind(derivative); return apply(R.relu, x)


def sum(x, axis=None, keepdims=False, derivative=None):
    _check_kind(derivative)
    return apply(R.sum_, x, axis=_axis(axis), keepdims=keepdims)


def max(x, axis=None, keepdims=False, derivative=None):
    """Maximum over one axis (or all); the gradient goes to the first maximum."""
    _check_kind(derivative)
    if isinstance(axis, (list, tuple)):
        raise ValueError("max: axis must be an int or None")
    return apply(R.max_, x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False, derivative=None):
    """sum ⊘ count in PA modes (the count is an integer, converted exactly)."""
    x = _tensor(x)
    axis = _axis(axis)
    axes = range(x.ndim) if axis is None else (axis,) if np.ndim(axis) == 0 else axis
    count = size(x.shape[a] for a in axes)
    return _arith("other", derivative).div(sum(x, axis, keepdims), float(count))


def where(cond, a, b):
    """a where cond is True, else b (cond: bool array or Tensor, not differentiated)."""
    return apply(R.where, a, b, cond=_as_array(cond))


def masked_fill(x, mask, value):
    """x with ``value`` where mask is True."""
    return where(mask, value, x)


# --- shape ops -----------------------------------------------------------------------
def reshape(x, shape):
    return apply(R.reshape, x, shape=tuple(shape))


def transpose(x, axes=None):
    return apply(R.transpose, x, axes=None if axes is None else tuple(axes))


def _index(idx):
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    return idx.data if isinstance(idx, Tensor) else idx


def getitem(x, idx):
    """x[idx]: basic slicing and integer-array indexing; the gradient is a scatter-add."""
    return apply(R.getitem, x, idx=_index(idx))


def embedding(weight, ids):
    """Rows ``weight[ids]``; repeated ids add their gradients."""
    ids = _as_array(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    return getitem(weight, ids)


def concatenate(tensors, axis=0):
    return apply(R.concatenate, *tensors, axis=axis)


def stack(tensors, axis=0):
    tensors = [_tensor(t) for t in tensors]
    ndim = tensors[0].ndim + 1
    axis = axis % ndim
    return concatenate([reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], axis)


# --- Tensor's operators and methods: exactly the ops above -------------------------
class _TensorMethods:
    """Tensor's arithmetic operators and array methods, installed on Tensor below
    (functional builds on Tensor, so the Tensor module cannot import functional)."""

    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __neg__(self): return neg(self)
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __truediv__(self, other): return div(self, other)
    def __rtruediv__(self, other): return div(other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __pow__(self, p): return pow(self, p)

    def __getitem__(self, idx): return getitem(self, idx)

    # --- shape ops and reductions -------------------------------------------------
    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def transpose(self, *axes):
        return transpose(self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None)

    permute = transpose

    def swapaxes(self, a, b):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return transpose(self, tuple(axes))

    T = property(lambda self: transpose(self, None))

    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def exp(self): return exp(self)
    def log(self): return log(self)
    def sqrt(self): return sqrt(self)
    def relu(self): return relu(self)


for _name, _method in vars(_TensorMethods).items():
    if callable(_method) or isinstance(_method, property):
        setattr(Tensor, _name, _method)


# --- composites: one graph, the component's arithmetic -------------------------------
def _shifted_exp2(ar, x, axis):
    """(z - n, paexp2(z - n), n) for z = x ⊙ log2 e and the integer shift n = floor(max z)."""
    z = ar.mul(x, LOG2E)
    shift = R.integer_shift(z.data, axis)          # a constant: the PA function is flat in it
    zs = sub(z, shift)
    return zs, ar.exp2(zs), shift


def _masked(x, mask):
    """Apply an additive float mask, or a bool mask (True = keep) as -inf elsewhere."""
    if mask is None:
        return x
    mask = _as_array(mask)
    if mask.dtype.kind == "b":
        return where(mask, x, np.float32(-np.inf))
    return add(x, mask)


def softmax(x, axis=-1, mask=None, derivative=None):
    """exp(x) / sum exp(x) along ``axis`` (component 'softmax'); ``mask``: additive or bool keep-mask."""
    ar = _arith("softmax", derivative)
    _, e, _ = _shifted_exp2(ar, _masked(x, mask), axis)
    return ar.div(e, sum(e, axis, keepdims=True))


def log_softmax(x, axis=-1, derivative=None):
    """Natural log of softmax (component 'loss'): (z - n - log2 sum) ⊘ log2 e."""
    ar = _arith("loss", derivative)
    zs, e, _ = _shifted_exp2(ar, x, axis)
    return ar.div(sub(zs, ar.log2(sum(e, axis, keepdims=True))), LOG2E)


def logsumexp(x, axis=-1, keepdims=False, derivative=None):
    """Natural log of sum exp(x) along ``axis`` (component 'loss')."""
    ar = _arith("loss", derivative)
    _, e, shift = _shifted_exp2(ar, x, axis)
    out = ar.div(add(ar.log2(sum(e, axis, keepdims=True)), shift), LOG2E)
    return out if keepdims else reshape(out, np.squeeze(shift, axis).shape)


def cross_entropy(logits, targets, label_smoothing=0.0, ignore_index=None, derivative=None):
    """Mean softmax cross-entropy (nats) of logits (..., C) against integer targets (...).

    With label smoothing eps the target distribution is (1 - eps) one-hot + eps / C;
    targets equal to ``ignore_index`` are left out of the loss and of the mean.
    Computed in bits (base 2) and converted to nats once at the end.
    """
    ar = _arith("loss", derivative)
    logits = _tensor(logits)
    classes = logits.shape[-1]
    logits = reshape(logits, (-1, classes))
    targets = _as_array(targets).reshape(-1)
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: logits {logits.shape} and targets {targets.shape} disagree")
    keep = None if ignore_index is None else targets != ignore_index
    zs, e, _ = _shifted_exp2(ar, logits, -1)
    log2p = sub(zs, ar.log2(sum(e, -1, keepdims=True)))
    picked = unbuffered.apply(np.equal, targets[:, None], index_range(classes))  # one-hot rows
    loss = neg(sum(where(picked, log2p, np.float32(0)), -1))
    if label_smoothing:
        eps = np.float32(label_smoothing)
        spread = neg(sum(log2p, -1))                       # -sum_c log2 p_c
        loss = add(ar.mul(loss, np.float32(1) - eps), ar.mul(spread, ar.div(eps, float(classes))))
    count = len(targets)
    if keep is not None:
        loss = where(keep, loss, np.float32(0))
        count = int(np.count_nonzero(keep))
    return ar.div(ar.div(sum(loss), float(count)), LOG2E)


def _normalized(ar, x, axis, count, eps):
    """((x - mean) ⊘ sqrt(var + eps), mean, sum of squared deviations) over ``axis`` (kept),
    ``count`` the number of elements reduced."""
    mean = ar.div(sum(x, axis, keepdims=True), count)
    centred = sub(x, mean)
    squares = sum(ar.mul(centred, centred), axis, keepdims=True)
    var = ar.div(squares, count)
    return ar.div(centred, ar.sqrt(add(var, np.float32(eps)))), mean, squares


def _affine(ar, y, weight, bias):
    """y ⊙ weight + bias (either None: left out)."""
    if weight is not None:
        y = ar.mul(y, weight)
    if bias is not None:
        y = add(y, bias)
    return y


def layer_norm(x, weight=None, bias=None, eps=1e-5, derivative=None):
    """(x - mean) ⊘ sqrt(var + eps) over the last axis, then ⊙ weight + bias (component 'norm')."""
    ar = _arith("norm", derivative)
    x = _tensor(x)
    y, _, _ = _normalized(ar, x, -1, float(x.shape[-1]), eps)
    return _affine(ar, y, weight, bias)


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5, derivative=None):
    """Batch normalization of x (N, C, ...) per channel (axis 1), then ⊙ weight + bias
    (component 'norm').

    Training: normalized with the batch's mean and (biased) variance, the graph of
    ``layer_norm`` over the other axes; ``running_mean`` and ``running_var`` (float32
    arrays (C,), when given) move in place by ``running += momentum ⊙ (batch - running)``,
    the variance unbiased (squares ⊘ (count - 1)); nothing of this is differentiated.
    Evaluation (``training=False``): (x - running_mean) ⊘ sqrt(running_var + eps)."""
    ar = _arith("norm", derivative)
    x = _tensor(x)
    channels = x.shape[1]
    shape = (1, channels) + (1,) * (x.ndim - 2)       # a per-channel value, broadcast

    def per_channel(v):
        return None if v is None else reshape(v, shape)

    if not training:
        y = ar.div(sub(x, per_channel(running_mean)),
                   ar.sqrt(add(per_channel(running_var), np.float32(eps))))
        return _affine(ar, y, per_channel(weight), per_channel(bias))
    axes = (0, *range(2, x.ndim))
    count = size(x.shape[a] for a in axes)
    if count < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, "
                         f"got input {x.shape}")
    y, mean, squares = _normalized(ar, x, axes, float(count), eps)
    if running_mean is not None:
        for running, batch in ((running_mean, mean.data),
                               (running_var, ar.div(squares.data, float(count - 1)).data)):
            step = ar.mul(sub(batch.reshape(channels), running), np.float32(momentum))
            running[...] = add(running, step).data
    return _affine(ar, y, per_channel(weight), per_channel(bias))


def _pool(reduce, x, kernel, stride, **options):
    """``reduce`` over axis 2 of x's windows (N, C, kernel**2, H'*W'), unfold's patches (the
    window offsets in row-major order), as (N, C, H', W')."""
    x = _tensor(x)
    n, c, height, width = x.shape
    cols = reshape(unfold(x, kernel, stride), (n, c, kernel * kernel, -1))
    out = (patches.out_size(height, kernel, stride, 0), patches.out_size(width, kernel, stride, 0))
    return reshape(reduce(cols, axis=2, **options), (n, c, *out))


def max_pool2d(x, kernel_size, stride=None):
    """Maximum over kernel_size x kernel_size windows (stride: kernel_size unless given) of
    NCHW ``x``; of tied maxima the first in the window's row-major order gets the gradient."""
    return _pool(max, x, kernel_size, stride or kernel_size)


def avg_pool2d(x, kernel_size, stride=None, derivative=None):
    """Mean over kernel_size x kernel_size windows of NCHW ``x``: the window's sum ⊘ its size."""
    return _pool(mean, x, kernel_size, stride or kernel_size, derivative=derivative)


def global_avg_pool2d(x, derivative=None):
    """(N, C, H, W) -> (N, C): the sum over each channel's H x W values ⊘ H·W."""
    return mean(x, axis=(2, 3), derivative=derivative)


def gelu(x, derivative=None):
    """x ⊙ sigmoid(1.702 x) = x ⊘ (1 + exp(-1.702 x)), in every mode (component 'other')."""
    ar = _arith("other", derivative)
    return ar.div(x, add(np.float32(1), ar.exp(ar.mul(x, GELU_SIGMOID))))


def dropout_threshold(p):
    """The integer t = ceil(float32(p) * 2**24), from the bits of float32(p) (no float
    multiply): numpy's float32 sampler draws u >> 8 times 2**-24 for a raw uint32 u, so
    ``u >> 8 >= t`` keeps exactly the elements ``rng.random(dtype=float32) >= p`` keeps."""
    bits = int(np.float32(p).view(np.uint32))
    exponent, fraction = bits >> 23, bits & ((1 << 23) - 1)
    if bits >> 31 or exponent == 0xFF:
        raise ValueError(f"dropout probability must be a finite number >= 0, got {p}")
    mantissa = fraction | (1 << 23) if exponent else fraction    # p = mantissa * 2**(shift - 24)
    shift = (exponent if exponent else 1) - 126
    if shift >= 0:
        return mantissa << shift
    return (mantissa + (1 << -shift) - 1) >> -shift


def dropout(x, p, training, rng, derivative=None, threshold=None):
    """Zero each element with probability p and rescale the rest by 1 ⊘ (1 - p) (component 'other').
    The mask compares the top 24 bits of raw random uint32 with ``threshold``
    (``dropout_threshold(p)``; numpy's float sampler multiplies): the same mask as
    ``rng.random(dtype=float32) >= p`` from the same generator state."""
    if not training or p == 0:
        return _tensor(x)
    ar = _arith("other", derivative)
    if threshold is None:
        threshold = dropout_threshold(p)
    shape = np.shape(x.data if isinstance(x, Tensor) else x)
    raw = rng.integers(0, 1 << 32, size=shape, dtype=np.uint32)
    keep = (raw >> np.uint32(8)) >= np.uint32(threshold)
    scale = ar.div(np.float32(1), np.float32(1) - np.float32(p))
    return ar.mul(x, where(keep, scale, np.float32(0)))
