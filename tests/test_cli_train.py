"""``pafree train`` / ``pafree predict`` as a user meets them, driven as real commands in a
subprocess: a real SIGINT mid-run and a resume that reaches the parameters of an
uninterrupted run bit for bit; a second signal; broken checkpoint and config files; bad
settings; ``--compare``; progress lines on a pipe."""
import json
import os
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest

from pafree import cli
from pafree.run import CHECKPOINT, NonFiniteLoss, train
from pafree.run.settings import check_hparams, resolve_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--batch-size", "16", "--set", "d_model=16", "--set", "n_heads=2", "--set", "n_layers=1",
        "--set", "d_ff=32"]
TINY_KW = dict(batch_size=16, d_model=16, n_heads=2, n_layers=1, d_ff=32)


def command(*args):
    return [sys.executable, "-m", "pafree.cli", *args]


def env():
    return {**os.environ, "PYTHONPATH": ROOT, "NUMBA_NUM_THREADS": "1"}


def pafree(*args):
    """Run ``pafree ARGS`` to the end: (exit status, stdout, stderr)."""
    done = subprocess.run(command(*args), capture_output=True, text=True, env=env(), timeout=300)
    return done.returncode, done.stdout, done.stderr


def start(*args):
    return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())


def wait_for_line(proc, prefix):
    """Lines of the child's stderr up to and including the first starting with ``prefix``."""
    lines = []
    while not (lines and lines[-1].startswith(prefix)):
        line = proc.stderr.readline()
        assert line, f"the run ended before {prefix!r}: {lines}"
        lines.append(line)
    return lines


def arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [row["loss"] for row in map(json.loads, f) if "loss" in row]


# --- stopping and resuming ----------------------------------------------------------------

def test_sigint_finishes_the_step_and_resume_is_bit_identical(tmp_path):
    out = str(tmp_path / "interrupted")
    proc = start("train", "--steps", "199", *TINY, "--out", out)     # logs every step
    before = wait_for_line(proc, "step 5/199")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = before + err.splitlines(keepends=True)
    *progress, last = [line.rstrip("\n") for line in lines]
    assert "Traceback" not in err and "\r" not in "".join(lines)
    # on a pipe: one line per logged step, in order
    shown = [line.split()[1] for line in progress]
    assert shown == [f"{k}/199" for k in range(1, len(progress) + 1)]
    step = int(arrays(os.path.join(out, CHECKPOINT))["step"])
    assert 5 <= step < 199 and len(progress) == step
    continue_with = f"pafree train --out {out} --resume"
    assert last == (f"pafree train: interrupted at step {step} of 199; "
                    f"continue with: {continue_with}")

    status, _, err = pafree(*shlex.split(continue_with)[1:])
    assert status == 0, err
    straight = str(tmp_path / "straight")
    train("digits", "pa", out=straight, progress=False, steps=199, **TINY_KW)
    assert_same_arrays(arrays(os.path.join(out, CHECKPOINT)),
                       arrays(os.path.join(straight, CHECKPOINT)))
    assert losses(out) == losses(straight)


def test_a_second_signal_stops_at_once_and_keeps_the_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    proc = start("train", "--steps", "199", *TINY, "--out", out)     # checkpoints every 19 steps
    wait_for_line(proc, "step 20/199")
    proc.send_signal(signal.SIGINT)            # both pending: handled in this order
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.splitlines()[-1] == (f"pafree train: error: stopped at once by a second SIGTERM; "
                                    f"the last checkpoint in {out} is left as it was")
    assert "interrupted at step" not in err and "Traceback" not in err
    assert int(arrays(os.path.join(out, CHECKPOINT))["step"]) % 19 == 0   # a periodic one
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]


def poison_batch(monkeypatch, at_step):
    from pafree.tasks.digits import DigitsTask
    clean = DigitsTask.train_batch

    def poisoned(self, step, batch_size, seed):
        batch = clean(self, step, batch_size, seed)
        if step == at_step:
            batch.patches[0, 0, 0] = np.nan
        return batch
    monkeypatch.setattr(DigitsTask, "train_batch", poisoned)


