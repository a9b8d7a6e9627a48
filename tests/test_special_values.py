"""SPEC section 3, one test per row: the special values of PAM, PAD, palog2 and paexp2.

Expected results come from the rules of the table (sign = sign(a) xor sign(b),
NaN is the canonical 0x7FC00000), never from the implementation.
"""
import itertools

import numpy as np
import pytest

from pafree import ops

QNAN = 0x7FC00000
NANS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF], np.uint32).view(np.float32)
ZEROS = np.float32([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38])  # incl. subnormals
INFS = np.float32([np.inf, -np.inf])
NONZERO = np.float32([1.0, -1.0, 1.5, -3.25, 1.1754944e-38, -3.4028235e38, 7e12])
ALL = np.concatenate([ZEROS, INFS, NONZERO])


def bits(x):
    return np.asarray(x, np.float32).view(np.int32)


def negative(x):
    return bool(bits(x) < 0)


def pairs(xs, ys):
    a, b = zip(*itertools.product(xs, ys))
    return np.float32(a), np.float32(b)


def assert_signed(result, a, b, magnitude):
    """result == (sign(a) xor sign(b)) * magnitude, bit for bit (signed zeros included)."""
    expected = np.where(np.signbit(a) ^ np.signbit(b), -magnitude, magnitude).astype(np.float32)
    np.testing.assert_array_equal(bits(result), bits(expected))


@pytest.mark.parametrize("op", [ops.pam, ops.pad])
def test_nan_in_either_operand_gives_nan(op):
    a, b = pairs(NANS, np.concatenate([ALL, NANS]))
    assert np.all(bits(op(a, b)) == QNAN) and np.all(bits(op(b, a)) == QNAN)


def test_inf_times_zero_zero_over_zero_inf_over_inf_give_nan():
    a, b = pairs(INFS, ZEROS)
    assert np.all(bits(ops.pam(a, b)) == QNAN) and np.all(bits(ops.pam(b, a)) == QNAN)
    a, b = pairs(ZEROS, ZEROS)
    assert np.all(bits(ops.pad(a, b)) == QNAN)
    a, b = pairs(INFS, INFS)
    assert np.all(bits(ops.pad(a, b)) == QNAN)


def test_inf_times_nonzero_and_nonzero_over_zero_give_signed_inf():
    a, b = pairs(INFS, np.concatenate([INFS, NONZERO]))
    assert_signed(ops.pam(a, b), a, b, np.inf)
    assert_signed(ops.pam(b, a), a, b, np.inf)
    a, b = pairs(np.concatenate([INFS, NONZERO]), ZEROS)
    assert_signed(ops.pad(a, b), a, b, np.inf)


def test_zero_or_subnormal_operand_gives_signed_zero():
    a, b = pairs(ZEROS, np.concatenate([ZEROS, NONZERO]))
    assert_signed(ops.pam(a, b), a, b, 0.0)
    assert_signed(ops.pam(b, a), a, b, 0.0)
    a, b = pairs(ZEROS, np.concatenate([INFS, NONZERO]))          # zero/subnormal numerator
    assert_signed(ops.pad(a, b), a, b, 0.0)


def test_underflow_gives_signed_zero():
    a = np.float32([2.0 ** -100, -1e-38, 3e-20, -2.0 ** -126])
    b = np.float32([2.0 ** -30, 0.5, -1e-19, 0.75])
    assert_signed(ops.pam(a, b), a, b, 0.0)
    c = np.float32([1e-30, -2.0 ** -120, 1.5e-38])
    d = np.float32([1e10, 2.0 ** 10, -1.5])
    assert_signed(ops.pad(c, d), c, d, 0.0)


def test_overflow_gives_signed_inf():
    a = np.float32([1e30, -2.0 ** 100, 3e38, -1.5])
    b = np.float32([1e10, 2.0 ** 30, -1.5, 3.4e38])
    assert_signed(ops.pam(a, b), a, b, np.inf)
    c = np.float32([1e30, -2.0 ** 100, 3e38])
    d = np.float32([1e-10, 2.0 ** -30, -0.75])
    assert_signed(ops.pad(c, d), c, d, np.inf)


def test_palog2_special_values():
    np.testing.assert_array_equal(ops.palog2(ZEROS), np.float32(-np.inf))   # either sign
    assert np.all(bits(ops.palog2(np.float32([-1.0, -3e-38, -np.inf, *NANS]))) == QNAN)
    assert ops.palog2(np.float32(np.inf)) == np.inf


def test_paexp2_special_values():
    np.testing.assert_array_equal(ops.paexp2(np.float32([128.0, 200.0, 3e38, np.inf])), np.inf)
    np.testing.assert_array_equal(
        ops.paexp2(np.float32([-126.00002, -127.0, -1e30, -np.inf])), np.float32(0.0))
    assert ops.paexp2(np.float32(-126.0)) == np.float32(2.0 ** -126)           # last normal
    assert ops.paexp2(np.float32(127.99999)) < np.inf
    assert np.all(bits(ops.paexp2(NANS)) == QNAN)
