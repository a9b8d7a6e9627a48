"""The mechanical proof: run whole training steps and show that no float multiply ran.

``audit_training_step(task, mode, steps)`` builds a run (task, model with its
initial weights, optimizer, schedule: outside the audit), loads the batches
(outside), then runs ``steps`` complete training steps (forward, loss,
backward, clipping, optimizer update, learning-rate schedule) and the
evaluation pass (forward and decoding: argmax, beam search or greedy
generation) under three layers of checks:

- static: every Numba kernel called during the audited region is scanned
  (LLVM IR and native assembly; optionally the CUDA kernels' PTX);
- dynamic: parameters, gradients, optimizer state and inputs are guarded
  arrays, so numpy float arithmetic on them is seen (guard.py);
- scalar: project Python code runs a rewritten copy that checks every
  ``*``, ``/``, ``**``, ``math.sqrt``, ... on floats (scalars.py).
The evaluation metric (accuracy, exact match, BLEU) is computed outside.
"""
import contextlib

from . import guard, scalars
from .report import KernelScan, Recorder, Report


_SCANNED = {}      # dispatcher -> (signatures, counts, forbidden lines) of its last scan


@contextlib.contextmanager
def _kernels_called(used):
    """Record every Numba CPU dispatcher called from Python while a recorder is active."""
    from numba.core.dispatcher import Dispatcher, _DispatcherBase

    def call(self, *args, **kwargs):
        if guard._recorder is not None:
            used[id(self)] = self
        return _DispatcherBase.__call__(self, *args, **kwargs)

    own = Dispatcher.__dict__.get("__call__")     # None: inherited from the C base class
    Dispatcher.__call__ = call
    try:
        yield
    finally:
        if own is None:
            del Dispatcher.__call__
        else:
            Dispatcher.__call__ = own


class Audit:
    """The three layers installed for a ``with`` block; ``run`` executes audited calls."""

    def __init__(self):
        self.recorder = Recorder()
        self.kernels = {}            # id -> dispatcher, for every kernel an audited call used
        self.guarded = 0             # arrays viewed as GuardedArray

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self.instrumented = self._stack.enter_context(scalars.Instrumented())
        self._stack.enter_context(guard.counting())
        self._stack.enter_context(_kernels_called(self.kernels))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def guard(self, *objects):
        """View every array reachable from ``objects`` (models, optimizers, batches) as guarded."""
        for obj in objects:
            self.guarded += guard.guard_tree(obj)

    def run(self, fn, *args, **kwargs):
        """Call ``fn`` with guarded arguments while every layer records."""
        args = list(args)
        self.guard(args, kwargs)
        previous = guard.activate(self.recorder)
        try:
            return fn(*args, **kwargs)
        finally:
            guard.activate(previous)

    def recorded(self, fn):
        """``fn`` as a callable whose every call is audited (an evaluation callback)."""
        return lambda *args, **kwargs: self.run(fn, *args, **kwargs)

    def report(self, task="", mode="", steps=0, ptx=False):
        """Scan the kernels used and return the Report of everything recorded."""
        kernels = [self._scan(d) for d in self.kernels.values()]
        notes = []
        if self.instrumented.unmatched:
            notes.append("project functions whose loaded code differs from their source file "
                         "(edited since import?) ran uninstrumented: "
                         + ", ".join(self.instrumented.unmatched))
        if ptx:
            kernels += self._scan_ptx()
        else:
            notes.append("CUDA PTX not scanned (use --ptx)")
        rec = self.recorder
        return Report(task=task, mode=mode, steps=steps,
                      findings=sorted(rec.findings.values(), key=lambda f: (f.where, f.op)),
                      primitives={k: tuple(v) for k, v in sorted(rec.primitives.items())},
                      float_adds=rec.float_adds, kernels=kernels,
                      instrumented_functions=len(self.instrumented.replaced),
                      guarded_arrays=self.guarded, notes=notes)

    def _scan(self, dispatcher):
        from ..ops.jit import KERNELS
        from .kernels import scan_dispatcher
        names = [name for name, k in KERNELS.items() if k is dispatcher]
        name = names[0] if names else dispatcher.py_func.__qualname__
        if not names:
            self.recorder.add("static", "kernel not compiled through pafree.ops.jit.cpu_kernel",
                              f"{dispatcher.py_func.__module__}.{name}")
        signatures = tuple(dispatcher.signatures)
        if _SCANNED.get(dispatcher, (None,))[0] != signatures:    # compiling again is slow
            _SCANNED[dispatcher] = (signatures, *scan_dispatcher(dispatcher))
        _, counts, forbidden = _SCANNED[dispatcher]
        for line in forbidden:
            self.recorder.add("static", "float multiply-like instruction", f"kernel {name}", line)
        return KernelScan(name, [str(s) for s in signatures], counts, forbidden)

    def _scan_ptx(self):
        """PTX of every CUDA kernel (all of pafree.ops.cuda: the CPU step does not call them)."""
        from . import ptx
        scans = []
        for name, findings, integer_ops in ptx.audit_kernels():
            for op, n in findings.items():
                self.recorder.add("static", f"PTX {op}", f"CUDA kernel {name}", count=n)
            scans.append(KernelScan(f"cuda:{name}", [], dict(integer_ops), sorted(findings)))
        return scans


def audit_training_step(task="numbers", mode="pa", steps=1, evaluate=True, eval_examples=2,
                        ptx=False, seed=0, **overrides):
    """Run ``steps`` training steps (and, with ``evaluate``, the evaluation pass with its
    decoding on ``eval_examples`` validation examples) of ``task`` in ``mode`` under the
    audit; returns a Report (``report.ok``, ``report.findings``). ``overrides``: any
    setting ``pafree.run.build`` accepts (batch_size, d_model, component modes, ...)."""
    from .. import config
    from ..run import build
    from ..autograd import no_grad

    run = build(task, mode, seed, **overrides)
    batches = [run.batch(step) for step in range(steps)]      # data loading: not audited
    with Audit() as audit:
        audit.guard(run.model, run.optimizer, run.schedule)
        for batch in batches:
            audit.run(run.train_step, batch)
        if evaluate:
            with config.mode(**run.modes), no_grad():
                run.model.eval()
                predict = run.predictor()
                # the task prepares inputs and scores outputs (not audited); predict is
                run.task.evaluate(audit.recorded(predict), "valid", limit=eval_examples)
    return audit.report(task, mode, steps, ptx)
