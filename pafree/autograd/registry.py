"""The registry: every kernel the autograd and the optimizer call, each declared once.

A ``Kernel`` is backend dispatch only: callable on raw arrays, it runs the
implementation registered for the arrays' backend ("cpu" for numpy arrays,
"cuda" for device arrays; ``backend_of``). Each kernel names the backends it
claims; ``use_cuda()`` registers pafree.ops.cuda's host functions against the
kernel objects (on the first device call at the latest) and ``missing_backends``
lists any claim not met. A ``Primitive`` is a kernel plus its vjp rules, in one
block below its declaration.

A vjp rule ``rule(g, ans, *inputs, **params)`` gets the output gradient, the
forward answer and the forward inputs (raw arrays) and returns the gradient for
one input (the tape unbroadcasts it); a primitive has one rule per input, and
only the rules of inputs that need a gradient run. (A joint rule, for work
shared between inputs, returns them all; the tape keeps those that are needed.)
``vjp`` maps the derivative kind recorded on the node ("exact" or "approx",
SPEC section 4) to those rules. Rules use only registered kernels, so a PA rule
never multiplies: applying an exact slope (a signed power of two) is itself an
exact PAM. pasqrt is a primitive (the exact (bits + ONE) >> 1 of pafree.ops):
its exact rule is its own slope, its approx rule g ⊘ (2 ⊙ pasqrt(x)).

Kernels (no derivative: never recorded): the exact slopes, zeros/copies,
scatter_add, first_max, integer_shift, nonnegative, broadcast_to, split, fold, and the
optimizer's fused AdamW updates (PA on cpu and cuda; the float baseline's on
cpu only). Primitives, in three families:
- PA primitives (pam, pad, paexp2, palog2, pasqrt, pam_matmul): distinct exact
  and approx rules; paexp and palog: an approx rule only (their exact derivative
  is the graph's).
- float baseline primitives (fmul, fdiv, fexp2, flog2, fsqrt, fmatmul): the
  multiplying baseline of pafree.ops.standard, one rule (the true derivative),
  cpu only.
- shared primitives (add, sub, neg, sum, max, relu, where, shape ops, unfold):
  float add/compare/copy only, identical in every mode, one rule.
"""
import numpy as np

from .. import ops
from ..ops import adamw, bits, elementwise, patches, standard, unbuffered
from ..ops.cpu import is_device_array, to_host  # to_host: for Tensor.to and the optimizer

KERNELS = {}        # name -> Kernel: everything dispatched (the primitives included)
PRIMITIVES = {}     # name -> Primitive: the differentiable ones
KINDS = ("exact", "approx")     # the derivative kinds (SPEC section 4)
BACKENDS = ("cpu", "cuda")


def _mT(x):
    """Swap the last two axes (a view)."""
    return np.swapaxes(x, -1, -2)


def backend_of(args):
    """"cuda" if any argument is a device array, else "cpu"."""
    for a in args:
        if not isinstance(a, np.ndarray) and is_device_array(a):
            return "cuda"
    return "cpu"


