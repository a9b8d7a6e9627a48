"""``pafree audit``: run whole training steps and prove no float multiply ran.

Exit status: 0 for a clean verdict, 1 when forbidden float arithmetic (or code the
audit could not check) was found (always the case in mode standard or pa-matmul),
2 for a usage error (bad option or setting), 3 when the audited code itself raised
(the exception's summary is printed) or the audit could not finish.
``--machine``: the machine-level layer (machine.py): 0 all counts zero, 1 counted, 2 usage
or a missing tool chain.
"""
import sys


def step_list(text):
    """--at: 'schedule' or comma-separated step numbers, e.g. 0,99,100,1000."""
    if text == "schedule":
        return text
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"expected 'schedule' or step numbers like 0,9,10, "
                                         f"got {text!r}") from None


def add_arguments(parser):
    from ..run.train_cli import setting_value
    parser.add_argument("--task", default="numbers",
                        help="digits, numbers or addition (default numbers)")
    parser.add_argument("--mode", default="pa",
                        help="pa (default), pa-matmul or standard: the last two multiply and fail")
    parser.add_argument("--at", type=step_list, default="schedule", metavar="STEPS",
                        help="the steps to audit, each from the state a real run has there "
                             "(optimizer step count, bias correction, schedule position), e.g. "
                             "0,9,10; default 'schedule': the first, the last warm-up step, the "
                             "first after it, one mid-decay and the last")
    parser.add_argument("--steps", type=int, default=None,
                        help="audit steps 0 to STEPS-1 instead of --at")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch size (default: the task's)")
    parser.add_argument("--set", type=setting_value, action="append", default=[],
                        metavar="KEY=VALUE", help="any other setting of the run, e.g. steps=100")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="the run's matmul precision (pafree train --precision)")
    parser.add_argument("--eval-examples", type=int, default=2,
                        help="validation examples for the audited evaluation pass (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptx", action="store_true",
                        help="also compile every CUDA kernel to PTX and scan it (no GPU needed)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--machine", action="store_true",
                        help="instead: count every float multiply-like instruction the CPU "
                             "executes in one step and the evaluation pass, under Valgrind "
                             "(needs valgrind and gcc; see pafree/audit/machine.py)")


def run(args):
    if args.machine:
        return run_machine(args)
    from .step import audit_training_step
    overrides = dict(args.set)
    overrides["run_steps"] = overrides.pop("steps", None)     # the run's length, not --steps
    overrides["precision"] = args.precision
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    at = None if args.steps is not None else args.at
    try:
        report = audit_training_step(task=args.task, mode=args.mode, steps=args.steps or 1,
                                     at=at, eval_examples=args.eval_examples, ptx=args.ptx,
                                     seed=args.seed, **overrides)
    except ValueError as err:          # settings: the audited code's own errors are in the report
        print(f"pafree audit: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:           # the audit itself failed: say so, never a bare crash
        print(f"pafree audit: no verdict: the audit failed with {type(err).__name__}: {err}",
              file=sys.stderr)
        return 3
    print(report.to_json() if args.json else report.to_text())
    if report.error:
        print(f"pafree audit: the audited code raised {report.error}", file=sys.stderr)
    return report.exit_status


def run_machine(args):
    from .machine import MachineAuditError, audit_machine
    if args.steps is not None or args.ptx:
        print("pafree audit: error: --machine audits exactly one step; no --steps, --ptx",
              file=sys.stderr)
        return 2
    overrides = dict(args.set, precision=args.precision)
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    try:
        report = audit_machine(task=args.task, mode=args.mode, seed=args.seed,
                               eval_examples=args.eval_examples, **overrides)
    except (ValueError, MachineAuditError) as err:
        print(f"pafree audit --machine: error: {err}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1
