"""A run: the task, its model, optimizer and schedule, stepped one training step at a time,
with checkpoints (parameters, optimizer state and step; no pickle; written atomically)."""
import json
import math
import os

import numpy as np

from .. import config, optim
from ..autograd import no_grad
from ..models import set_dropout_rng
from ..tasks import get_task
from .settings import check_hparams, resolve_settings, task_options

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"
DEVICES = ("cpu", "cuda")


class NonFiniteLoss(RuntimeError):
    pass


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
    the evaluation forward pass, decoding included, on n validation examples;
    ``predictor(beam)`` is the decoding callback the task's ``evaluate`` takes.

    ``device="cuda"``: the parameters and optimizer state live on the GPU and the
    training step runs there, copying two scalars to the host (the loss and the
    gradient norm); evaluation runs on the CPU, with the weights copied there for it."""

    def __init__(self, settings, device="cpu"):
        check_device(device, settings["components"])
        self.device = device
        self.settings = settings
        hp = self.hparams = settings["hparams"]
        check_hparams(hp)
        self.modes = settings["components"]
        self.seed = settings["seed"]
        self.task = get_task(settings["task"], **task_options(settings["task"], hp))
        self.model = self.task.build_model(hp, self.seed).to(device)
        opt_mode = self.modes["optim"]
        self.schedule = optim.make_schedule(hp["schedule"], lr=hp["lr"], total_steps=hp["steps"],
                                            warmup_steps=min(hp["warmup"], hp["steps"] // 10),
                                            min_lr=hp["min_lr"],
                                            mode=opt_mode)
        self.optimizer = optim.AdamW(self.model.parameters(), lr=self.schedule,
                                     betas=tuple(hp["betas"]), eps=hp["eps"],
                                     weight_decay=hp["weight_decay"], mode=opt_mode)
        self.step = 0

    @classmethod
    def from_directory(cls, run_dir):
        """The run in ``run_dir`` (its config.json) with the parameters of its checkpoint."""
        ckpt = os.path.join(run_dir, CHECKPOINT)
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"no checkpoint in {run_dir!r} (expected {ckpt})")
        with open(os.path.join(run_dir, CONFIG)) as f:
            run = cls(json.load(f))
        run.load(ckpt)
        run.model.eval()
        return run

    def batch(self, step=None):
        return self.task.train_batch(self.step if step is None else step,
                                     self.hparams["batch_size"], self.seed)

    def train_step(self, batch):
        """One optimizer step; returns the loss (float). A NaN/inf loss raises
        NonFiniteLoss before anything is updated."""
        with config.mode(**self.modes):
            self.model.train()
            set_dropout_rng(self.model, np.random.default_rng([self.seed, self.step, 2]))
            loss = self.task.loss(self.model, batch, self.hparams["label_smoothing"])
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

    def predictor(self, beam=None):
        """The task's decoding callback over this run's model (see ``Task.predictor``)."""
        return self.task.predictor(self.model, self.hparams, beam)

    def eval_step(self, n=4, split="valid"):
        """The evaluation pass, decoding included, on the first n examples of a split."""
        return self.evaluate(split, limit=n)

    def evaluate(self, split, limit=None, beam=None):
        with config.mode(**self.modes), no_grad():
            self.model.eval().to("cpu")
            try:
                return self.task.evaluate(self.predictor(beam), split, limit=limit)
            finally:
                self.model.to(self.device)

    def answer(self, inputs):
        """``pafree predict``: the task's answer line for each input string."""
        with config.mode(**self.modes), no_grad():
            self.model.eval().to("cpu")
            try:
                return self.task.answer(self.predictor(), inputs)
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
