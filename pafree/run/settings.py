"""The settings of a run: task, component modes, seed and hyper-parameters, resolved from
the task's defaults and the overrides, and checked before anything is built."""
import inspect
from numbers import Integral, Real

from .. import config, optim
from ..tasks import task_class

MODES = tuple(config.PRESETS)      # the --mode of a run: a whole configuration by name
COMPONENT_FLAGS = config.COMPONENTS[:-1]     # per-component overrides (the optimizer has its own flag)


def resolve_settings(task="digits", mode="pa", seed=0, optimizer=None, hparams=None,
                     precision="fp32", **overrides):
    """The full settings of a run: task, component modes, seed and hyper-parameters
    (the task's defaults with ``overrides`` applied). ``overrides`` named like a component
    (matmul, norm, softmax, loss, other) set its mode; ``hparams`` are hyper-parameters only
    (the way to set the ``norm`` placement, pre/post, which shares a component's name);
    ``pam_offset`` (config.pam_offset) is kept with the component modes.
    Unknown names raise ValueError listing the valid ones, values out of range what is
    allowed. ``precision``: the matmuls' format (config.PRECISIONS; mixed precision)."""
    defaults = task_class(task).defaults      # ValueError for an unknown task
    check_mode_and_seed(mode, seed)
    with config.precision(precision):          # validates it
        pass
    flags = {c: overrides.pop(c, None) for c in (*COMPONENT_FLAGS, config.PAM_OFFSET)}
    components = {c: m for c, m in flags.items() if m is not None}
    if optimizer is not None:
        components["optim"] = optimizer
    with config.mode(mode, **components) as modes:   # validates the component values
        pass
    overrides.update(hparams or {})
    valid = set(defaults) | set(task_parameters(task))
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for task {task!r}; "
                         f"valid: {', '.join(sorted(valid))}")
    hparams = {**defaults, **overrides}
    check_hparams(hparams)
    settings = {"task": task, "mode": mode, "seed": seed, "components": modes, "hparams": hparams}
    if precision != "fp32":          # fp32 runs keep the config.json they always had
        settings["precision"] = precision
    return settings


def check_settings(settings):
    """ValueError unless resolved settings (e.g. a config.json's) can be run: a known task,
    mode and component modes, and exactly the task's hyper-parameters, each in range."""
    task = settings["task"]
    defaults = task_class(task).defaults
    check_mode_and_seed(settings["mode"], settings["seed"])
    with config.precision(settings.get("precision", "fp32")):
        pass
    with config.mode(**settings["components"]):       # validates the component values
        pass
    hparams = settings["hparams"]
    missing = sorted(set(defaults) - set(hparams))
    unknown = sorted(set(hparams) - set(defaults) - set(task_parameters(task)))
    if missing or unknown:
        raise ValueError(f"not the settings of task {task!r}: "
                         + "; ".join(f"{what} {', '.join(keys)}" for what, keys in
                                     (("missing", missing), ("unknown", unknown)) if keys))
    check_hparams(hparams)


def check_mode_and_seed(mode, seed):
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if not integer(0).test(seed):
        raise ValueError(f"bad seed {seed!r} (allowed: an integer >= 0)")


def task_parameters(name):
    """The names of the task constructor's options (e.g. digits' patch_size, shift)."""
    return inspect.signature(task_class(name)).parameters


def task_options(name, hparams):
    """The settings that go to the task's constructor."""
    accepted = task_parameters(name)
    return {k: v for k, v in hparams.items() if k in accepted}




class Allowed:
    """What a setting may hold: ``test(value)`` and the words that say so."""

    def __init__(self, test, words):
        self.test, self.words = test, words


def integer(low):
    return Allowed(lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= low,
                   f"an integer >= {low}")


def number(low, high=None, low_open=False):
    def test(v):
        if not isinstance(v, Real) or isinstance(v, bool) or v != v:     # no NaN
            return False
        return (v > low if low_open else v >= low) and (high is None or v < high)
    words = f"a number {'>' if low_open else '>='} {low}"
    return Allowed(test, words + (f" and < {high}" if high is not None else ""))


def one_of(*choices):
    return Allowed(lambda v: any(v is c or (type(v) is type(c) and v == c) for c in choices),
                   "one of " + ", ".join(map(str, choices)))


POSITIVE = number(0, low_open=True)
FRACTION = number(0, 1)

# each setting of any task that has it (a task checks its own others in its constructor)
RULES = {
    **dict.fromkeys(("steps", "batch_size", "d_model", "n_heads", "n_layers", "n_enc_layers",
                     "n_dec_layers", "d_ff", "beam", "patch_size", "train_digits",
                     "eval_digits"), integer(1)),
    "warmup": integer(0), "shift": integer(0),
    "lr": POSITIVE, "eps": POSITIVE, "min_lr": number(0), "weight_decay": number(0),
    "dropout": FRACTION, "label_smoothing": FRACTION,
    "clip": Allowed(lambda v: v is None or POSITIVE.test(v), "null (no clipping) or a number > 0"),
    "betas": Allowed(lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                     and all(map(FRACTION.test, v)), "two numbers >= 0 and < 1, e.g. [0.9,0.999]"),
    "norm": one_of("pre", "post"), "activation": one_of("relu", "gelu"),
    "schedule": one_of(*optim.SCHEDULES), "position_coupling": one_of(True, False),
    "depth": Allowed(lambda v: integer(8).test(v) and (v - 2) % 6 == 0,
                     "6n + 2 for an integer n >= 1: 8, 14, 20, 32, ..."),
    "widths": Allowed(lambda v: isinstance(v, (list, tuple)) and len(v) == 3
                      and all(map(integer(1).test, v)), "three integers >= 1, e.g. [16,32,64]"),
    "crop_padding": integer(0), "flip": one_of(True, False),
}


def check_hparams(hparams):
    """ValueError naming every setting out of range and what it may hold."""
    problems = [f"{k}={v!r} (allowed: {RULES[k].words})" for k, v in hparams.items()
                if k in RULES and not RULES[k].test(v)]
    if not problems and "n_heads" in hparams and "d_model" in hparams \
            and hparams["d_model"] % hparams["n_heads"]:
        problems.append(f"n_heads={hparams['n_heads']} does not divide "
                        f"d_model={hparams['d_model']} (each head has d_model/n_heads dims)")
    if problems:
        raise ValueError("bad setting(s): " + "; ".join(problems))
