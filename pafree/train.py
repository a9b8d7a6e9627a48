"""Training: ``pafree train`` and its Python equivalent ``pafree.train.train(...)``.

A run trains one task's model in one arithmetic mode and keeps everything in its
run directory:

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
import argparse
import inspect
import json
import math
import os
import sys
import time

import numpy as np

from . import config, optim
from .autograd import no_grad
from . import functional as F
from .models import DecoderOnlyLM, EncoderDecoder, ViT, set_dropout_rng
from .tasks import TASKS, get_task, task_class
from .tasks.vocab import pad_batch

MODES = ("standard", "pa-matmul", "pa")
COMPONENT_FLAGS = ("matmul", "norm", "softmax", "loss", "other")
CHECKPOINT = "checkpoint.npz"

# Float-baseline test accuracy of the default digits run (standard mode, mean of
# seeds 0-2, results/README_results.md), printed beside the result of `pafree train`.
DIGITS_BASELINE = 0.9769


class NonFiniteLoss(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# settings

def resolve_settings(task="digits", mode="pa", seed=0, optimizer=None, **overrides):
    """The full settings of a run: task, component modes, seed and hyper-parameters
    (the task's defaults with ``overrides`` applied). Unknown names raise ValueError
    listing the valid ones."""
    defaults = task_class(task).defaults      # ValueError for an unknown task
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    flags = {c: overrides.pop(c, None) for c in COMPONENT_FLAGS}
    components = {c: m for c, m in flags.items() if m is not None}
    if optimizer is not None:
        components["optim"] = optimizer
    with config.mode(mode, **components) as modes:   # validates the component values
        pass
    hparams = dict(defaults)
    valid = set(hparams) | set(task_parameters(task))
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for task {task!r}; "
                         f"valid: {', '.join(sorted(valid))}")
    hparams.update({k: v for k, v in overrides.items()})
    return {"task": task, "mode": mode, "seed": seed, "components": modes, "hparams": hparams}


def task_parameters(name):
    """The names of the task constructor's options (e.g. digits' patch_size, shift)."""
    return inspect.signature(task_class(name)).parameters


def task_options(name, hparams):
    """The settings that go to the task's constructor."""
    accepted = task_parameters(name)
    return {k: v for k, v in hparams.items() if k in accepted}


def build_model(task, hparams, seed):
    """The task's model (ViT, EncoderDecoder or DecoderOnlyLM) from its hyper-parameters."""
    common = dict(d_model=hparams["d_model"], n_heads=hparams["n_heads"], d_ff=hparams["d_ff"],
                  dropout=hparams["dropout"], pre_ln=hparams["norm"] == "pre",
                  activation=hparams["activation"], seed=seed)
    if hparams["norm"] not in ("pre", "post"):
        raise ValueError(f"unknown norm {hparams['norm']!r}; valid: post, pre")
    if task.kind == "classify":
        return ViT(image_size=8, patch_size=task.patch_size, channels=1,
                   n_classes=task.n_classes, n_layers=hparams["n_layers"], **common)
    if task.kind == "seq2seq":
        vocab = task.src_vocab
        return EncoderDecoder(len(task.src_vocab), len(task.tgt_vocab),
                              max_len=max(task.max_src_len, task.max_tgt_len) + 1,
                              n_enc_layers=hparams["n_enc_layers"],
                              n_dec_layers=hparams["n_dec_layers"],
                              pad_id=vocab.PAD, bos_id=vocab.BOS, eos_id=vocab.EOS, **common)
    if task.kind == "lm":
        return DecoderOnlyLM(len(task.vocab), max_len=task.n_positions,
                             n_layers=hparams["n_layers"], **common)
    raise ValueError(f"task kind {task.kind!r} has no model")


# ---------------------------------------------------------------------------
# what each kind of task computes: the training loss and the evaluation callback

IGNORE = -1     # target id that the loss skips


def batch_loss(task, model, batch, hparams):
    smoothing = hparams["label_smoothing"]
    if task.kind == "classify":
        logits = model.forward_patches(batch["patches"])
        return F.cross_entropy(logits, batch["labels"], label_smoothing=smoothing)
    if task.kind == "seq2seq":
        logits = model(batch["src"], batch["tgt_in"])
        targets = np.where(batch["tgt_mask"], batch["tgt_out"], IGNORE)
    else:
        logits = model(batch["tokens"], batch["positions"])
        targets = np.where(batch["loss_mask"] > 0, batch["targets"], IGNORE)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           label_smoothing=smoothing, ignore_index=IGNORE)


