"""The task protocol: what a task supplies to training, evaluation and ``pafree predict``.

A task owns its data (fixed splits, a training batch per step), its model (built from the
run's hyper-parameters), its loss, its predictor (the decoding evaluation runs), its
metric, and the parsing/formatting of ``pafree predict`` inputs. Nothing outside the task
asks what sort of task it is, so adding one is one new module plus a line in ``TASKS``
(``pafree/tasks/__init__.py``).

Data preparation, decoding bookkeeping and metrics are ordinary Python/NumPy outside the
multiplication-free training step; ``loss`` and the model's forward/backward are inside it
(the run calls ``loss`` under ``pafree.config.mode``).
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .. import functional as F

SPLITS = ("train", "valid", "test")
IGNORE = -1     # target id that the cross-entropy skips


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


@dataclass(frozen=True)
class Metric:
    """The headline metric of a task: the key of ``evaluate``'s result, and what it means."""
    name: str
    meaning: str


class Task(ABC):
    """One task. Class attributes (read without building the data):

    - ``name``: the registry name (``--task``);
    - ``defaults``: the settings of a run (model width, steps, learning rate, ...); the
      options of the constructor are among them;
    - ``metric``: the ``Metric`` that ``pafree train`` reports and validation logs;
    - ``predict_inputs``: what ``pafree predict`` expects, for its help text.
    """

    name: str
    defaults: dict
    metric: Metric
    predict_inputs: str

    @abstractmethod
    def size(self, split):
        """Number of examples in ``split``."""

    @abstractmethod
    def train_batch(self, step, batch_size, seed):
        """Training batch ``step``: a pure function of (step, batch_size, seed), so a resumed
        run sees exactly the batches an uninterrupted one would."""

    @abstractmethod
    def batches(self, split, batch_size):
        """The evaluation batches of ``split`` in order (teacher-forcing form)."""

    @abstractmethod
    def build_model(self, hparams, seed):
        """The task's model, its weights drawn from ``seed``."""

    @abstractmethod
    def loss(self, model, batch, label_smoothing):
        """The training loss of ``batch`` (a scalar Tensor)."""

    @abstractmethod
    def predictor(self, model, hparams, beam=None):
        """The callback ``evaluate`` expects (argmax, beam search, greedy generation);
        ``beam``: the beam width where the task decodes with one (default: the run's)."""

    @abstractmethod
    def evaluate(self, predict, split, limit=None):
        """Metrics (a dict holding at least ``metric.name``) of ``predict`` on the first
        ``limit`` examples of ``split``."""

    @abstractmethod
    def answer(self, predict, inputs):
        """``pafree predict``: one line per input string; bad input raises ValueError
        saying what is expected."""


def epoch_indices(step, batch_size, n, seed):
    """Indices of training batch ``step``: epochs of a fresh permutation each, by (seed, epoch).

    A pure function of its arguments. Batches never straddle epochs (the tail of an epoch
    that does not fill a batch is skipped for that epoch).
    """
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[index * batch_size:(index + 1) * batch_size]


def image_indices(inputs, n):
    """``pafree predict``'s test image indices: each input a decimal number below ``n``."""
    chosen = []
    for text in inputs:
        if not text.isdigit() or int(text) >= n:
            raise ValueError(f"{text!r} is not a test image index (0..{n - 1})")
        chosen.append(int(text))
    return chosen


def transformer_options(hparams, seed):
    """The constructor options every task's transformer shares."""
    return dict(d_model=hparams["d_model"], n_heads=hparams["n_heads"], d_ff=hparams["d_ff"],
                dropout=hparams["dropout"], pre_ln=hparams["norm"] == "pre",
                activation=hparams["activation"], seed=seed)


def token_cross_entropy(logits, targets, keep, label_smoothing):
    """Cross-entropy over the token positions where ``keep`` holds."""
    targets = np.where(keep, targets, IGNORE)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           label_smoothing=label_smoothing, ignore_index=IGNORE)
