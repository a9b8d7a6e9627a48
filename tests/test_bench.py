"""`pafree bench` and the per-CPU choices it prints: argument parsing, the CPU's limits and
vector width, and a tiny run of its rows (no timing is checked: speed lives in benchmarks)."""
import itertools

import numba
import pytest

from pafree import bench, cli
from pafree.ops import tuning

INTEL = tuning.CpuInfo("GenuineIntel", "Xeon", frozenset({"avx2", "avx512f"}), {})
ZEN = tuning.CpuInfo("AuthenticAMD", "EPYC", frozenset({"avx2", "avx512f"}), {})
AVX2 = tuning.CpuInfo("AuthenticAMD", "Ryzen", frozenset({"avx2"}), {})


def test_parser():
    args = cli.build_parser().parse_args(["bench", "--quick", "--sizes", "64", "128",
                                          "--tasks", "digits"])
    assert (args.command, args.quick, args.sizes, args.tasks) == ("bench", True, [64, 128],
                                                                  ["digits"])
    args = cli.build_parser().parse_args(["bench"])
    assert (args.quick, args.sizes, args.elements, args.tasks) == (False, None, None, None)


@pytest.mark.parametrize("cpu,bits,limits", [
    (INTEL, 512, (2.0, 3.0)), (ZEN, 512, (1.0, 1.5)), (AVX2, 256, (None, None))])
def test_choices_per_cpu(cpu, bits, limits):
    assert tuning.vector_bits(cpu) == bits
    assert bench.gemm_limits(cpu)[:2] == limits
    assert f"{bits}-bit" in bench.describe_cpu(cpu)


def test_this_cpu_is_read():
    assert [tuning.cache_bytes(s) for s in ("48K", "2048K", "1M", "512")] == \
        [48 << 10, 2 << 20, 1 << 20, 512]
    cpu = tuning.cpu_info()
    assert tuning.VECTOR_BITS_HERE == tuning.vector_bits(cpu) in tuning.VECTOR_BITS
    if cpu.vendor != "unknown":                       # Linux: /proc/cpuinfo and /sys were read
        assert cpu.model_name != "unknown" and cpu.flags and (1, "Data") in cpu.caches


def test_tiny_rows():
    """The GEMM and elementwise rows at toy sizes (the training steps are left out)."""
    threads = len({1, numba.config.NUMBA_NUM_THREADS})
    rows = list(itertools.islice(bench.rows(True, sizes=(16,), elements=1000),
                                 threads * (2 + len(bench.elementwise_cases()))))
    well, general, _ = bench.gemm_limits(tuning.cpu_info())
    assert [row[0] for row in rows[:2 * threads:threads]] == ["GEMM 16^3 well",
                                                              "GEMM 16^3 general"]
    assert [row[4] for row in rows[:2 * threads:threads]] == [well, general]
    assert all(row[2] > 0 and row[3] > 0 for row in rows)
    assert {row[5] for row in rows[2 * threads:]} == {bench.ELEMENTWISE_TARGET}


def test_elementwise_benchmark_times_every_width(capsys):
    """benchmarks/elementwise.py --widths: each width's op gives the public op's bits (on both
    sides of PARALLEL_MIN), and a tiny run prints a ratio column per width."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    from pafree import ops
    from pafree.ops.cpu import PARALLEL_MIN
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "elementwise.py"
    spec = importlib.util.spec_from_file_location("elementwise_benchmark", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(3)
    for n in (100, PARALLEL_MIN + 5):
        a, b = rng.standard_normal((2, n), dtype=np.float32)
        for bits in tuning.VECTOR_BITS:
            np.testing.assert_array_equal(script.at_width("pad", bits)(a, b).view(np.int32),
                                          ops.pad(a, b).view(np.int32))
            np.testing.assert_array_equal(script.at_width("pasqrt", bits)(a).view(np.int32),
                                          ops.pasqrt(a).view(np.int32))
    script.main(["--n", "1000", "--repeat", "1", "--ops", "pam", "--widths"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CPU: ") and "256-bit ratio" in lines[2]
    assert len(lines[3].split()) == 5 + len(tuning.VECTOR_BITS)
