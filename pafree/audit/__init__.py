"""pafree.audit: the mechanical proof that PA code paths multiply no floats.

- ``kernels``: static scan of Numba CPU kernels (LLVM IR and native assembly):
  ``scan_dispatcher(kernel)``, ``scan_all()``.
- ``ptx``: static scan of the CUDA kernels' PTX.
- ``scalars``: the rewrite of Python code; ``world``: the closed world (what runs
  unchecked is a finding; the allow list of C callables).
- ``step``: ``audit_training_step(...)`` runs training steps under the audit
  (``at``: which steps, each from a real run's state); ``Audit`` for any code.

Names are imported lazily, so ``import pafree.audit`` stays light.
"""
_EXPORTS = {"scan_dispatcher": "kernels", "scan_all": "kernels",
            "audit_training_step": "step", "Audit": "step"}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pafree.audit' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