class Kernel:
    """Backend dispatch: one implementation per backend, picked by the arguments' array type.

    ``backends`` are the backends this kernel claims; "cpu" is given here, the
    others are registered against the object (``register``).
    """

    def __init__(self, name, cpu, backends=BACKENDS):
        if name in KERNELS:
            raise ValueError(f"kernel {name!r} is already registered")
        self.name = name
        self.backends = tuple(backends)
        self.kernels = {"cpu": cpu}
        KERNELS[name] = self

    def register(self, backend, fn):
        if backend not in self.backends:
            raise ValueError(f"{self!r} does not claim backend {backend!r} (claims {self.backends})")
        self.kernels[backend] = fn

    def __call__(self, *args, **params):
        backend = backend_of(args)
        try:
            fn = self.kernels[backend]
        except KeyError:
            fn = self._load(backend)
        return fn(*args, **params)

    def _load(self, backend):
        """The implementation for ``backend``, registering the CUDA backend on first use."""
        if backend == "cuda" and backend in self.backends:
            use_cuda()
        if backend not in self.kernels:
            raise NotImplementedError(f"{self.name} has no {backend} kernel (it claims {self.backends})")
        return self.kernels[backend]

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Primitive(Kernel):
    """A kernel plus its vjp rules, one per input, for each derivative kind."""

    def __init__(self, name, cpu, elementwise=False, backends=BACKENDS):
        super().__init__(name, cpu, backends)
        self.vjp = {}
        self.elementwise = elementwise   # inputs broadcast against each other
        PRIMITIVES[name] = self

    def rule(self, *per_input, kinds=KINDS):
        """Register the vjp rules (one per input) for each derivative kind in ``kinds``."""
        for kind in kinds:
            self.vjp[kind] = per_input
        return self

    def joint_rule(self, fn, kinds=KINDS):
        """Register ``fn(g, ans, *inputs, **params) -> gradients of all inputs``."""
        for kind in kinds:
            self.vjp[kind] = fn
        return self


def missing_backends():
    """(kernel name, backend) for every claimed backend with no implementation registered."""
    return [(k.name, b) for k in KERNELS.values() for b in k.backends if b not in k.kernels]


# --- kernels (no derivative: never recorded) --------------------------------------
pam_slope = Kernel("pam_slope", ops.pam_slope)
pad_slope_a = Kernel("pad_slope_a", ops.pad_slope_a)
pad_slope_b = Kernel("pad_slope_b", ops.pad_slope_b)
paexp2_slope = Kernel("paexp2_slope", ops.paexp2_slope)
palog2_slope = Kernel("palog2_slope", ops.palog2_slope)
pasqrt_slope = Kernel("pasqrt_slope", ops.pasqrt_slope)
zeros = Kernel("zeros", lambda shape, like: np.zeros(shape, like.dtype))
ones_like = Kernel("ones_like", lambda x: np.ones(x.shape, np.float32))
copy = Kernel("copy", lambda x: np.array(x, dtype=np.float32))
adamw_pa = Kernel("adamw_pa", adamw.adamw_pa)                         # the optimizer's fused
adamw_standard = Kernel("adamw_standard", standard.adamw, ("cpu",))   # updates (in place)


scatter_add = Kernel("scatter_add", unbuffered.scatter_add)
first_max = Kernel("first_max", unbuffered.first_max)
integer_shift = Kernel("integer_shift", unbuffered.integer_shift)
nonnegative = Kernel("nonnegative", lambda x: x >= 0)
broadcast_to = Kernel("broadcast_to", np.broadcast_to)
split = Kernel("split", lambda x, sizes, axis: np.split(x, np.cumsum(sizes)[:-1], axis=axis))
fold = Kernel("fold", patches.fold)

# --- shared primitives: float add / compare / copy, same in every mode ----------
# (pafree.ops.unbuffered: numpy's buffered iterator multiplies to plan its buffers)
add = Primitive("add", lambda a, b: unbuffered.apply(np.add, a, b), elementwise=True)
sub = Primitive("sub", lambda a, b: unbuffered.apply(np.subtract, a, b), elementwise=True)
neg = Primitive("neg", np.negative)
where = Primitive("where", lambda a, b, cond: unbuffered.where(cond, a, b), elementwise=True)
sum_ = Primitive("sum", unbuffered.reduce_sum)
max_ = Primitive("max", unbuffered.reduce_max)
relu = Primitive("relu", lambda x: np.maximum(x, np.float32(0)))
reshape = Primitive("reshape", lambda x, shape: np.reshape(x, shape))
transpose = Primitive("transpose", lambda x, axes: np.transpose(x, axes))
getitem = Primitive("getitem", lambda x, idx: x[idx])
concatenate = Primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis))
unfold = Primitive("unfold", patches.unfold)     # conv patches (im2col)


