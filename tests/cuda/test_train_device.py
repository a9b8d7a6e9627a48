"""``pafree train --device cuda`` end to end on the simulator: a short run trains on the
device (parameters and optimizer state there), checkpoints host arrays, evaluates, and
resumes; its weights follow the CPU run's within float32 summation-order rounding."""
import json

import numpy as np

from pafree import cli
from pafree.ops import cuda as gpu
from pafree import config, no_grad
from pafree import run as T

TINY = ["--task", "digits", "--steps", "2", "--batch-size", "2", "--set", "d_model=4",
        "--set", "n_heads=2", "--set", "d_ff=8", "--set", "n_layers=1", "--set", "dropout=0.1"]


def weights(out):
    with np.load(out / T.CHECKPOINT) as ckpt:
        return {k: ckpt[k] for k in ckpt.files if k.startswith("model/")}


def test_pafree_train_on_the_device(tmp_path, capsys):
    assert cli.main(["train", *TINY, "--device", "cuda", "--out", str(tmp_path / "gpu"), "--json"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["steps"] == 2
    # the reported accuracy is the saved weights' accuracy, counted here on the host
    run = T.Run.from_directory(str(tmp_path / "gpu"))
    with config.mode(**run.modes), no_grad():
        logits = run.model.forward_patches(run.task.patches("test")).data
    assert final["test_accuracy"] == np.mean(logits.argmax(axis=1) == run.task.labels["test"])
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "cpu")]) == 0
    got, want = weights(tmp_path / "gpu"), weights(tmp_path / "cpu")
    lr = T.resolve_settings("digits")["hparams"]["lr"]
    assert got.keys() == want.keys()
    assert max(np.max(np.abs(got[k] - want[k])) for k in want) <= lr / 100


def test_device_run_keeps_weights_and_state_on_the_device():
    run = T.build("digits", "pa", device="cuda", d_model=4, n_heads=2, d_ff=8, n_layers=1,
                  batch_size=2)
    run.train_step(run.batch())
    assert all(gpu.is_device_array(p.data) for p in run.model.parameters())
    assert all(gpu.is_device_array(v) for k, v in run.optimizer.state.items() if "." in k)
    run.eval_step(n=2)                                   # on the host, weights moved back after
    assert all(gpu.is_device_array(p.data) for p in run.model.parameters())
