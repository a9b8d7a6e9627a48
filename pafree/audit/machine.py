"""The machine-level audit: count every float multiply-like instruction the CPU executes.

``audit_machine(task, mode)`` runs one training step and the evaluation pass
(forward and decoding) of ``task`` in a child Python process under Valgrind,
with a small Valgrind tool pafree ships as C source (``valgrind/pa_count.c``,
built with gcc on first use against Debian's valgrind headers and static
libraries). The tool counts, at the VEX IR level, every executed float
multiply, divide, square root, FMA/FMS, reciprocal and rsqrt estimate, scale
and x87 transcendental, in every width and lane count, in every thread,
library, the interpreter and JIT code, but only inside the audited region,
which the child brackets with Valgrind client requests (``valgrind/region.c``,
loaded with ctypes). Each counted site comes back with its object, function
and a short call stack; a site in Numba JIT code is named by its kernel.

Valgrind does not run AVX-512, so under it the Numba kernels are compiled for
an AVX2 target (``NUMBA_CPU_NAME=haswell``) into a cache of their own, filled by
running the same child outside Valgrind first: nothing compiles under
Valgrind. numpy and OpenBLAS pick their AVX2 paths from the CPUID Valgrind
reports. The static layer (kernels.py) keeps scanning the native AVX-512 builds.

Sequence in the child: build the run, load two batches, one warm-up training
step and evaluation pass (not counted), then the counted training step and the
counted evaluation pass, each its own region. Nothing is subtracted: every
counted instruction is reported.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "valgrind"
TOOL_SOURCES = ("pa_count.c", "region.c", "region.h")
VALGRIND_INCLUDE = Path("/usr/include/valgrind")
VALGRIND_LIBDIR = Path("/usr/lib/x86_64-linux-gnu/valgrind")
VALGRIND_LIBEXEC = Path("/usr/libexec/valgrind")
PLATFORM = "amd64-linux"
TOOL = "pafree"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pafree"
AVX2_CPU = "haswell"          # an AVX2 + FMA target without AVX-512 (Valgrind runs AVX2)
PHASES = ("train step", "evaluation")
CLASSES = ("mul", "div", "sqrt", "fma", "recip", "rsqrt", "scale", "transcendental")
TEXT_FRAMES = 5               # frames of each site's call stack in the text report


class MachineAuditError(RuntimeError):
    """The machine layer cannot run here (missing tool chain, failed build or child)."""


# --------------------------------------------------------------------------
# the tool chain and the build

def toolchain_problem():
    """None when valgrind, its tool headers and static libraries and gcc are all
    present, else a sentence naming what is missing and the package to install."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "the machine audit runs on x86-64 Linux only"
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
    needed = [VALGRIND_INCLUDE / "pub_tool_tooliface.h", VALGRIND_INCLUDE / "valgrind.h",
              VALGRIND_LIBDIR / f"libcoregrind-{PLATFORM}.a",
              VALGRIND_LIBDIR / f"libvex-{PLATFORM}.a",
              VALGRIND_LIBEXEC / f"vgpreload_core-{PLATFORM}.so"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        return ("valgrind's tool headers or static libraries are missing ("
                + ", ".join(missing) + "); install Debian's valgrind package "
                "(apt-get install valgrind), which ships them")
    if shutil.which("gcc") is None:
        return "gcc is not installed; it builds pafree's Valgrind tool (apt-get install gcc)"
    return None


def _valgrind_version():
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def _gcc(args, cwd):
    done = subprocess.run(["gcc", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MachineAuditError(f"building pafree's Valgrind tool failed:\n"
                                f"gcc {' '.join(args)}\n{done.stderr.strip()}")


def build_tool():
    """The folder VALGRIND_LIB points at: pafree's tool, the region helper library,
    and links to every file of the installed Valgrind. Built once per source
    and Valgrind version, under ~/.cache/pafree/valgrind/."""
    problem = toolchain_problem()
    if problem:
        raise MachineAuditError(problem)
    digest = hashlib.sha256(_valgrind_version().encode())
    for name in TOOL_SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    lib = CACHE_ROOT / "valgrind" / digest.hexdigest()[:16]
    if (lib / f"{TOOL}-{PLATFORM}").exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=lib.parent))
    src = str(SOURCE_DIR)
    # the flags and link line of Valgrind's own tools (a static executable at
    # Valgrind's tool load address, no libc)
    _gcc(["-c", f"{src}/pa_count.c", "-o", "pa_count.o", f"-I{VALGRIND_INCLUDE}", f"-I{src}",
          "-DVGA_amd64=1", "-DVGO_linux=1", "-DVGP_amd64_linux=1",
          "-DVGPV_amd64_linux_vanilla=1", "-m64", "-O2", "-g", "-Wall",
          "-fno-stack-protector", "-fno-builtin", "-fno-strict-aliasing",
          "-fomit-frame-pointer", "-fno-pie", "-fno-PIC"], tmp)
    _gcc(["-m64", "-static", "-nodefaultlibs", "-nostartfiles", "-u", "_start",
          "-Wl,--build-id=none", "-Wl,-Ttext-segment=0x58000000", "-no-pie",
          "-o", f"{TOOL}-{PLATFORM}", "pa_count.o",
          str(VALGRIND_LIBDIR / f"libcoregrind-{PLATFORM}.a"),
          str(VALGRIND_LIBDIR / f"libvex-{PLATFORM}.a"), "-lgcc",
          str(VALGRIND_LIBDIR / f"libgcc-sup-{PLATFORM}.a")], tmp)
    _gcc(["-shared", "-fPIC", "-O2", f"-I{VALGRIND_INCLUDE}", f"-I{src}",
          f"{src}/region.c", "-o", "libpafree_region.so"], tmp)
    (tmp / "pa_count.o").unlink()
    for item in VALGRIND_LIBEXEC.iterdir():
        (tmp / item.name).symlink_to(item)
    try:
        tmp.rename(lib)
    except OSError:                 # another process built it first
        shutil.rmtree(tmp)
    return lib


def avx2_environment():
    """Environment for the child: Numba compiles for AVX2 into a cache of its own."""
    env = dict(os.environ)
    env.update(NUMBA_CPU_NAME=AVX2_CPU, NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(CACHE_ROOT / f"numba-{AVX2_CPU}"),
               NUMBA_NUM_THREADS=env.get("NUMBA_NUM_THREADS", "1"))
    return env


# --------------------------------------------------------------------------
# the report

@dataclass
class Frame:
    address: str
    object: str
    function: str
    where: str = ""            # file:line, where debug information has it

    def text(self):
        name = self.function or "???"
        place = f" ({self.where})" if self.where else ""
        return f"{name}{place} in {os.path.basename(self.object) or '???'}"


@dataclass
class Site:
    phase: str                 # "train step" or "evaluation"
    cls: str                   # mul, div, sqrt, fma, recip, rsqrt, scale, transcendental
    op: str                    # the VEX IR operation, e.g. Mul32Fx8 (lane count and width)
    count: int                 # executions of this instruction inside the region
    frames: list               # the call stack at its first execution, innermost first
    kernel: str = ""           # the Numba kernel holding the instruction, if any

    def where(self):
        first = self.frames[0]
        if self.kernel:
            return f"Numba kernel {self.kernel} ({first.address})"
        return first.text()


@dataclass
class MachineReport:
    task: str
    mode: str
    counts: dict               # phase -> class -> executed instructions
    sites: list
    seconds: float             # wall time of the whole audit (build, cache fill, Valgrind)
    valgrind_seconds: float
    notes: list = field(default_factory=list)

    @property
    def total(self):
        return sum(sum(by_class.values()) for by_class in self.counts.values())

    @property
    def ok(self):
        return self.total == 0

    def to_json(self):
        return json.dumps({"layer": "machine", "ok": self.ok, **asdict(self)}, indent=2)

    def to_text(self):
        lines = [f"pafree audit --machine: task {self.task}, mode {self.mode}: "
                 + ("CLEAN, no float multiply-like instruction executed" if self.ok
                    else f"{self.total} float multiply-like instructions executed"),
                 f"  time: {self.seconds:.0f} s ({self.valgrind_seconds:.0f} s under Valgrind)",
                 "  " + "phase".ljust(12) + "".join(c.rjust(9) for c in CLASSES[:6])
                 + "  other"]
        for phase in PHASES:
            by_class = self.counts.get(phase, {})
            other = sum(v for c, v in by_class.items() if c not in CLASSES[:6])
            lines.append("  " + phase.ljust(12)
                         + "".join(str(by_class.get(c, 0)).rjust(9) for c in CLASSES[:6])
                         + str(other).rjust(7))
        if self.sites:
            lines.append(f"  sites ({len(self.sites)}), most executed first:")
        for s in self.sites:
            lines.append(f"    {s.count:>9} {s.cls:<5} {s.op:<11} {s.phase}: {s.where()}")
            for frame in s.frames[1:TEXT_FRAMES]:          # all of them in --json
                lines.append(f"{'':27}from {frame.text()}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------
# the parent

def _run_child(spec, env, valgrind_lib=None, out=None, timeout=None):
    cmd = [sys.executable, "-m", "pafree.audit.machine", "--child", json.dumps(spec)]
    if valgrind_lib is not None:
        env = dict(env, VALGRIND_LIB=str(valgrind_lib))
        cmd = ["valgrind", "-q", f"--tool={TOOL}", f"--pafree-out={out}",
               "--trace-children=no", *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        where = "under Valgrind" if valgrind_lib else "outside Valgrind"
        raise MachineAuditError(f"the audited child failed {where} (exit {done.returncode}):\n"
                                + done.stderr.strip()[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse_sites(path, phase):
    sites = []
    text = Path(path).read_text()
    if not text.endswith("end\n"):
        raise MachineAuditError(f"the Valgrind tool's output {path} is incomplete")
    for line in text.splitlines()[:-1]:
        _, cls, op, count, stack = line.split("\t")
        frames = [Frame(*frame.split("|")) for frame in stack.split(";")]
        sites.append(Site(phase, cls, op, int(count), frames))
    return sites


def _name_kernels(sites, functions):
    """Name the Numba kernel of every frame in JIT code (no object file): the one
    whose compiled entry is the nearest below the address (JIT memory carries no
    symbol sizes, so a parallel loop body is named by the entry just before it)."""
    import bisect
    entries = sorted((int(addr, 16), kernel, symbol) for addr, kernel, symbol in functions)
    starts = [e[0] for e in entries]
    for site in sites:
        for k, frame in enumerate(site.frames):
            if frame.object:
                continue
            i = bisect.bisect_right(starts, int(frame.address, 16)) - 1
            if i >= 0:
                frame.function = f"numba:{entries[i][1]}"
                frame.object = "<numba jit>"
                if k == 0:
                    site.kernel = entries[i][1]


def audit_machine(task="digits", mode="pa", seed=0, eval_examples=2, setup=None,
                  timeout=None, **overrides):
    """Run one training step and the evaluation pass of ``task`` in ``mode`` under
    Valgrind with pafree's tool; returns a MachineReport (``report.ok``: all counts 0).
    ``overrides``: settings ``pafree.run.build`` accepts (batch_size, ...).
    ``setup``: a Python file the child runs first (the tests' mutations)."""
    start = time.perf_counter()
    _runs().resolve_settings(task, mode, seed, **overrides)   # a clear ValueError, here
    lib = build_tool()
    env = avx2_environment()
    spec = {"task": task, "mode": mode, "seed": seed, "eval_examples": eval_examples,
            "overrides": overrides, "setup": str(setup) if setup else None}
    outside = _run_child(dict(spec, region_lib=str(lib / "libpafree_region.so")), env,
                         timeout=timeout)                   # fills the AVX2 kernel cache
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sites"
        began = time.perf_counter()
        child = _run_child(dict(spec, region_lib=str(lib / "libpafree_region.so")), env,
                           valgrind_lib=lib, out=out, timeout=timeout)
        valgrind_seconds = time.perf_counter() - began
        if not child["under_valgrind"]:
            raise MachineAuditError("the child did not see pafree's Valgrind tool")
        sites = []
        for n, phase in enumerate(PHASES):
            sites += _parse_sites(f"{out}.{n}", phase)
    _name_kernels(sites, child["functions"])
    sites.sort(key=lambda s: (-s.count, s.phase, s.cls, s.frames[0].address))
    counts = {phase: {} for phase in PHASES}
    for s in sites:
        counts[s.phase][s.cls] = counts[s.phase].get(s.cls, 0) + s.count
    notes = [f"Numba kernels ran as AVX2 ({AVX2_CPU}) builds from their own cache; numpy and "
             "OpenBLAS took the paths Valgrind's CPUID (no AVX-512) selects. The static "
             "layer scans the native builds.",
             "counted: the training step and the evaluation pass (forward and decoding) "
             "after one warm-up step, in every thread; not counted: building the run, "
             "loading data, the metric, anything outside the region, other processes."]
    if child["compiled"]:
        notes.append("kernels compiled under Valgrind (the AVX2 cache missed): "
                     + ", ".join(child["compiled"]))
    if outside["loss"] != child["loss"]:
        notes.append(f"the loss differed outside Valgrind ({outside['loss']!r}) and under it "
                     f"({child['loss']!r})")
    return MachineReport(task, mode, counts, sites, time.perf_counter() - start,
                         valgrind_seconds, notes)


# --------------------------------------------------------------------------
# the child (runs under Valgrind, and once outside it to fill the kernel cache)

def _numba_functions():
    """(entry address, kernel name, symbol) of the native function and the CPython
    wrapper of every overload Numba holds here (compiled or loaded from the cache)."""
    from numba.core.registry import CPUDispatcher
    from ..ops.jit import KERNELS
    import gc
    names = {id(k): name for name, k in KERNELS.items()}
    functions = []
    for obj in gc.get_objects():
        if not isinstance(obj, CPUDispatcher):
            continue
        name = names.get(id(obj), f"{obj.py_func.__module__}.{obj.py_func.__qualname__}")
        for cres in obj.overloads.values():
            for symbol in (cres.fndesc.llvm_func_name, cres.fndesc.llvm_cpython_wrapper_name):
                address = cres.library.get_pointer_to_function(symbol)
                if address:
                    functions.append((hex(address), name, symbol))
    return functions


def _compiled_here():
    """Dispatchers with an overload that did not come from the on-disk cache."""
    from numba.core.registry import CPUDispatcher
    import gc
    return sorted({obj.py_func.__qualname__ for obj in gc.get_objects()
                   if isinstance(obj, CPUDispatcher)
                   and len(obj.overloads) > sum(obj.stats.cache_hits.values())})


def _runs():
    from .. import run          # the one place the run driver is imported
    return run


def _child(spec):
    import ctypes
    import importlib.util
    region = ctypes.CDLL(spec["region_lib"])
    if spec["setup"]:         # imported as a module, so Numba can cache its kernels
        module_spec = importlib.util.spec_from_file_location("pafree_audit_setup",
                                                             spec["setup"])
        module = sys.modules["pafree_audit_setup"] = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    from .. import config
    from ..autograd import no_grad
    runs = _runs()

    run = runs.build(spec["task"], spec["mode"], spec["seed"], **spec["overrides"])
    batches = [run.batch(step) for step in range(2)]

    def evaluation(counted):
        with config.mode(**run.modes), config.precision(run.precision), no_grad():
            run.model.eval()
            predict = run.predictor()

            def bracketed(*args, **kwargs):        # forward and decoding; not the metric
                if counted:
                    region.pafree_region_begin()
                try:
                    return predict(*args, **kwargs)
                finally:
                    if counted:
                        region.pafree_region_end()
            run.task.evaluate(bracketed, "valid", limit=spec["eval_examples"])

    run.train_step(batches[0])                      # warm-up: not counted
    evaluation(False)
    region.pafree_region_begin()
    loss = run.train_step(batches[1])
    region.pafree_region_end()
    region.pafree_dump()                            # PHASES[0]
    evaluation(True)
    region.pafree_dump()                            # PHASES[1]
    print(json.dumps({"under_valgrind": bool(region.pafree_running()), "loss": loss,
                      "compiled": _compiled_here(), "functions": _numba_functions()}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m pafree.audit.machine --child SPEC (run by audit_machine)")
