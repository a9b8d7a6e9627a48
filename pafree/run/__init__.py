"""Training runs: ``pafree train`` / ``pafree predict`` and their Python equivalents.

- ``settings``: the settings of a run, resolved from the task's defaults and checked;
- ``run``: ``Run`` (task, model, optimizer, schedule; one step at a time; checkpoints)
  and ``build(task, mode, seed, **overrides)``;
- ``loop``: ``train(...)``, the run directory, logging, resume and the curves plot;
- ``train_cli``, ``predict_cli``: the two commands' arguments and output.
"""
from .loop import Aborted, Interrupted, train
from .run import CHECKPOINT, BrokenFile, NonFiniteLoss, Run, build
from .settings import MODES, resolve_settings

__all__ = ["train", "build", "Run", "resolve_settings", "MODES", "CHECKPOINT",
           "NonFiniteLoss", "BrokenFile", "Interrupted", "Aborted"]