@pytest.mark.parametrize("at_step, steps, expected", [
    (0, 10, "loss is nan at step 1; no checkpoint was written yet; no step had a finite loss"),
    (3, 50, "loss is nan at step 4; no checkpoint was written yet; the last finite loss was "
            "at step 3"),
])
def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path, monkeypatch, at_step, steps,
                                                       expected):
    poison_batch(monkeypatch, at_step)
    with pytest.raises(NonFiniteLoss) as err:
        train("digits", "pa", out=str(tmp_path), progress=False, steps=steps, **TINY_KW)
    assert str(err.value) == f"training stopped: {expected}"
    assert not (tmp_path / CHECKPOINT).exists()


# --- broken files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("good") / "run")
    train("digits", "pa", out=out, progress=False, steps=2, **TINY_KW)
    return out


def copy_run(src, dst):
    os.makedirs(dst)
    for name in ("config.json", CHECKPOINT):
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
            g.write(f.read())
    return dst


def garbage(path):
    with open(path, "wb") as f:
        f.write(b"not a checkpoint at all\n")


def truncated(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def object_array(path):
    np.savez(path, step=np.array([{"a": 1}], dtype=object))      # would need unpickling


def without_step(path):
    state = arrays(path)
    del state["step"]
    np.savez(path, **state)


def wider_model(path):
    other = train("digits", "pa", out=path + ".other", progress=False, steps=1,
                  **{**TINY_KW, "d_model": 8})
    assert other["steps"] == 1
    os.replace(os.path.join(path + ".other", CHECKPOINT), path)


def edit_config(change):
    def edit(path):
        with open(path) as f:
            settings = json.load(f)
        with open(path, "w") as f:
            f.write(change(settings))
    return edit


BROKEN = {
    "garbage": (CHECKPOINT, garbage, "not a checkpoint (not an .npz archive)"),
    "truncated": (CHECKPOINT, truncated, "truncated or corrupt .npz archive"),
    "object array": (CHECKPOINT, object_array, "holds object arrays"),
    "missing array": (CHECKPOINT, without_step, "missing arrays: 1 (step)"),
    "another model": (CHECKPOINT, wider_model, "shapes differ from this run's model"),
    "not json": ("config.json", edit_config(lambda s: "{"), "not valid JSON"),
    "not a config": ("config.json", edit_config(lambda s: '{"task": "digits"}'),
                     "not a pafree run config"),
    "another task": ("config.json", edit_config(lambda s: json.dumps({**s, "task": "numbers"})),
                     "not the settings of task 'numbers': missing beam"),
    "bad value": ("config.json", edit_config(
        lambda s: json.dumps({**s, "hparams": {**s["hparams"], "d_model": -3}})),
        "d_model=-3 (allowed: an integer >= 1)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_one_line_and_exit_2(good_run, tmp_path, case):
    name, damage, problem = BROKEN[case]
    run_dir = copy_run(good_run, str(tmp_path / "run"))
    path = os.path.join(run_dir, name)
    damage(path)
    status, out, err = pafree("predict", run_dir, "0")
    assert status == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"pafree predict: error: {path}: ") and problem in line, line
    assert "pickle" not in err.lower()


def test_resume_from_a_broken_checkpoint_is_exit_2(good_run, tmp_path):
    run_dir = copy_run(good_run, str(tmp_path / "run"))
    path = os.path.join(run_dir, CHECKPOINT)
    truncated(path)
    status, _, err = pafree("train", "--out", run_dir, "--resume", "--steps", "4")
    assert status == 2
    assert err.splitlines() == [f"pafree train: error: {path}: truncated or corrupt .npz archive"]


# --- bad settings ---------------------------------------------------------------------------

def test_bad_settings_are_all_named_before_anything_is_made(tmp_path):
    out = tmp_path / "run"
    status, _, err = pafree("train", "--steps", "-5", "--lr", "0", "--set", "d_model=-3",
                            "--set", "dropout=1.5", "--set", "norm=mid", "--set", "betas=[0.9]",
                            "--set", "clip=-1", "--set", "n_layers=abc", "--set", "warmup=2.5",
                            "--out", str(out))
    assert status == 1 and not out.exists()
    [line] = err.splitlines()
    for problem in ["steps=-5 (allowed: an integer >= 1)", "lr=0.0 (allowed: a number > 0)",
                    "d_model=-3 (allowed: an integer >= 1)",
                    "dropout=1.5 (allowed: a number >= 0 and < 1)",
                    "norm='mid' (allowed: one of pre, post)", "betas=[0.9] (allowed: two numbers",
                    "clip=-1 (allowed: null (no clipping) or a number > 0)",
                    "n_layers='abc' (allowed: an integer >= 1)",
                    "warmup=2.5 (allowed: an integer >= 0)"]:
        assert problem in line, problem


@pytest.mark.parametrize("args, message", [
    (["--set", "n_heads=3"], "n_heads=3 does not divide d_model=64"),
    (["--set", "patch_size=3"], "patch_size=3 (allowed: 1, 2, 4 or 8"),
    (["--set", "d_modle=16"], "unknown setting(s) ['d_modle'] for task 'digits'; valid: "),
    (["--task", "addition", "--set", "train_digits=9"], "need 1 <= train_digits <= eval_digits"),
])
def test_bad_setting_gives_pafree_s_own_message(tmp_path, args, message):
    out = tmp_path / "run"
    status, _, err = pafree("train", *args, "--out", str(out))
    assert status == 1 and not out.exists()
    [line] = err.splitlines()
    assert line.startswith("pafree train: error: ") and message in line, line


def test_bad_steps_on_an_existing_run_is_about_the_steps(good_run):
    status, _, err = pafree("train", "--steps", "-5", *TINY, "--out", good_run)
    assert status == 1
    assert err.splitlines() == ["pafree train: error: bad setting(s): steps=-5 "
                                "(allowed: an integer >= 1)"]


@pytest.mark.parametrize("name, good, bad", [
    ("batch_size", 1, 0), ("n_heads", 2, 0), ("warmup", 0, -1), ("eps", 1e-8, 0.0),
    ("min_lr", 0.0, -1e-3), ("weight_decay", 0, -0.1), ("label_smoothing", 0.1, 1.0),
    ("activation", "gelu", "tanh"), ("schedule", "linear", "step"), ("clip", None, 0),
    ("betas", [0.9, 0.98], [0.9, 1.0]), ("beam", 1, 0), ("shift", 0, True),
    ("position_coupling", False, 1.5),
])
def test_each_setting_range(name, good, bad):
    base = resolve_settings("digits")["hparams"]
    check_hparams({**base, name: good})
    with pytest.raises(ValueError, match=f"bad setting\\(s\\): {name}="):
        check_hparams({**base, name: bad})


def test_resume_takes_no_other_settings(good_run):
    status, _, err = pafree("train", "--out", good_run, "--resume", "--lr", "0.1")
    assert status == 1 and "only steps may change, not lr" in err


# --- the float baseline ---------------------------------------------------------------------

def test_compare_trains_the_baseline_the_closing_line_names(tmp_path, capsys):
    alone = str(tmp_path / "alone")
    assert cli.main(["train", "--steps", "4", *TINY, "--out", alone]) == 0
    closing = capsys.readouterr().out.splitlines()[-1]
    named = closing.split("the float baseline on the same data and seed: ")[1]
    named = named.removesuffix("  (or add --compare)")
    assert named == ("pafree train --task digits --mode standard --seed 0 --set d_model=16 "
                     "--set n_heads=2 --set n_layers=1 --set d_ff=32 --steps 4 --batch-size 16")
    by_hand = str(tmp_path / "by-hand")
    status, _, err = pafree(*shlex.split(named)[1:], "--out", by_hand)
    assert status == 0, err

    both = str(tmp_path / "both")
    status, out, err = pafree("train", "--steps", "4", *TINY, "--out", both, "--compare", "--json")
    assert status == 0, err
    final = json.loads(out.splitlines()[-1])
    assert final["mode"] == "pa" and final["baseline"]["mode"] == "standard"
    header, accuracy, _ = out.splitlines()[-4:-1]
    assert header.split() == ["pa", "standard"]
    assert accuracy.split() == ["test_accuracy", f"{final['test_accuracy']:.4f}",
                                f"{final['baseline']['test_accuracy']:.4f}"]
    assert_same_arrays(arrays(os.path.join(both, "baseline", CHECKPOINT)),
                       arrays(os.path.join(by_hand, CHECKPOINT)))
    assert_same_arrays(arrays(os.path.join(both, CHECKPOINT)),
                       arrays(os.path.join(alone, CHECKPOINT)))
    assert os.path.exists(os.path.join(both, "curves.png"))


def test_a_negative_seed_is_refused_before_anything_is_made(tmp_path):
    out = tmp_path / "run"
    status, _, err = pafree("train", "--seed", "-1", "--out", str(out))
    assert status == 1 and not out.exists()
    assert err.splitlines() == ["pafree train: error: bad seed -1 (allowed: an integer >= 0)"]