def _keepdims_shape(shape, axis):
    """``shape`` with the axes a reduction over ``axis`` removed put back as size 1."""
    if axis is None:
        return (1,) * len(shape)
    axes = {a % len(shape) for a in ((axis,) if np.ndim(axis) == 0 else axis)}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _sum_vjp(g, ans, x, axis, keepdims):
    return broadcast_to(reshape(g, _keepdims_shape(x.shape, axis)), x.shape)


def _max_vjp(g, ans, x, axis, keepdims):
    """The gradient goes to the first maximum along ``axis``."""
    return where(reshape(g, _keepdims_shape(x.shape, axis)), np.float32(0), first_max(x, axis))


def _getitem_vjp(g, ans, x, idx):
    out = zeros(x.shape, g)
    scatter_add(out, idx, g)
    return out


def _concatenate_vjp(g, ans, *xs, axis):
    return split(g, [tuple(x.shape)[axis] for x in xs], axis)


add.rule(lambda g, ans, a, b: g,
         lambda g, ans, a, b: g)
sub.rule(lambda g, ans, a, b: g,
         lambda g, ans, a, b: neg(g))
neg.rule(lambda g, ans, x: neg(g))
where.rule(lambda g, ans, a, b, cond: where(g, np.float32(0), cond),
           lambda g, ans, a, b, cond: where(np.float32(0), g, cond))
sum_.rule(_sum_vjp)
max_.rule(_max_vjp)
relu.rule(lambda g, ans, x: where(g, np.float32(0), nonnegative(x)))     # slope 1 at 0: the right segment
reshape.rule(lambda g, ans, x, shape: reshape(g, x.shape))
# the inverse permutation; np.argsort's SIMD sort calls log2 for its depth limit
transpose.rule(lambda g, ans, x, axes: transpose(
    g, None if axes is None else tuple(sorted(range(len(axes)), key=axes.__getitem__))))
getitem.rule(_getitem_vjp)
concatenate.joint_rule(_concatenate_vjp)
unfold.rule(lambda g, ans, x, kernel, stride, padding: fold(g, x.shape, kernel, stride, padding))

# --- the multiplying baseline (pafree.ops.standard) ------------------------------
HOST = ("cpu",)     # the float baseline runs on the host only
fmul = Primitive("fmul", standard.mul, elementwise=True, backends=HOST)
fdiv = Primitive("fdiv", standard.div, elementwise=True, backends=HOST)
fexp2 = Primitive("fexp2", standard.exp2, backends=HOST)
flog2 = Primitive("flog2", standard.log2, backends=HOST)
fsqrt = Primitive("fsqrt", standard.sqrt, backends=HOST)
fmatmul = Primitive("fmatmul", standard.matmul, backends=HOST)

fmul.rule(lambda g, ans, a, b: fmul(g, b),
          lambda g, ans, a, b: fmul(g, a))
fdiv.rule(lambda g, ans, a, b: fdiv(g, b),
          lambda g, ans, a, b: neg(fdiv(fmul(g, ans), b)))
fexp2.rule(lambda g, ans, x: fmul(g, fmul(ans, standard.LN2)))
flog2.rule(lambda g, ans, x: fdiv(g, fmul(x, standard.LN2)))
fsqrt.rule(lambda g, ans, x: fdiv(g, fmul(ans, np.float32(2))))
fmatmul.rule(lambda g, ans, a, b: fmatmul(g, _mT(b)),
             lambda g, ans, a, b: fmatmul(_mT(a), g))

# --- the piecewise affine primitives (pafree.ops) --------------------------------
LN2 = np.int32(bits.LN2).view(np.float32)      # float32(ln 2), the constant of the approx rules
TWO = np.float32(2)

pam = Primitive("pam", ops.pam, elementwise=True)
pam.rule(lambda g, ans, a, b: pam(g, b),
         lambda g, ans, a, b: pam(g, a), kinds=["approx"])
pam.rule(lambda g, ans, a, b: pam(g, pam_slope(a, b)),
         lambda g, ans, a, b: pam(g, pam_slope(b, a)), kinds=["exact"])

pad = Primitive("pad", ops.pad, elementwise=True)
pad.rule(lambda g, ans, a, b: pad(g, b),
         lambda g, ans, a, b: neg(pad(pam(g, ans), b)), kinds=["approx"])
