"""THE table of elementwise PA ops: name -> docstring, by arity.

Each name is a scalar function of bits.py. Everything elementwise is generated
from this one table: the CPU kernels (cpu.py), the functions of pafree.ops, the
CUDA kernels and their host functions (pafree.ops.cuda), and the CUDA backend
of the registry's kernels (pafree.autograd.registry.use_cuda). Adding an op is
one bits.py function plus one line here.
"""
UNARY = {
    "paexp2": "2**floor(x) * (1 + frac(x)); 0 below -126, inf from 128.",
    "palog2": "E + M for x = 2**E * (1 + M), rounded to nearest float32 (exact for x in [1/4, 4));\n"
              "-inf at 0, NaN below.",
    "pasqrt": "paexp2(palog2(x) ⊘ 2) on the unrounded log: the (bits + ONE) >> 1 trick.",
    "paexp": "paexp2(log2(e) ⊙ x); its error grows with |x| (see docs/arithmetic.md).",
    "palog": "palog2(x) ⊘ log2(e).",
    "paexp2_slope": "Exact d paexp2(x)/dx = 2**floor(x).",
    "palog2_slope": "Exact d palog2(x)/dx = 2**-E.",
    "pasqrt_slope": "Exact d pasqrt(x)/dx = 2**(-ceil(E/2) - 1).",
}
BINARY = {
    "pam": "Piecewise affine multiplication A ⊙ B (relative error in [-1/9, 0]).",
    "pad": "Piecewise affine division A ⊘ B (relative error in [0, 1/8]).",
    "papow": "paexp2(p ⊙ palog2(x)).",
    "pam_slope": "Exact d(A ⊙ B)/dA = sign(B) 2**(E_B + k), k the mantissa carry.",
    "pad_slope_a": "Exact d(A ⊘ B)/dA, k the mantissa borrow.",
    "pad_slope_b": "Exact d(A ⊘ B)/dB, k the mantissa borrow.",
}


def generate(backend, namespace):
    """Put one function per op into ``namespace`` (a module's globals()).

    Each calls ``backend.unary(name, x)`` or ``backend.binary(name, a, b)``,
    looked up at the call, so wrapping them later (the audit's counting guard
    wraps cpu.unary and cpu.binary) reaches every generated function.
    """
    def unary_op(name):
        def op(x):
            return backend.unary(name, x)
        return op

    def binary_op(name):
        def op(a, b):
            return backend.binary(name, a, b)
        return op

    for table, make in ((UNARY, unary_op), (BINARY, binary_op)):
        for name, doc in table.items():
            fn = make(name)
            fn.__name__ = fn.__qualname__ = name
            fn.__doc__ = doc
            fn.__module__ = namespace["__name__"]
            namespace[name] = fn
