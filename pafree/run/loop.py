"""The training loop: a run directory, logging, periodic checkpoints, resume and plots.

A run keeps everything in its run directory:

    config.json      the settings (task, modes, hyper-parameters, seed)
    metrics.jsonl    one JSON object per logged step / evaluation
    curves.png       loss and validation metric against the step
    checkpoint.npz   parameters, optimizer state and step (no pickle), written
                     atomically (temporary file, then rename)

Bit-identical resume: the training batch of step t is a pure function of
(seed, t) (see ``pafree.tasks``), the dropout masks of step t come from a
generator seeded with (seed, t), and the optimizer state is in the checkpoint,
so a resumed run repeats exactly what the uninterrupted run would have done.

The training step itself (forward, loss, backward, clipping, optimizer update,
schedule) runs inside ``pafree.config.mode(...)``, so in ``pa`` mode it contains
no float multiply, divide, square root, exp or log. Logging and metrics (mean
loss of a logging interval, accuracy, BLEU) are reporting, outside that step.
"""
import json
import os
import sys
import time

import numpy as np

from .run import CHECKPOINT, CONFIG, NonFiniteLoss, Run
from .settings import resolve_settings

METRICS = "metrics.jsonl"
CURVES = "curves.png"


def train(task="digits", mode="pa", seed=0, optimizer=None, out=None, resume=False,
          progress=True, stop_at=None, eval_limit=None, device="cpu", **overrides):
    """Train and return the final metrics (the dict ``pafree train --json`` prints).

    ``out``: run directory (default runs/<task>-<mode>-seed<seed>); ``resume``
    continues from its checkpoint with the settings in its config.json (``steps``
    may be raised). ``stop_at``: pause after this step with a checkpoint written
    (continue with ``resume=True``). ``eval_limit``: validate on the first n
    validation examples only. ``device``: "cpu" or "cuda" (see ``Run``).
    ``overrides``: any key of the task's defaults (steps, batch_size, lr, d_model,
    ...) and the component modes (matmul, norm, softmax, loss, other)."""
    out = out or default_out(task, mode, seed)
    ckpt = os.path.join(out, CHECKPOINT)
    if resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        with open(os.path.join(out, CONFIG)) as f:
            settings = json.load(f)
        if "steps" in overrides:
            settings["hparams"]["steps"] = overrides["steps"]
    else:
        settings = resolve_settings(task, mode, seed, optimizer, **overrides)
        if os.path.exists(ckpt):
            raise FileExistsError(f"{out} already holds a run; continue it with --resume "
                                  f"or choose another --out")
    run = Run(settings, device)           # before writing anything: settings errors stop here
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, CONFIG), "w") as f:
        json.dump(settings, f, indent=1)
    metrics_path = os.path.join(out, METRICS)
    if resume:
        run.load(ckpt)
        keep_logged_until(metrics_path, run.step)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)
    return loop(run, out, progress, stop_at, eval_limit)


def default_out(task, mode, seed):
    return os.path.join("runs", f"{task}-{mode}-seed{seed}")


def keep_logged_until(path, step):
    """Drop log lines beyond the checkpoint's step (they will be logged again)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if json.loads(line)["step"] <= step]
    with open(path, "w") as f:
        f.writelines(rows)


def loop(run, out, progress, stop_at, eval_limit):
    from tqdm import tqdm

    hp, metric = run.hparams, run.task.metric.name
    total = hp["steps"]
    log_every = max(1, total // 100)
    eval_every = max(1, total // 10)
    ckpt = os.path.join(out, CHECKPOINT)
    log = open(os.path.join(out, METRICS), "a")
    bar = tqdm(total=total, initial=run.step, unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    recent, shown, started = [], {}, time.time()
    try:
        while run.step < total:
            try:
                loss = run.train_step(run.batch())
            except NonFiniteLoss as err:
                raise NonFiniteLoss(f"training stopped: {err}; the last good checkpoint "
                                    f"({ckpt}) is left as it was") from None
            recent.append(loss)
            bar.update(1)
            if run.step % log_every == 0 or run.step == total:
                row = {"step": run.step, "loss": float(np.mean(recent)),
                       "lr": float(run.schedule(run.step - 1))}
                recent = []
                shown["loss"] = f"{row['loss']:.3f}"
                log.write(json.dumps(row) + "\n")
            if run.step % eval_every == 0 or run.step == total:
                valid = run.evaluate("valid", limit=eval_limit, beam=1)
                log.write(json.dumps({"step": run.step, **{"valid_" + k: v for k, v in valid.items()}}) + "\n")
                shown["valid_" + metric] = f"{valid[metric]:.3f}"
                if run.parameters_finite():
                    log.flush()
                    run.save(ckpt)
            bar.set_postfix(shown, refresh=False)
            if stop_at is not None and run.step >= stop_at and run.step < total:
                run.save(ckpt)
                return {"task": run.settings["task"], "mode": run.settings["mode"],
                        "steps": run.step, "paused": True}
    finally:
        bar.close()
        log.close()
    test = run.evaluate("test")
    final = {"task": run.settings["task"], "mode": run.settings["mode"],
             "seed": run.seed, "steps": run.step,
             **{"test_" + k: v for k, v in test.items()},
             "train_seconds": round(time.time() - started, 1)}
    with open(os.path.join(out, METRICS), "a") as f:
        f.write(json.dumps({"step": run.step, **final}) + "\n")
    plot_curves(out, metric)
    return final


def plot_curves(out, metric):
    """curves.png: training loss and the validation metric against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(out, METRICS)) as f:
        rows = [json.loads(line) for line in f]
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    valid = [(r["step"], r["valid_" + metric]) for r in rows if "valid_" + metric in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    if losses:
        ax1.plot(*zip(*losses))
    ax1.set(xlabel="step", ylabel="training loss", yscale="log")
    if valid:
        ax2.plot(*zip(*valid), marker="o")
    ax2.set(xlabel="step", ylabel="validation " + metric.replace("_", " "))
    with open(os.path.join(out, CONFIG)) as f:
        settings = json.load(f)
    fig.suptitle(f"{settings['task']}, mode {settings['mode']}, seed {settings['seed']}")
    fig.tight_layout()
    fig.savefig(os.path.join(out, CURVES), dpi=100)
    plt.close(fig)
