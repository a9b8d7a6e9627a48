"""pafree ablation: the grid, resume, the table and figure, and a tiny end-to-end run."""
import json
import os

import numpy as np
import pytest

from pafree import cli, config
from pafree.run import ablation as ab
from pafree.run.loop import METRICS
from pafree.run.run import CHECKPOINT

COMPONENTS = ("matmul", "norm", "softmax", "loss", "other")


def test_grid_is_the_papers_table_3():
    rows = ab.grid()
    names = [n for n, _, _ in rows]
    assert len(names) == len(set(names))
    by_name = {n: o for n, _, o in rows}
    assert by_name["baseline"] == {}
    alone = [o for _, g, o in rows if g == "alone"]
    # each component alone with each kind, and the optimizer alone: one change from the baseline
    assert sorted(tuple(o.items()) for o in alone) == sorted(
        [((c, "pa-" + k),) for c in COMPONENTS for k in ("exact", "approx")] + [(("optim", "pa"),)])
    combined = [o for _, g, o in rows if g == "combined"]
    order = ["matmul", "norm", "softmax", "loss", "other", "optim"]
    for i, o in enumerate(combined):        # one component more each row, in the paper's order
        assert list(o) == order[:i + 1]
    assert combined[-1] == config.PRESETS["pa"]       # the paper's everything-PA setting
    assert [o for _, g, o in rows if g == "picked"] == [combined[-1] | {"loss": "pa-approx"}]
    offsets = [o for _, g, o in rows if g == "offset"]
    assert [o["pam_offset"] for o in offsets] == [ab.ALPHA, ab.ALPHA]
    assert {k: v for k, v in offsets[1].items() if k != "pam_offset"} == combined[-1]
    # distinct configurations get distinct run directories; equal ones share one
    slugs = {ab.slug(o) for _, _, o in rows}
    assert len(slugs) == len({json.dumps(o, sort_keys=True) for _, _, o in rows})


def test_train_command_sets_exactly_the_overrides():
    cmd = ab.train_command("dates", {"matmul": "pa-approx", "optim": "pa", "pam_offset": 1.0566}, 2,
                           "d", steps=7)
    args = cli.build_parser().parse_args(cmd[3:])
    assert (args.task, args.mode, args.seed, args.out, args.steps) == ("dates", "standard", 2, "d", 7)
    assert (args.matmul, args.optimizer, args.pam_offset) == ("pa-approx", "pa", 1.0566)
    assert args.norm is args.softmax is args.loss is args.other is None
    assert ab.train_command("dates", {}, 0, "d", resume=True)[3:] == ["train", "--out", "d", "--resume"]


def _finish(run_dir, metric=0.5, seconds=1.0):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, METRICS), "w") as f:
        f.write(json.dumps({"step": 1, "loss": 1.0}) + "\n")
        f.write(json.dumps({"step": 1, "test_exact_match": metric, "test_bleu": 50.0,
                            "train_seconds": seconds}) + "\n")


def test_resume_never_repeats_a_finished_run_and_resumes_an_interrupted_one(tmp_path):
    out = str(tmp_path)
    rows = {n: o for n, _, o in ab.grid()}
    run_dir = {n: os.path.join(out, "runs", f"{ab.slug(rows[n])}-seed0") for n in rows}
    _finish(run_dir["baseline"])
    os.makedirs(run_dir["matmul exact"])
    open(os.path.join(run_dir["matmul exact"], CHECKPOINT), "w").close()     # interrupted
    os.makedirs(run_dir["norm exact"])
    with open(os.path.join(run_dir["norm exact"], ab.UNSTABLE), "w") as f:   # NaN before
        json.dump({"loss": "nan", "step": 3}, f)
    launched = []

    def launcher(cmd, log_path):
        launched.append(cmd)
        _finish(cmd[cmd.index("--out") + 1])
        return 0, 1.5

    names = ["baseline", "matmul exact", "norm exact", "softmax exact"]
    results, failed = ab.run_grid("dates", [0], out, jobs=2, only=names, progress=False,
                                  launcher=launcher)
    assert not failed
    by_out = {c[c.index("--out") + 1]: c for c in launched}
    assert set(by_out) == {run_dir["matmul exact"], run_dir["softmax exact"]}
    assert by_out[run_dir["matmul exact"]][-1] == "--resume"
    assert "--resume" not in by_out[run_dir["softmax exact"]]
    assert [(r["setting"], r["status"]) for r in results] == [
        ("baseline", "ok"), ("matmul exact", "ok"), ("norm exact", "unstable"), ("softmax exact", "ok")]
    launched.clear()
    ab.run_grid("dates", [0], out, jobs=2, only=names, progress=False, launcher=launcher)
    assert launched == []                  # everything finished: nothing runs again


