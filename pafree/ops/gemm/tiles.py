"""Register tiles shared by the PAM GEMMs: stack accumulators, where a tile's outputs
live, and the choice of loop per tile.

A tile is rows x cols float32 accumulators in a stack array that LLVM keeps
in vector registers. Its outputs live somewhere in a flat float32 array (a
``Place``); a tile whose place is not whole contiguous rows (a matrix edge,
a transposed output) accumulates in a scratch tile that is copied in and out,
so no shape needs padding by the caller.
"""
from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .. import bits
from ..jit import set_vector_width

# The loops a tile can take, chosen per tile and reduction chunk from magnitude bounds.
FAST = 0        # every term is a normal number: integer adds and a float add
MASKED = 1      # terms may be zero or flush (skipped), none overflows
EXACT = 2       # anything (inf, NaN, overflow): the scalar bits.pam

# Where a tile's outputs are: values[base + r * row_step + c * col_step].
Place = namedtuple("Place", "values base row_step col_step")
# A packed operand: its planes and their (min, max) magnitude bounds per reduction chunk.
Panels = namedtuple("Panels", "planes bound")


@intrinsic
def stack_tile(typingctx, rows, cols, dtype, vector_bits):
    """Pointer to rows * cols (literal ints) values of dtype on the stack: a register
    tile, which LLVM keeps in vector registers. Use it in the function that fills it.

    Also sets that function's LLVM attribute prefer-vector-width to vector_bits (a
    literal int): the loop vectoriser then uses vectors that wide. LLVM's own choice
    on Intel AVX-512 cores is 256 bits, which gives a 4 x 64 tile 32 ymm
    accumulators instead of 16 zmm: spills and half the terms per instruction
    (docs/gemm.md, "Per CPU"). The bits never depend on it."""
    literal = (rows, cols, vector_bits)
    if not all(isinstance(x, types.IntegerLiteral) for x in literal):
        return None
    size = rows.literal_value * cols.literal_value
    element = dtype.dtype

    def codegen(context, builder, sig, args):
        set_vector_width(builder.function, vector_bits.literal_value)
        return cgutils.alloca_once(builder, context.get_value_type(element), size=size)
    return types.CPointer(element)(rows, cols, dtype, vector_bits), codegen


@intrinsic
def as_float(typingctx, x):
    """Reinterpret int32 bits as float32 (no conversion)."""
    if x != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


# Numba's disk cache keys a closure on its free variables, pickled; the kernels of the
# factories (gemm_kernels, derivative_kernels) pickle their local tile loops by value, and
# with them these intrinsics, whose pickled id is a fresh uuid per process unless set: a
# fixed id keeps the key, and so the cached machine code, the same in every process.
for _name, _intrinsic in (("stack_tile", stack_tile), ("as_float", as_float)):
    _intrinsic._set_uuid(f"{__name__}.{_name}")


def tile_machinery(rows, cols):
    """(load, store, open_tile, close_tile) for rows x cols tiles."""
    @register_jitable
    def load(acc, dst, first):
        """acc = the tile at dst (whole rows), or zeros for the first chunk of the sum."""
        for r in range(rows):
            at = dst.base + r * dst.row_step
            row = dst.values[at:at + cols]
            for c in range(cols):
                acc[r, c] = 0.0 if first else row[c]

    @register_jitable
    def store(acc, dst):
        for r in range(rows):
            at = dst.base + r * dst.row_step
            row = dst.values[at:at + cols]
            for c in range(cols):
                row[c] = acc[r, c]

    @register_jitable
    def whole(out, ni, nj):
        return ni == rows and nj == cols and out.col_step == 1

    @register_jitable
    def open_tile(out, ni, nj, scratch, first):
        """Where the ni x nj outputs at ``out`` accumulate: out itself when they are whole
        contiguous rows, else the flat scratch (holding their values unless first)."""
        if whole(out, ni, nj):
            return out
        if not first:
            for r in range(ni):
                for c in range(nj):
                    scratch[r * cols + c] = out.values[out.base + r * out.row_step
                                                       + c * out.col_step]
        return Place(scratch, 0, cols, 1)

    @register_jitable
    def close_tile(out, ni, nj, scratch):
        """Copy a tile that open_tile put in scratch back to its outputs."""
        if not whole(out, ni, nj):
            for r in range(ni):
                for c in range(nj):
                    out.values[out.base + r * out.row_step + c * out.col_step] = \
                        scratch[r * cols + c]

    return load, store, open_tile, close_tile


@register_jitable
def tile_path(a_lo, a_hi, b_lo, b_hi):
    """FAST, MASKED or EXACT for products A ⊙ B whose magnitudes lie in these bounds."""
    if not bits.pam_surely_finite(a_hi, b_hi):
        return EXACT
    if bits.pam_surely_normal(a_lo, b_lo):
        return FAST
    return MASKED
