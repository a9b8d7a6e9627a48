"""``pafree train``: its arguments and what it prints."""
import argparse
import json
import sys

from .. import config
from ..tasks import TASKS, task_class
from .loop import train
from .run import DEVICES, NonFiniteLoss
from .settings import COMPONENT_FLAGS, MODES

# Float-baseline test accuracy of the default digits run (standard mode, mean of
# seeds 0-2, results/README_results.md), printed beside the result of `pafree train`.
DIGITS_BASELINE = 0.9769


def setting_value(text):
    """KEY=VALUE for --set; VALUE parsed as JSON where it can be (numbers, lists, null)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(parser):
    parser.add_argument("--task", default="digits", choices=sorted(TASKS),
                        help="digits (ViT), numbers (German->English encoder-decoder), "
                             "addition (decoder-only LM); default digits")
    parser.add_argument("--mode", default="pa", choices=MODES,
                        help="standard = float baseline; pa-matmul = PA matmuls only; "
                             "pa = everything piecewise affine (default)")
    for c in COMPONENT_FLAGS:
        parser.add_argument("--" + c, choices=config.MODES, default=None,
                            help=f"override the {c} component's arithmetic")
    parser.add_argument("--optimizer", choices=("standard", "pa"), default=None,
                        help="optimizer arithmetic (default: pa in mode pa, else standard)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the task's)")
    parser.add_argument("--batch-size", type=int, help="default: the task's")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the task's)")
    parser.add_argument("--set", type=setting_value, action="append", default=[],
                        metavar="KEY=VALUE", help="any other task default, e.g. d_model=128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="cuda: train on the GPU (pip install -e .[cuda]; modes with every "
                             "component PA; evaluation runs on the CPU)")
    parser.add_argument("--out", help="run directory (default runs/TASK-MODE-seedSEED)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--json", action="store_true",
                        help="print the final metrics as one JSON object on the last line")


def run(args):
    overrides = dict(args.set)
    for key in ("steps", "batch_size", "lr"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    for c in COMPONENT_FLAGS:
        overrides[c] = getattr(args, c)
    try:
        final = train(args.task, args.mode, args.seed, args.optimizer, out=args.out,
                      resume=args.resume, device=args.device,
                      **overrides)
    except (ValueError, FileExistsError, FileNotFoundError, NonFiniteLoss) as err:
        print(f"pafree train: error: {err}", file=sys.stderr)
        return 1
    metric = task_class(final["task"]).metric.name
    line = ", ".join(f"{k} {v:.4f}" if k.startswith("test_") else f"{k} {v}"
                     for k, v in final.items())
    print(line)
    if final["task"] == "digits":
        print(f"test {metric} {final['test_' + metric]:.4f} in mode {final['mode']}; "
              f"float baseline (README, mean of 3 seeds): {DIGITS_BASELINE:.4f}")
    if args.json:
        print(json.dumps(final))
    return 0
