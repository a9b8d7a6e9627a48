"""The ``pafree`` command. Each subcommand lives in its own module, which
defines ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status)."""
import argparse
import importlib
import sys

from . import __version__

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("pafree.run.train_cli", "Train a task's model, float baseline or piecewise affine"),
    "predict": ("pafree.run.predict_cli", "Answer inputs with a trained run's model"),
    "audit": ("pafree.audit.cli", "Prove that a whole training step runs no float multiply"),
    "figures": ("pafree.figures", "Regenerate the paper's figures and pafree's own"),
    "bench": ("pafree.bench", "Time pafree beside float32 on this machine: GEMM, elementwise, "
                              "training steps"),
    "ablation": ("pafree.run.ablation", "Run the paper's component ablation (its Table 3) on a task"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pafree",
        description="Multiplication-free neural-network training with piecewise affine operations.")
    parser.add_argument("--version", action="version", version=f"pafree {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sub_parser)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return importlib.import_module(COMMANDS[args.command][0]).run(args)


if __name__ == "__main__":
    sys.exit(main())