def predictor(task, model, hparams, beam=None):
    """The callback ``task.evaluate`` expects: argmax classes, beam-search
    translations (``beam`` defaults to the task's; 1 = greedy), or greedy sums."""
    if task.kind == "classify":
        return lambda patches: model.forward_patches(patches).data.argmax(axis=1)
    if task.kind == "seq2seq":
        beam = hparams["beam"] if beam is None else beam

        def translate(sources, chunk=250):
            out = []
            for i in range(0, len(sources), chunk):
                src, _ = pad_batch(sources[i:i + chunk])
                if beam == 1:
                    out += model.greedy(src, max_len=task.max_tgt_len)
                else:
                    out += model.beam_search(src, beam=beam, max_len=task.max_tgt_len)
            return out
        return translate
    return model.generate


METRIC = {"classify": "accuracy", "seq2seq": "exact_match", "lm": "exact_match"}


# ---------------------------------------------------------------------------
# a run: built, then stepped

DEVICES = ("cpu", "cuda")


def check_device(device, modes):
    """ValueError unless ``device`` can run a step in these component modes."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
    if device == "cpu":
        return
    from importlib.util import find_spec
    standard = sorted(c for c, m in modes.items() if m == "standard")
    if standard:
        raise ValueError(f"--device cuda runs the PA arithmetic only (the float baseline has no "
                         f"device kernels); these components are standard: {', '.join(standard)}")
    if find_spec("numba_cuda") is None:
        raise ValueError("--device cuda needs the cuda extra: pip install -e .[cuda]")
    from numba import cuda
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU found (numba.cuda.is_available() is False); "
                         "NUMBA_ENABLE_CUDASIM=1 runs the kernels on Numba's (slow) simulator")


class Run:
    """One training run, built but not started: task, model, optimizer, schedule
    (the warm-up lasts at most a tenth of the run, so short runs still train).

    ``batch(step)`` loads data only; ``train_step(batch)`` is exactly one step
    (forward, loss, backward, clipping, update, schedule); ``eval_step(n)`` is
    the evaluation forward pass, decoding included, on n validation examples.

    ``device="cuda"``: the parameters and optimizer state live on the GPU and the
    training step runs there, copying two scalars to the host (the loss and the
    gradient norm); evaluation runs on the CPU, with the weights copied there for it."""

    def __init__(self, settings, device="cpu"):
        check_device(device, settings["components"])
        self.device = device
        self.settings = settings
        hp = self.hparams = settings["hparams"]
        self.modes = settings["components"]
        self.seed = settings["seed"]
        self.task = get_task(settings["task"], **task_options(settings["task"], hp))
        self.model = build_model(self.task, hp, self.seed).to(device)
        opt_mode = self.modes["optim"]
        self.schedule = optim.make_schedule(hp["schedule"], lr=hp["lr"], total_steps=hp["steps"],
                                            warmup_steps=min(hp["warmup"], hp["steps"] // 10),
                                            min_lr=hp["min_lr"],
                                            mode=opt_mode)
        self.optimizer = optim.AdamW(self.model.parameters(), lr=self.schedule,
                                     betas=tuple(hp["betas"]), eps=hp["eps"],
                                     weight_decay=hp["weight_decay"], mode=opt_mode)
        self.step = 0

    def batch(self, step=None):
        return self.task.train_batch(self.step if step is None else step,
                                     self.hparams["batch_size"], self.seed)

    def train_step(self, batch):
        """One optimizer step; returns the loss (float). A NaN/inf loss raises
        NonFiniteLoss before anything is updated."""
        with config.mode(**self.modes):
            self.model.train()
            set_dropout_rng(self.model, np.random.default_rng([self.seed, self.step, 2]))
            loss = batch_loss(self.task, self.model, batch, self.hparams)
            value = float(loss.to("cpu").data)
            if not math.isfinite(value):
                raise NonFiniteLoss(f"loss is {value} at step {self.step}")
            loss.backward()
            if self.hparams["clip"] is not None:
                optim.clip_grad_norm(self.model.parameters(), self.hparams["clip"],
                                     mode=self.modes["optim"])
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.step += 1
        return value

    def eval_step(self, n=4, split="valid"):
        """The evaluation pass, decoding included, on the first n examples of a split."""
        return self.evaluate(split, limit=n)

    def evaluate(self, split, limit=None, beam=None):
        with config.mode(**self.modes), no_grad():
            self.model.eval().to("cpu")
            try:
                return self.task.evaluate(predictor(self.task, self.model, self.hparams, beam),
                                          split, limit=limit)
            finally:
                self.model.to(self.device)

    # checkpoints ----------------------------------------------------------
    def save(self, path):
        """Write parameters, optimizer state and step to ``path`` atomically."""
        arrays = {"step": np.int64(self.step)}
        arrays.update({"model/" + k: v for k, v in self.model.state_dict().items()})
        arrays.update({"optim/" + k: np.asarray(v)
                       for k, v in self.optimizer.state_dict().items()})
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load(self, path):
        with np.load(path, allow_pickle=False) as data:
            model = {k[6:]: data[k] for k in data.files if k.startswith("model/")}
            opt = {k[6:]: data[k] for k in data.files if k.startswith("optim/")}
            self.model.load_state_dict(model)
            self.optimizer.load_state_dict(opt)
            self.step = int(data["step"])

    def parameters_finite(self):
        return all(np.isfinite(p.to("cpu").data).all() for p in self.model.parameters())


def build(task="digits", mode="pa", seed=0, optimizer=None, device="cpu", **overrides):
    """A ``Run`` with the given settings (see ``resolve_settings``) on ``device``; nothing runs."""
    return Run(resolve_settings(task, mode, seed, optimizer, **overrides), device)


# ---------------------------------------------------------------------------
# the loop

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
    out = out or os.path.join("runs", f"{task}-{mode}-seed{seed}")
    ckpt = os.path.join(out, CHECKPOINT)
    if resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        with open(os.path.join(out, "config.json")) as f:
            settings = json.load(f)
        if "steps" in overrides:
            settings["hparams"]["steps"] = overrides["steps"]
    else:
        if os.path.exists(ckpt):
            raise FileExistsError(f"{out} already holds a run; continue it with --resume "
                                  f"or choose another --out")
        settings = resolve_settings(task, mode, seed, optimizer, **overrides)
    run = Run(settings, device)           # before writing anything: settings errors stop here
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(settings, f, indent=1)
    metrics_path = os.path.join(out, "metrics.jsonl")
    if resume:
        run.load(ckpt)
        keep_logged_until(metrics_path, run.step)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)
    return loop(run, out, progress, stop_at, eval_limit)


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

    hp, metric = run.hparams, METRIC[run.task.kind]
    total = hp["steps"]
    log_every = max(1, total // 100)
    eval_every = max(1, total // 10)
    ckpt = os.path.join(out, CHECKPOINT)
    log = open(os.path.join(out, "metrics.jsonl"), "a")
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
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": run.step, **final}) + "\n")
    plot_curves(out, metric)
    return final


def plot_curves(out, metric):
    """curves.png: training loss and the validation metric against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(out, "metrics.jsonl")) as f:
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
    with open(os.path.join(out, "config.json")) as f:
        settings = json.load(f)
    fig.suptitle(f"{settings['task']}, mode {settings['mode']}, seed {settings['seed']}")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# CLI

