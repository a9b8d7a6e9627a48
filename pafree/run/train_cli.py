"""``pafree train``: its arguments, what it prints, and its exit status: 0 done, 1 bad
settings or a non-finite loss, 2 a broken checkpoint or config file, 130 interrupted."""
import argparse
import json
import os
import shlex
import sys

from .. import config
from ..tasks import TASKS, task_class
from .loop import Aborted, Interrupted, default_out, train
from .run import CONFIG, DEVICES, BrokenFile, NonFiniteLoss
from .settings import COMPONENT_FLAGS, MODES


FLAGS = {"steps": "--steps", "batch_size": "--batch-size", "lr": "--lr"}   # --set for the rest


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
                        help="digits (ViT), numbers, dates (German->English encoder-decoders), "
                             "addition (decoder-only LM); default digits")
    parser.add_argument("--mode", default="pa", choices=MODES,
                        help="standard = float baseline; pa-matmul = PA matmuls only; "
                             "pa = everything piecewise affine (default)")
    for c in COMPONENT_FLAGS:
        parser.add_argument("--" + c, choices=config.COMPONENT_MODES, default=None,
                            help=f"override the {c} component's arithmetic")
    parser.add_argument("--optimizer", choices=("standard", "pa"), default=None,
                        help="optimizer arithmetic (default: pa in mode pa, else standard)")
    parser.add_argument("--pam-offset", type=float, metavar="ALPHA",
                        help="PA matmul outputs ⊙ ALPHA, the paper's output offset (section 2.7), "
                             "e.g. 1.0566; default none")
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
    parser.add_argument("--compare", action="store_true",
                        help="also train the float baseline (mode standard) on the same data "
                             "and seed, in OUT/baseline, and show both results side by side")
    parser.add_argument("--json", action="store_true",
                        help="print the final metrics as one JSON object on the last line")


def run(args):
    hparams = dict(args.set)
    for key in FLAGS:
        if getattr(args, key) is not None:
            hparams[key] = getattr(args, key)
    components = {c: getattr(args, c) for c in COMPONENT_FLAGS} | {"pam_offset": args.pam_offset}
    out = args.out or default_out(args.task, args.mode, args.seed)
    try:
        final = train(args.task, args.mode, args.seed, args.optimizer, out=out,
                      resume=args.resume, device=args.device, compare=args.compare,
                      hparams=hparams, **components)
    except BrokenFile as err:
        return fail(err, 2)
    except (ValueError, FileExistsError, FileNotFoundError, NonFiniteLoss) as err:
        return fail(err, 1)
    except Interrupted as err:
        print(f"pafree train: {err}", file=sys.stderr)
        return 130
    except Aborted as err:
        return fail(f"{err}; the last checkpoint in {out} is left as it was", 130)
    except KeyboardInterrupt:       # before the signal handlers were installed
        return fail("interrupted before training started", 130)
    baseline = final.pop("baseline", None)
    print(", ".join(f"{k} {v:.4f}" if k.startswith("test_") else f"{k} {v}"
                    for k, v in final.items()))
    metric = task_class(final["task"]).metric
    result = f"test {metric.name} {final['test_' + metric.name]:.4f} ({metric.meaning})"
    if baseline is not None:
        print(side_by_side(final, baseline))
    elif final["mode"] == "standard":
        print(f"{result}: the float baseline")
    else:
        with open(os.path.join(out, CONFIG)) as f:
            settings = json.load(f)
        print(f"{result} in mode {final['mode']}; the float baseline on the same data and "
              f"seed: {baseline_command(settings)}  (or add --compare)")
    if args.json:
        print(json.dumps(final if baseline is None else {**final, "baseline": baseline}))
    return 0


def fail(err, status):
    print(f"pafree train: error: {err}", file=sys.stderr)
    return status


def side_by_side(final, baseline):
    """The run's and the baseline's final numbers as a two-column table."""
    keys = [k for k in final if k.startswith("test_") or k == "train_seconds"]
    width = max(map(len, keys))
    rows = [f"{'':{width}}  {final['mode']:>12}  {baseline['mode']:>12}"]
    for k in keys:
        digits = 1 if k == "train_seconds" else 4
        rows.append(f"{k:{width}}  {final[k]:12.{digits}f}  {baseline[k]:12.{digits}f}")
    return "\n".join(rows)


def baseline_command(settings):
    """The ``pafree train`` command that trains the float baseline of a run's settings."""
    task = settings["task"]
    defaults = task_class(task).defaults
    command = ["pafree", "train", "--task", task, "--mode", "standard",
               "--seed", str(settings["seed"])]
    for key, value in settings["hparams"].items():
        if key not in defaults or json.dumps(value) != json.dumps(defaults[key]):
            if key in FLAGS:
                command += [FLAGS[key], str(value)]
            else:
                command += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return shlex.join(command)
