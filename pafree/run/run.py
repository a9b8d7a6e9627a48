"""A run: the task, its model, optimizer and schedule, stepped one training step at a time,
with checkpoints (parameters, optimizer state and step; no pickle; written atomically)."""
import json
import math
import os
import zipfile
import zlib

import numpy as np

from .. import config, optim
from ..autograd import no_grad
from ..models import set_dropout_rng
from ..tasks import get_task
from .settings import check_settings, resolve_settings, task_options

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"
DEVICES = ("cpu", "cuda")


class NonFiniteLoss(RuntimeError):
    """A NaN/inf loss; ``step``: the steps completed before it (all with finite losses)."""

    def __init__(self, value, step, message=None):
        super().__init__(message or f"loss is {value} at step {step + 1}")
        self.value, self.step = value, step


class BrokenFile(ValueError):
    """A checkpoint or config file that cannot be used; the message names file and problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


SETTINGS_KEYS = ("task", "mode", "seed", "components", "hparams")


def read_config(path):
    """The settings in a run's config.json, checked; BrokenFile says what is wrong."""
    try:
        with open(path) as f:
            settings = json.load(f)
    except FileNotFoundError:
        raise BrokenFile(path, "missing (a run directory holds config.json beside its "
                               "checkpoint)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BrokenFile(path, f"not valid JSON ({err})") from None
    if not isinstance(settings, dict) or not all(k in settings for k in SETTINGS_KEYS):
        have = sorted(settings) if isinstance(settings, dict) else type(settings).__name__
        raise BrokenFile(path, f"not a pafree run config (needs keys {', '.join(SETTINGS_KEYS)}; "
                               f"has {have})")
    return settings


def key_summary(names, most=3):
    names = sorted(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{len(names)} ({', '.join(names[:most])}{more})"


def read_checkpoint(path):
    """The arrays of a checkpoint, loaded without pickle; BrokenFile says what is wrong."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise BrokenFile(path, "missing") from None
    if magic != b"PK\x03\x04":
        raise BrokenFile(path, "not a checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError):
        raise BrokenFile(path, "truncated or corrupt .npz archive") from None
    except ValueError as err:
        if "allow_pickle" in str(err):      # numpy's message suggests unpickling: never
            raise BrokenFile(path, "holds object arrays (pafree checkpoints hold plain "
                                   "numeric arrays only)") from None
        raise BrokenFile(path, f"corrupt array data ({err})") from None
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise BrokenFile(path, f"members that are not arrays: {key_summary(odd)}")
    return arrays


def check_device(device, modes, precision="fp32"):
    """ValueError unless ``device`` can run a step in these component modes."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
    if device == "cpu":
        return
    if precision != "fp32":
        raise ValueError(f"--device cuda: precision {precision} has no device kernels (fp32 only)")
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
        check_settings(settings)
        self.precision = settings.get("precision", "fp32")
        check_device(device, settings["components"], self.precision)
        self.device = device
        self.settings = settings
        hp = self.hparams = settings["hparams"]
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
        # float16's narrow range needs the loss scaled (optim.LossScale); bfloat16 has float32's
        self.loss_scale = optim.LossScale() if self.precision == "fp16" else None
        self.step = 0

    @classmethod
    def from_directory(cls, run_dir, device="cpu", steps=None):
        """The run in ``run_dir`` (its config.json; ``steps`` may be raised) with the
        parameters, optimizer state and step of its checkpoint."""
        ckpt = os.path.join(run_dir, CHECKPOINT)
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"no checkpoint in {run_dir!r} (expected {ckpt})")
        path = os.path.join(run_dir, CONFIG)
        settings = read_config(path)
        if steps is not None:
            settings["hparams"]["steps"] = steps
        try:
            run = cls(settings, device)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise BrokenFile(path, f"settings that cannot be run: {err}") from None
        run.load(ckpt)
        run.model.eval()
        return run

    def batch(self, step=None):
        return self.task.train_batch(self.step if step is None else step,
                                     self.hparams["batch_size"], self.seed)

    def train_step(self, batch):
        """One optimizer step; returns the loss (float). A NaN/inf loss raises
        NonFiniteLoss before anything is updated. In fp16 the loss is scaled and a step
        whose gradients overflow is skipped (no update; it still counts as a step)."""
        with config.mode(**self.modes), config.precision(self.precision):
            self.model.train()
            set_dropout_rng(self.model, np.random.default_rng([self.seed, self.step, 2]))
            loss = self.task.loss(self.model, batch, self.hparams["label_smoothing"])
            value = float(loss.to("cpu").data)
            if not math.isfinite(value):
                raise NonFiniteLoss(value, self.step)
            if self.loss_scale is None:
                loss.backward()
            else:
                loss.backward(self.loss_scale.seed())
            if self.loss_scale is None or self.loss_scale.unscale(self.model.parameters()):
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
        with config.mode(**self.modes), config.precision(self.precision), no_grad():
            self.model.eval().to("cpu")
            try:
                return self.task.evaluate(self.predictor(beam), split, limit=limit)
            finally:
                self.model.to(self.device)

    def answer(self, inputs):
        """``pafree predict``: the task's answer line for each input string."""
        with config.mode(**self.modes), config.precision(self.precision), no_grad():
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
        if self.loss_scale is not None:
            arrays.update({"scale/" + k: v for k, v in self.loss_scale.state_dict().items()})
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
        """Parameters, optimizer state and step from the checkpoint at ``path``; BrokenFile
        (nothing loaded) unless it holds exactly this run's arrays with their shapes."""
        data = read_checkpoint(path)
        want = {"step": ()}
        want.update({"model/" + k: p.data.shape for k, p in self.model.named_state()})
        want.update({"optim/" + k: np.shape(v) for k, v in self.optimizer.state_dict().items()})
        if self.loss_scale is not None:
            want.update({"scale/" + k: () for k in self.loss_scale.state_dict()})
        missing, unexpected = set(want) - set(data), set(data) - set(want)
        if missing or unexpected:
            problem = "does not match this run's model and optimizer"
            if missing:
                problem += f"; missing arrays: {key_summary(missing)}"
            if unexpected:
                problem += f"; arrays of another model: {key_summary(unexpected)}"
            raise BrokenFile(path, problem)
        wrong = [f"{k} {data[k].shape} (expected {want[k]})" for k in sorted(want)
                 if data[k].shape != want[k]]
        if wrong:
            raise BrokenFile(path, f"shapes differ from this run's model: {key_summary(wrong)}")
        self.model.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("model/")})
        self.optimizer.load_state_dict({k[6:]: v for k, v in data.items()
                                        if k.startswith("optim/")})
        if self.loss_scale is not None:
            self.loss_scale.load_state_dict({k[6:]: v for k, v in data.items()
                                             if k.startswith("scale/")})
        self.step = int(data["step"])

    def parameters_finite(self):
        return all(np.isfinite(p.to("cpu").data).all() for p in self.model.parameters())


def build(task="digits", mode="pa", seed=0, optimizer=None, device="cpu", precision="fp32",
          **overrides):
    """A ``Run`` with the given settings (see ``resolve_settings``) on ``device``; nothing runs."""
    return Run(resolve_settings(task, mode, seed, optimizer, precision=precision, **overrides),
               device)
