"""``pafree predict RUN_DIR INPUT...``: answer inputs with a trained run's model.

The task parses the inputs and writes the answers (see ``Task.answer``): German number
words -> English (numbers, beam search), test image indices -> predicted class (digits),
sums ``a+b`` -> the model's answer (addition). The model runs in the run's arithmetic.
Exit status: 0 answered, 1 bad input or no run there, 2 a broken checkpoint or config file,
130 interrupted.
"""
import sys

from ..tasks import TASKS, task_class
from .run import BrokenFile, Run


def add_arguments(parser):
    inputs = "; ".join(task_class(name).predict_inputs for name in sorted(TASKS))
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `pafree train`")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=inputs)


def run(args):
    try:
        lines = Run.from_directory(args.run_dir).answer(args.inputs)
    except BrokenFile as err:
        print(f"pafree predict: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pafree predict: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"pafree predict: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
