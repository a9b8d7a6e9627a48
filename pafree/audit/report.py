"""What an audit found: findings with their places, counts, and a verdict (text or JSON)."""
import json
import os
import site
import sys
import sysconfig
from dataclasses import asdict, dataclass, field

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_NUMPY = os.path.dirname(np.__file__)
_AUDIT = os.path.dirname(os.path.abspath(__file__)) + os.sep


def short_path(filename):
    """A file name relative to the repository root when it lies inside it."""
    path = os.path.abspath(filename)
    return os.path.relpath(path, _ROOT) if path.startswith(_ROOT + os.sep) else filename


def caller_location(frame=None):
    """'file:line in function' of the innermost frame outside numpy and the audit itself."""
    frame = frame or sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not (filename.startswith(_NUMPY) or filename.startswith(_AUDIT)):
            return f"{short_path(filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "<unknown>"


def _system_dirs():
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(os.path.abspath(d) + os.sep for d in dirs)


_SYSTEM = _system_dirs()


def in_scope(filename):
    """Project source, rewritten when the audit starts: a file outside the Python
    installation and the audit package (any name: ``.py`` or not)."""
    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    return not path.startswith(_SYSTEM) and not path.startswith(_AUDIT)


def in_project(place):
    """True when a 'file:line ...' place (as short_path writes it) lies in project code."""
    path = place.partition(":")[0]
    return in_scope(path if os.path.isabs(path) or path.startswith("<")
                    else os.path.join(_ROOT, path))


def reached_from(place, detail=""):
    """``detail``, with the project line that led there when ``place`` is in library code."""
    if in_project(place):
        return detail
    caller = project_caller()
    return f"{detail}   (reached from {caller})".strip() if caller else detail


def project_caller():
    """'file:line' of the innermost project frame on the stack ('' when none): the line
    that led into library code where something was found."""
    frame = sys._getframe(1)
    while frame is not None and not in_scope(frame.f_code.co_filename):
        frame = frame.f_back
    return "" if frame is None else f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno}"


@dataclass
class Finding:
    layer: str        # "static", "dynamic", "scalar" or "python" (the closed-world watch)
    op: str           # what multiplied, e.g. "numpy multiply (float32)", "python float *"
    where: str        # "file:line in function", or the kernel and its signature
    detail: str = ""  # the source text or the offending instruction
    count: int = 1


@dataclass
class Recorder:
    """Collects findings (merged by layer, op and place) and the work that ran."""
    findings: dict = field(default_factory=dict)
    primitives: dict = field(default_factory=dict)   # name -> [calls, elements]
    float_adds: int = 0
    in_primitive: int = 0    # > 0 while an autograd primitive runs (its work counts once)

    def add(self, layer, op, where, detail="", count=1):
        key = (layer, op, where)
        if key in self.findings:
            self.findings[key].count += count
        else:
            self.findings[key] = Finding(layer, op, where, detail, count)

    def count(self, name, elements):
        entry = self.primitives.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += int(elements)


@dataclass
class KernelScan:
    """One Numba kernel (or CUDA PTX) scanned by the static layer."""
    name: str
    signatures: list
    counts: dict      # instruction class -> count, e.g. {"asm int add": 12, "ir float add": 3}
    forbidden: list   # offending instruction lines (empty when clean)


@dataclass
class Report:
    task: str
    mode: str
    steps: int
    findings: list
    primitives: dict
    float_adds: int
    kernels: list
    instrumented_functions: int
    guarded_arrays: int
    notes: list = field(default_factory=list)
    error: str = ""   # what the audited code raised ("" when it ran to the end)
    at: list = field(default_factory=list)   # the step numbers audited

    @property
    def ok(self):
        return not self.findings and not self.error

    @property
    def exit_status(self):
        """0 clean, 1 forbidden float arithmetic found, 3 the audited code raised."""
        return 3 if self.error else 0 if self.ok else 1

    def to_dict(self):
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self):
        at = f" at={','.join(map(str, self.at))}" if self.at else ""
        lines = [f"pafree audit: task={self.task} mode={self.mode} steps={self.steps}{at}", ""]
        lines.append("Primitives that ran (calls, elements):")
        for name, (calls, elements) in sorted(self.primitives.items()):
            lines.append(f"  {name:<14} {calls:>7} calls  {_human(elements):>8} elements")
        lines.append(f"  {'float add':<14} {'':>13}  {_human(self.float_adds):>8} elements")
        lines.append("")
        lines.append(f"Numba kernels used and scanned: {len(self.kernels)}")
        for kernel in self.kernels:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(kernel.counts.items()))
            lines.append(f"  {kernel.name:<24} {len(kernel.signatures)} signature(s): {counts}")
        lines.append(f"Arrays guarded (parameters, optimizer state, inputs): "
                     f"{self.guarded_arrays}")
        lines.append(f"Python functions instrumented for scalar arithmetic: "
                     f"{self.instrumented_functions}")
        for note in self.notes:
            lines.append(f"Note: {note}")
        lines.append("")
        total = sum(f.count for f in self.findings)
        if self.error:
            lines.append(f"VERDICT: NONE - the audited code raised {self.error}")
        elif self.ok:
            lines.append("VERDICT: CLEAN - no float multiply, divide, fma, sqrt, exp, log "
                         "or pow executed.")
        else:
            lines.append(f"VERDICT: FAILED - {len(self.findings)} place(s), {total} event(s) "
                         f"of forbidden float arithmetic or unchecked code:")
        for f in self.findings:
            detail = f"   {f.detail}" if f.detail else ""
            lines.append(f"  [{f.layer}] {f.op} x{f.count} at {f.where}{detail}")
        return "\n".join(lines)


def _human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
