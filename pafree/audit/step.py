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
import copy
import traceback

from . import guard, scalars, world
from .report import KernelScan, Recorder, Report


_SCANNED = {}      # dispatcher -> (signatures, counts, forbidden lines) of its last scan


@contextlib.contextmanager
def _kernels_called(used):
    """Record every Numba CPU dispatcher called from Python while a recorder is active."""
    from numba.core.dispatcher import Dispatcher, _DispatcherBase

    def call(self, *args, **kwargs):
        if guard._recorder is None:
            return _DispatcherBase.__call__(self, *args, **kwargs)
        used[id(self)] = self
        # the kernel's machine code is the static layer's; Numba's own Python (typing,
        # loading from the cache) is not audited code
        return guard.quietly(_DispatcherBase.__call__, self, *args, **kwargs)

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
        self.error = ""              # what the audited code raised, if it raised

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self.instrumented = self._stack.enter_context(scalars.Instrumented())
        self._stack.enter_context(guard.counting())
        self._stack.enter_context(_kernels_called(self.kernels))
        self.watch = self._stack.enter_context(world.Watch(self.instrumented))
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

    def rehearse(self, fn, *args, **kwargs):
        """Call ``fn`` (on copies of the real objects) with every layer active but nothing
        recorded, so that the files of the library code it runs are instrumented before
        the audited call runs the same code."""
        recorder, self.recorder = self.recorder, type(self.recorder)()
        self.watch.rehearsing = True
        try:
            return self.run(fn, *args, **kwargs)
        finally:
            self.recorder = recorder
            self.watch.rehearsing = False

    def report(self, task="", mode="", steps=0, ptx=False):
        """Scan the kernels used and return the Report of everything recorded."""
        kernels = [self._scan(d) for d in self.kernels.values()]
        notes = []
        unmatched = self.instrumented.unmatched
        if unmatched:
            notes.append(f"{len(unmatched)} project function(s) differ from their source file "
                         "(edited since import? pytest's assert rewriting?) and were not "
                         "instrumented: a finding if they run")
        if ptx:
            kernels += self._scan_ptx()
        else:
            notes.append("CUDA PTX not scanned (use --ptx)")
        rec = self.recorder
        return Report(task=task, mode=mode, steps=steps, error=self.error,
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


def schedule_points(run):
    """Steps that reach every branch of the schedule and the optimizer: the first, the last
    warm-up step, the first after it, one mid-decay and the last step of the run."""
    total, warmup = run.schedule.total, run.schedule.warmup
    points = {0, warmup - 1, warmup, warmup + (total - warmup) // 2, total - 1}
    return sorted(t for t in points if 0 <= t < total)


def advance(run, step):
    """Bring ``run`` to the state a real run has before ``step``: the optimizer's step count,
    bias-correction state and schedule position, by the optimizer's own update with no
    gradients (which leaves the parameters as they are). Not audited."""
    optimizer = run.optimizer
    if step < optimizer.step_count:
        raise ValueError(f"--at: steps must increase; {step} comes after "
                         f"{optimizer.step_count}")
    optimizer.zero_grad()
    while optimizer.step_count < step:
        optimizer.step()
    run.step = step


def _summary(err):
    """'TypeError: message (file:line in function)' of an exception raised in audited code."""
    last = traceback.extract_tb(err.__traceback__)[-1]
    from .report import short_path
    return f"{type(err).__name__}: {err} ({short_path(last.filename)}:{last.lineno} in {last.name})"


def audit_training_step(task="numbers", mode="pa", steps=1, at=None, evaluate=True,
                        eval_examples=2, ptx=False, seed=0, run_steps=None, **overrides):
    """Audit training steps of ``task`` in ``mode`` and, with ``evaluate``, the evaluation
    pass with its decoding on ``eval_examples`` validation examples; returns a Report
    (``report.ok``, ``report.findings``, ``report.error``).

    ``at``: the step numbers to audit, each from the state a real run has there (see
    ``advance``; ``"schedule"`` for ``schedule_points``); else steps 0 to ``steps`` - 1.
    ``run_steps``: the length of the run (its ``steps`` setting: where the schedule is).
    ``overrides``: any other setting ``pafree.run.build`` accepts (batch_size, d_model,
    component modes, ...). Settings errors raise ValueError; whatever the audited code
    raises is in ``report.error`` (the verdict: no verdict, exit status 3).
    """
    from .. import config
    from ..autograd import no_grad
    from ..run import build

    if run_steps is not None:
        overrides["steps"] = run_steps
    run = build(task, mode, seed, **overrides)
    points = schedule_points(run) if at == "schedule" else list(range(steps) if at is None else at)
    total = run.schedule.total
    if not points or any(not 0 <= t < total for t in points) or points != sorted(set(points)):
        raise ValueError(f"--at: increasing step numbers in [0, {total}) expected, got {points}")
    with Audit() as audit:
        try:
            for t in points:
                advance(run, t)
                batch = run.batch(t)           # data loading: not audited
                rehearsal = copy.deepcopy((run, batch))
                guard.guard_tree(rehearsal)
                audit.rehearse(rehearsal[0].train_step, rehearsal[1])
                audit.guard(run.model, run.optimizer, run.schedule)
                audit.run(run.train_step, batch)
            if evaluate:
                with config.mode(**run.modes), config.precision(run.precision), no_grad():
                    for model, audited in ((copy.deepcopy(run.model), audit.rehearse),
                                           (run.model, audit.run)):
                        guard.guard_tree(model)
                        model.eval()
                        predict = run.task.predictor(model, run.hparams)
                        # the task prepares inputs and scores outputs (not audited); predict is
                        run.task.evaluate(lambda *a, fn=predict, call=audited: call(fn, *a),
                                          "valid", limit=eval_examples)
        except Exception as err:          # the step raised: no verdict, but a report
            audit.error = _summary(err)
    report = audit.report(task, mode, len(points), ptx)
    report.at = points
    return report
