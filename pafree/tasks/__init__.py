"""Tasks: data sets with fixed splits, their models, losses and metrics. Nothing is downloaded.

``get_task(name, **options)`` builds one of:

- ``digits``   the 8x8 handwritten digits of scikit-learn, for a small ViT (accuracy);
- ``numbers``  German number words -> English number words, for an encoder-decoder
               (exact match and BLEU);
- ``dates``    German dates -> English dates, harder than numbers (the ablation's task);
- ``addition`` integer addition for a decoder-only LM, optionally with position coupling
               (exact match per operand length, including lengths longer than trained);
- ``digits-cnn`` the digits split for a small pre-activation ResNet (accuracy);
- ``cifar10``  CIFAR-10 from its binary files (``--set data_dir=DIR``; not downloaded),
               for a pre-activation ResNet-20 (accuracy).

Every task implements ``pafree.tasks.base.Task`` (the protocol: data, model, loss,
predictor, metric, ``pafree predict`` answers); ``task_class(name)`` gives its class
(``name``, ``defaults``, ``metric``) without building the data. Adding a task is one
module plus one line in ``TASKS``.
"""
import importlib

# task name -> (module, class)
TASKS = {
    "digits": ("pafree.tasks.digits", "DigitsTask"),
    "numbers": ("pafree.tasks.numbers", "NumbersTask"),
    "addition": ("pafree.tasks.addition", "AdditionTask"),
    "dates": ("pafree.tasks.dates", "DatesTask"),
    "digits-cnn": ("pafree.tasks.digits_cnn", "DigitsCNNTask"),
    "cifar10": ("pafree.tasks.cifar10", "Cifar10Task"),
}


def task_class(name):
    """The class of the task called ``name`` (imported, nothing built)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def get_task(name, **options):
    """The task called ``name``, built with ``options`` (see the task's class)."""
    return task_class(name)(**options)
