"""Which arithmetic each model component uses.

Components: ``matmul``, ``norm``, ``softmax`` (attention), ``loss``, ``other``,
each ``"standard"`` (the float baseline), ``"pa-exact"`` or ``"pa-approx"``
(PA forward, exact or approximate derivatives); ``optim`` is ``"standard"`` or
``"pa"`` and is read by the optimizer.

    config.set("pa")                               # a preset
    with config.mode("pa-matmul", loss="pa-exact"):  # preset plus overrides, restored on exit
        ...

``pam_offset``: the output offset alpha of the paper's section 2.7 on the PA matmuls (each
PAM matmul's output ⊙ float32(alpha), itself a PAM); None (the default, and what a preset
sets) leaves it off. Set like a component: ``config.mode("pa", pam_offset=1.0566)``.
"""
import contextlib

COMPONENT_MODES = ("standard", "pa-exact", "pa-approx")   # matmul, norm, softmax, loss, other
OPTIM_MODES = ("standard", "pa")                         # the optimizer (pafree.optim)
COMPONENTS = ("matmul", "norm", "softmax", "loss", "other", "optim")
ALLOWED = {c: COMPONENT_MODES for c in COMPONENTS[:-1]} | {"optim": OPTIM_MODES}

PRESETS = {     # a whole configuration by name (the --mode of training runs)
    "standard": dict.fromkeys(COMPONENTS, "standard"),
    "pa-matmul": dict.fromkeys(COMPONENTS, "standard") | {"matmul": "pa-approx"},
    # the paper's best fully piecewise affine setting: approx everywhere, exact loss
    "pa": dict.fromkeys(COMPONENTS[:-1], "pa-approx") | {"loss": "pa-exact", "optim": "pa"},
}

PAM_OFFSET = "pam_offset"

_current = dict(PRESETS["standard"])

# The format of the matmuls' operands, outputs and their gradients (mixed precision, see
# pafree.functional.matmul); everything else, and the master weights, stay float32.
PRECISIONS = ("fp32", "bf16", "fp16")
_precision = ["fp32"]


def _resolve(preset, overrides):
    modes = dict(_current)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        modes.update(PRESETS[preset])
        modes.pop(PAM_OFFSET, None)
    for component, mode in overrides.items():
        if component == PAM_OFFSET:
            if mode is not None and not (isinstance(mode, (int, float)) and 0 < mode < float("inf")):
                raise ValueError(f"pam_offset must be a number > 0 or None, got {mode!r}")
            modes.pop(PAM_OFFSET, None)
            if mode is not None:
                modes[PAM_OFFSET] = float(mode)
            continue
        if component not in ALLOWED:
            raise ValueError(f"unknown component {component!r}; choose from {COMPONENTS}")
        if mode not in ALLOWED[component]:
            raise ValueError(f"{component}: unknown mode {mode!r}; choose from {ALLOWED[component]}")
        modes[component] = mode
    return modes


def set(preset=None, **overrides):
    """Set the modes: a preset name, then per-component overrides."""
    modes = _resolve(preset, overrides)
    _current.clear()
    _current.update(modes)


@contextlib.contextmanager
def mode(preset=None, **overrides):
    """Like ``set`` for the body of a ``with`` block; the previous modes come back after."""
    saved = dict(_current)
    set(preset, **overrides)
    try:
        yield get()
    finally:
        _current.clear()
        _current.update(saved)


def get():
    """A copy of the current modes, component -> mode."""
    return dict(_current)


def mode_of(component):
    return _current[component]


def pam_offset():
    """The output offset alpha of the PA matmuls, or None."""
    return _current.get(PAM_OFFSET)


@contextlib.contextmanager
def precision(name):
    """The matmul precision ("fp32", "bf16" or "fp16") for the body of a ``with`` block."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose from {PRECISIONS}")
    saved = _precision[0]
    _precision[0] = name
    try:
        yield name
    finally:
        _precision[0] = saved


def precision_of():
    return _precision[0]