def setting_value(text):
    """KEY=VALUE for --set; VALUE parsed as JSON where it can be (numbers, lists, null)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(parser):
    parser.add_argument("--task", default="digits", choices=sorted(TASKS),
                        help="digits (ViT), numbers (German->English encoder-decoder), "
                             "addition (decoder-only LM); default digits")
    parser.add_argument("--mode", default="pa", choices=MODES,
                        help="standard = float baseline; pa-matmul = PA matmuls only; "
                             "pa = everything piecewise affine (default)")
    for c in COMPONENT_FLAGS:
        parser.add_argument("--" + c, choices=config.COMPONENT_MODES, default=None,
                            help=f"override the {c} component's arithmetic")
    parser.add_argument("--optimizer", choices=("standard", "pa"), default=None,
                        help="optimizer arithmetic (default: pa in mode pa, else standard)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the task's)")
    parser.add_argument("--batch-size", type=int, help="default: the task's")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the task's)")
    parser.add_argument("--set", type=setting_value, action="append", default=[],
                        metavar="KEY=VALUE", help="any other task default, e.g. d_model=128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="cuda: train on the GPU (pip install -e .[cuda]; modes with every "
                             "component PA; evaluation runs on the CPU)")
    parser.add_argument("--out", help="run directory (default runs/TASK-MODE-seedSEED)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--json", action="store_true",
                        help="print the final metrics as one JSON object on the last line")


def run(args):
    overrides = dict(args.set)
    for key in ("steps", "batch_size", "lr"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    for c in COMPONENT_FLAGS:
        overrides[c] = getattr(args, c)
    try:
        final = train(args.task, args.mode, args.seed, args.optimizer, out=args.out,
                      resume=args.resume, device=args.device,
                      **overrides)
    except (ValueError, FileExistsError, FileNotFoundError, NonFiniteLoss) as err:
        print(f"pafree train: error: {err}", file=sys.stderr)
        return 1
    metric = METRIC[task_class(final["task"]).kind]
    line = ", ".join(f"{k} {v:.4f}" if k.startswith("test_") else f"{k} {v}"
                     for k, v in final.items())
    print(line)
    if final["task"] == "digits":
        print(f"test {metric} {final['test_' + metric]:.4f} in mode {final['mode']}; "
              f"float baseline (README, mean of 3 seeds): {DIGITS_BASELINE:.4f}")
    if args.json:
        print(json.dumps(final))
    return 0
