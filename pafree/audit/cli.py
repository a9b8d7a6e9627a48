"""``pafree audit``: run whole training steps and prove no float multiply ran.

Exit status: 0 for a clean verdict, 1 when forbidden float arithmetic was
found (always the case in mode standard or pa-matmul), 2 for a usage error.
``--machine``: the machine-level layer (machine.py), with the same exit status.
"""
import sys


def add_arguments(parser):
    parser.add_argument("--task", default="numbers",
                        help="digits, numbers or addition (default numbers)")
    parser.add_argument("--mode", default="pa",
                        help="pa (default), pa-matmul or standard: the last two multiply and fail")
    parser.add_argument("--steps", type=int, default=1, help="training steps to audit (default 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch size (default: the task's)")
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
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    try:
        report = audit_training_step(task=args.task, mode=args.mode, steps=args.steps,
                                     eval_examples=args.eval_examples, ptx=args.ptx,
                                     seed=args.seed, **overrides)
    except ValueError as err:
        print(f"pafree audit: error: {err}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def run_machine(args):
    from .machine import MachineAuditError, audit_machine
    if args.steps != 1 or args.ptx:
        print("pafree audit: error: --machine audits exactly one step; no --steps, --ptx",
              file=sys.stderr)
        return 2
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    try:
        report = audit_machine(task=args.task, mode=args.mode, seed=args.seed,
                               eval_examples=args.eval_examples, **overrides)
    except (ValueError, MachineAuditError) as err:
        print(f"pafree audit --machine: error: {err}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1