pad.rule(lambda g, ans, a, b: pam(g, pad_slope_a(a, b)),
         lambda g, ans, a, b: pam(g, pad_slope_b(a, b)), kinds=["exact"])

paexp2 = Primitive("paexp2", ops.paexp2)
paexp2.rule(lambda g, ans, x: pam(g, pam(ans, LN2)), kinds=["approx"])
paexp2.rule(lambda g, ans, x: pam(g, paexp2_slope(x)), kinds=["exact"])

palog2 = Primitive("palog2", ops.palog2)
palog2.rule(lambda g, ans, x: pad(g, pam(x, LN2)), kinds=["approx"])
palog2.rule(lambda g, ans, x: pam(g, palog2_slope(x)), kinds=["exact"])

pasqrt = Primitive("pasqrt", ops.pasqrt)
pasqrt.rule(lambda g, ans, x: pad(g, pam(ans, TWO)), kinds=["approx"])
pasqrt.rule(lambda g, ans, x: pam(g, pasqrt_slope(x)), kinds=["exact"])

# paexp and palog with approx derivatives: one node each, whose rule is the analytic derivative
# evaluated with PA, as the authors' pa_exp/pa_log backward (SPEC section 4). Chaining the approx
# rules of paexp2/palog2 and the PAM/PAD by log2 e would carry the constant ln 2 ⊙ log2 e ≈ 0.91.
# Exact derivatives go through that graph instead (pafree.functional), so no exact rule here.
paexp = Primitive("paexp", ops.paexp)
paexp.rule(lambda g, ans, x: pam(g, ans), kinds=["approx"])

palog = Primitive("palog", ops.palog)
palog.rule(lambda g, ans, x: pad(g, x), kinds=["approx"])


# dA[i,k] = sum_j g[i,j] ⊙ slope(a[i,k], b[k,j]), and dB likewise, in one pass: the exact
# slope depends on both operands (the mantissa carry), so these are not plain GEMMs of g
pam_matmul_exact_grads = Kernel("pam_matmul_exact_grads", ops.pam_matmul_exact_grads)
pam_matmul = Primitive("pam_matmul", ops.pam_matmul)
pam_matmul.rule(lambda g, ans, a, b: pam_matmul(g, b, transpose_b=True),
                lambda g, ans, a, b: pam_matmul(a, g, transpose_a=True), kinds=["approx"])
pam_matmul.joint_rule(lambda g, ans, a, b: pam_matmul_exact_grads(a, b, g),
                      kinds=["exact"])


def use_cuda():
    """Register pafree.ops.cuda's host functions as the "cuda" backend of the kernels (imports
    numba.cuda only when called; ``Kernel`` calls it on the first device array it meets)."""
    from ..ops import cuda
    table = {KERNELS[name]: getattr(cuda, name)          # the elementwise PA ops, by the one
             for name in (*elementwise.UNARY, *elementwise.BINARY) if name in KERNELS}  # table
    table.update({
        pam_matmul: cuda.pam_matmul, pam_matmul_exact_grads: cuda.pam_matmul_exact_grads,
        add: cuda.add, sub: cuda.sub, neg: cuda.neg, relu: cuda.relu, where: cuda.where,
        nonnegative: cuda.nonnegative, sum_: cuda.reduce_sum, max_: cuda.reduce_max,
        first_max: cuda.first_max, integer_shift: cuda.integer_shift,
        zeros: cuda.zeros, ones_like: cuda.ones_like, copy: cuda.copy, reshape: cuda.reshape,
        transpose: cuda.transpose, broadcast_to: cuda.broadcast_to, getitem: cuda.getitem,
        scatter_add: cuda.scatter_add, split: cuda.split, concatenate: cuda.concatenate,
        unfold: cuda.unfold, fold: cuda.fold,
        adamw_pa: cuda.adamw_pa,
    })
    for kernel, fn in table.items():
        kernel.register("cuda", fn)
