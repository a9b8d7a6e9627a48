"""Tasks: data sets with fixed splits, model defaults and metrics. Nothing to download.

``get_task(name, **options)`` builds one of:

- ``digits``   the 8x8 handwritten digits of scikit-learn, for a small ViT (accuracy);
- ``numbers``  German number words -> English number words, for an encoder-decoder
               (exact match and BLEU);
- ``addition`` integer addition for a decoder-only LM, optionally with position coupling
               (exact match per operand length, including lengths longer than trained).

Every task class has ``name``, ``kind`` and ``defaults`` (the settings of a run with the
default options), read through ``task_class(name)`` without building the data; a built
task also has ``size(split)``, ``train_batch(step, batch_size, seed)``,
``batches(split, batch_size)`` and ``evaluate(fn, split, limit=None)``; see each module. Data preparation and metrics are
ordinary Python/NumPy: they sit outside the multiplication-free training step.
"""
import importlib

import numpy as np

# task name -> (module, class)
TASKS = {
    "digits": ("pafree.tasks.digits", "DigitsTask"),
    "numbers": ("pafree.tasks.numbers", "NumbersTask"),
    "addition": ("pafree.tasks.addition", "AdditionTask"),
}
SPLITS = ("train", "valid", "test")


def task_class(name):
    """The class of the task called ``name`` (imported, nothing built)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def get_task(name, **options):
    """The task called ``name``, built with ``options`` (see the task's class)."""
    return task_class(name)(**options)


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def epoch_indices(step, batch_size, n, seed):
    """Indices of training batch ``step``: epochs of a fresh permutation each, by (seed, epoch).

    A pure function of its arguments, so a resumed run sees exactly the batches an
    uninterrupted one would. Batches never straddle epochs (the tail of an epoch that does
    not fill a batch is skipped for that epoch).
    """
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[index * batch_size:(index + 1) * batch_size]
