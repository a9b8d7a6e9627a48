"""``pafree train --device cuda`` refuses clearly what it cannot run, before writing anything
(the device run itself is tested on the simulator: tests/cuda/test_train_device.py)."""
from importlib.util import find_spec

import pytest

from pafree import cli


def test_device_cuda_needs_every_component_pa(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--device", "cuda", "--mode", "pa-matmul", "--out", str(out)]) == 1
    assert "PA arithmetic only" in capsys.readouterr().err
    assert not out.exists()


def test_device_cuda_without_a_gpu_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    if find_spec("numba_cuda") is not None:
        from numba import cuda
        if cuda.is_available():
            pytest.skip("a GPU is present: --device cuda runs")
        expected = "no CUDA GPU found"
    else:
        expected = "pip install -e .[cuda]"
    out = tmp_path / "run"
    assert cli.main(["train", "--device", "cuda", "--steps", "1", "--out", str(out)]) == 1
    assert expected in capsys.readouterr().err
    assert not out.exists()