def test_a_non_finite_loss_is_recorded_as_unstable_and_a_crash_is_not(tmp_path):
    def nan_launcher(cmd, log_path):
        with open(log_path, "a") as f:
            f.write("pafree train: error: training stopped: loss is nan at step 12; ...\n")
        return 1, 0.5

    run_dir = str(tmp_path / "a")
    assert ab.run_one("dates", {"softmax": "pa-exact"}, 0, run_dir, None, nan_launcher) == "unstable"
    with open(os.path.join(run_dir, ab.UNSTABLE)) as f:
        assert json.load(f) == {"loss": "nan", "step": 12}
    with pytest.raises(RuntimeError, match="status 2"):
        ab.run_one("dates", {}, 0, str(tmp_path / "b"), None, lambda cmd, log: (2, 0.1))
    assert ab.state(str(tmp_path / "b")) == "new"          # tried again next time


FAKE = [  # setting, group, seed, status, exact match
    ("baseline", "baseline", 0, "ok", 0.80), ("baseline", "baseline", 1, "ok", 0.90),
    ("softmax exact", "alone", 0, "ok", 0.40), ("softmax exact", "alone", 1, "unstable", None),
    ("loss approx", "alone", 0, "unstable", None), ("loss approx", "alone", 1, "unstable", None),
]


def _fake_results():
    out = []
    for name, group, seed, status, em in FAKE:
        r = {"setting": name, "group": group, "seed": seed, "status": status, "cpu_seconds": 10.0 + seed}
        if status == "ok":
            r.update(test_exact_match=em, test_bleu=100 * em)
        else:
            r["unstable"] = {"loss": "nan", "step": 5}
        out.append(r)
    return out


def test_table_marks_unstable_runs_and_summarises_the_rest(tmp_path):
    path = tmp_path / "ablation.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _fake_results()))
    results = [json.loads(line) for line in path.read_text().splitlines()]
    lines = ab.table(results, ["exact_match", "bleu"]).splitlines()
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:]}
    assert list(cells) == ["baseline", "softmax exact", "loss approx"]
    assert cells["baseline"][0] == "85.0 (80.0–90.0)" and cells["baseline"][1] == "85.0 (80.0–90.0)"
    assert cells["softmax exact"][0] == "40.0 (40.0–40.0); **unstable: 1 of 2 runs**"
    assert cells["loss approx"][0] == "**unstable: 2 of 2 runs**"
    assert cells["baseline"][2:] == ["2", "10 |"]          # seeds, mean CPU seconds
    ab.figure(results, "exact_match", str(tmp_path / "f.png"), "fake")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_pafree_ablation_end_to_end_tiny(tmp_path, capsys):
    out = str(tmp_path / "abl")
    argv = ["ablation", "--task", "dates", "--steps", "2", "--seeds", "0", "--jobs", "2",
            "--out", out, "--settings", "baseline", "matmul approx, alpha 1.0566"]
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in open(os.path.join(out, "ablation.jsonl"))]
    assert [(r["setting"], r["status"], r["steps"]) for r in rows] == [
        ("baseline", "ok", 2), ("matmul approx, alpha 1.0566", "ok", 2)]
    with open(os.path.join(rows[1]["run_dir"], "config.json")) as f:
        components = json.load(f)["components"]
    assert components["matmul"] == "pa-approx" and components["pam_offset"] == 1.0566
    for ext in ("md", "png"):
        assert os.path.getsize(os.path.join(out, f"ablation.{ext}")) > 0
    stamps = [os.path.getmtime(os.path.join(r["run_dir"], CHECKPOINT)) for r in rows]
    assert cli.main(argv) == 0              # again: nothing retrained
    assert stamps == [os.path.getmtime(os.path.join(r["run_dir"], CHECKPOINT)) for r in rows]


def test_pam_offset_scales_the_pa_matmul_output_by_a_pam():
    from pafree import F, Tensor, ops
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (4, 2)))
    alpha = np.float32(1.0566)
    with config.mode("pa", pam_offset=1.0566):
        np.testing.assert_array_equal(F.matmul(a, b).data, ops.pam(ops.pam_matmul(a, b), alpha))
        x = Tensor(a, requires_grad=True)
        F.matmul(x, b).sum().backward()        # approx: dA = (1 ⊙ alpha) @ b^T
        np.testing.assert_array_equal(x.grad, ops.pam_matmul(ops.pam(np.ones((3, 2), np.float32), alpha), b.T))
    with config.mode("standard", pam_offset=1.0566):     # the float baseline has no offset
        np.testing.assert_allclose(F.matmul(a, b).data, a @ b, rtol=1e-6)
    with config.mode("pa"):                 # a preset resets it
        assert config.pam_offset() is None
    with pytest.raises(ValueError, match="pam_offset"):
        config.set(pam_offset=-1.0)
