"""pafree.run (pafree train, pafree predict): every task trains in every mode, resume is
bit-identical, bad input and faults are reported, checkpoints are atomic."""
import json
import os

import numpy as np
import pytest

from pafree import cli
from pafree import config, no_grad
from pafree import run as T
from pafree.run import Run

TINY = {"digits": dict(d_model=16, n_heads=2, n_layers=1, d_ff=32),
        "numbers": dict(d_model=16, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=32),
        "addition": dict(d_model=16, n_heads=2, n_layers=1, d_ff=32)}


@pytest.mark.parametrize("mode", T.MODES)
@pytest.mark.parametrize("task", sorted(TINY))
def test_loss_falls_in_every_mode(task, mode):
    run = T.build(task, mode, steps=40, batch_size=32, lr=3e-3, **TINY[task])
    losses = [run.train_step(run.batch()) for _ in range(40)]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert np.isfinite(losses).all()
    assert last < first - 0.1, (first, last)


def read_checkpoint(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def accuracy_by_hand(run_dir):
    """Test accuracy of a run directory's checkpoint, computed here: argmax of the logits
    against the labels (not through the task's evaluate)."""
    run = Run.from_directory(str(run_dir))
    with config.mode(**run.modes), no_grad():
        logits = run.model.forward_patches(run.task.patches("test")).data
    return float(np.mean(logits.argmax(axis=1) == run.task.labels["test"]))


def tiny_digits(out, **kw):
    settings = dict(steps=12, batch_size=16, **TINY["digits"]) | kw
    return T.train("digits", "pa", seed=3, out=str(out), progress=False, eval_limit=20,
                   **settings)


def test_resume_is_bit_identical(tmp_path):
    """Dropout, data order and augmentation are resumable: a paused and resumed run
    ends with exactly the parameters and optimizer state of an uninterrupted one."""
    straight = tiny_digits(tmp_path / "straight")
    paused = tiny_digits(tmp_path / "resumed", stop_at=5)
    assert paused["paused"] and paused["steps"] == 5
    resumed = T.train(out=str(tmp_path / "resumed"), resume=True, progress=False, eval_limit=20)
    a = read_checkpoint(tmp_path / "straight" / T.CHECKPOINT)
    b = read_checkpoint(tmp_path / "resumed" / T.CHECKPOINT)
    assert sorted(a) == sorted(b) and int(a["step"]) == 12
    assert any(k.startswith("optim/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    with open(tmp_path / "straight" / "metrics.jsonl") as f1, \
            open(tmp_path / "resumed" / "metrics.jsonl") as f2:
        losses = [[r["loss"] for r in map(json.loads, f) if "loss" in r] for f in (f1, f2)]
    assert losses[0] == losses[1] and len(losses[0]) == 12


def test_run_directory_contents(tmp_path):
    final = tiny_digits(tmp_path)
    assert set(os.listdir(tmp_path)) == {"config.json", "metrics.jsonl", "curves.png",
                                         T.CHECKPOINT}
    settings = json.load(open(tmp_path / "config.json"))
    assert settings["components"]["matmul"] == "pa-approx"
    assert settings["components"]["loss"] == "pa-exact" and settings["components"]["optim"] == "pa"
    assert settings["hparams"]["d_model"] == 16
    assert final["test_accuracy"] == accuracy_by_hand(tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        tiny_digits(tmp_path)                      # never overwrites a run


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from pafree.tasks.digits import DigitsTask
    clean = DigitsTask.train_batch

    def poisoned(self, step, batch_size, seed):
        batch = clean(self, step, batch_size, seed)
        if step == 7:
            batch.patches[0, 0, 0] = np.nan
        return batch

    monkeypatch.setattr(DigitsTask, "train_batch", poisoned)
    with pytest.raises(T.NonFiniteLoss) as err:
        tiny_digits(tmp_path, steps=10)            # evaluates and checkpoints every step
    assert str(err.value) == (f"training stopped: loss is nan at step 8; the last checkpoint "
                              f"({tmp_path / T.CHECKPOINT}, step 7) is left as it was")
    state = read_checkpoint(tmp_path / T.CHECKPOINT)
    assert int(state["step"]) == 7
    assert all(np.isfinite(v).all() for k, v in state.items() if k.startswith("model/"))
    Run.from_directory(str(tmp_path))             # still loads


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    run = T.build("digits", "standard", **TINY["digits"])
    path = str(tmp_path / "ckpt.npz")
    run.save(path)
    before = read_checkpoint(path)
    run.train_step(run.batch())

    def crash(file, **arrays):
        file.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        run.save(path)
    after = read_checkpoint(path)
    assert int(after["step"]) == 0
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="imagenet"), "valid tasks: addition, cifar10, dates, digits, digits-cnn, numbers"),
    (dict(mode="pa-everything"), "valid modes: standard, pa-matmul, pa"),
    (dict(matmul="pa-fast"), "choose from"),
    (dict(optimizer="sgd"), "choose from"),
    (dict(d_modle=32), "valid: .*d_model"),
])
def test_bad_settings_list_the_valid_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        T.resolve_settings(**kwargs)


def test_cli_default_is_the_digits_vit_fully_piecewise_affine():
    args = cli.build_parser().parse_args(["train"])
    assert (args.task, args.mode, args.optimizer) == ("digits", "pa", None)
    settings = T.resolve_settings(args.task, args.mode)
    assert set(settings["components"].values()) == {"pa-approx", "pa-exact", "pa"}


def test_cli_rejects_unknown_values(capsys):
    tasks = "'addition', 'cifar10', 'dates', 'digits', 'digits-cnn', 'numbers'"
    for argv, valid in [(["train", "--task", "cifar"], tasks),
                        (["train", "--mode", "fast"], "'standard', 'pa-matmul', 'pa'"),
                        (["train", "--softmax", "exact"], "'standard', 'pa-exact', 'pa-approx'")]:
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert valid in capsys.readouterr().err
    assert cli.main(["train", "--set", "d_modle=3", "--out", "unused"]) == 1
    assert "valid:" in capsys.readouterr().err


def test_cli_train_json_and_predict_digits(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--task", "digits", "--mode", "pa-matmul", "--steps", "4", "--batch-size",
            "16", "--out", out, "--json"] + [f"--set={k}={v}" for k, v in TINY["digits"].items()]
    assert cli.main(argv) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["task"] == "digits" and final["mode"] == "pa-matmul" and final["steps"] == 4
    assert final["test_accuracy"] == accuracy_by_hand(out)
    assert cli.main(["predict", out, "0", "359"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("test image 0: predicted ") and len(lines) == 2
    assert cli.main(["predict", out, "360"]) == 1
    assert "0..359" in capsys.readouterr().err


def test_predict_numbers_and_addition(tmp_path):
    numbers = str(tmp_path / "numbers")
    T.train("numbers", "standard", out=numbers, progress=False, steps=2, batch_size=8,
            **TINY["numbers"])
    run = Run.from_directory(numbers)
    [line] = run.answer(["vierhundertelf"])
    assert line.startswith("vierhundertelf -> ")
    with pytest.raises(ValueError, match="vierhundertzwölfx"):
        run.answer(["vierhundertzwölfx"])
    addition = str(tmp_path / "addition")
    T.train("addition", "standard", out=addition, progress=False, steps=2, batch_size=8,
            eval_digits=5, **TINY["addition"])
    lines = Run.from_directory(addition).answer(["12+345"])
    assert lines[0].startswith("12+345 = ") and lines[0].endswith("(true 357)")
    with pytest.raises(ValueError, match="12-3"):
        Run.from_directory(addition).answer(["12-3"])
