"""``pafree predict RUN_DIR INPUT...``: answer inputs with a trained run's model.

- numbers:  German number words -> English (beam search, the run's beam width);
- digits:   indices of test images -> predicted class (and the true label);
- addition: sums written ``a+b`` -> the model's answer (and the true sum).

The model runs in the run's arithmetic (float or piecewise affine).
"""
import json
import os
import sys

from . import config
from .autograd import no_grad
from .train import CHECKPOINT, Run, predictor


def load_run(run_dir):
    """The run in ``run_dir`` with the parameters of its checkpoint."""
    ckpt = os.path.join(run_dir, CHECKPOINT)
    if not os.path.exists(ckpt):
        raise FileNotFoundError(f"no checkpoint in {run_dir!r} (expected {ckpt})")
    with open(os.path.join(run_dir, "config.json")) as f:
        run = Run(json.load(f))
    run.load(ckpt)
    run.model.eval()
    return run


def predict(run, inputs):
    """One answer line per input."""
    with config.mode(**run.modes), no_grad():
        return PREDICTORS[run.task.kind](run, inputs)


def translate(run, words):
    task = run.task
    sources = []
    for word in words:
        try:
            sources.append(task.encode_source(word))
        except ValueError as err:
            raise ValueError(f"cannot translate {word!r}: {err}") from None
    outputs = predictor(task, run.model, run.hparams)(sources)
    return [f"{w} -> {task.decode_target(o)}" for w, o in zip(words, outputs)]


def classify(run, indices):
    task = run.task
    n = task.size("test")
    chosen = []
    for text in indices:
        if not text.isdigit() or int(text) >= n:
            raise ValueError(f"{text!r} is not a test image index (0..{n - 1})")
        chosen.append(int(text))
    patches = task.patches("test")[chosen]
    predicted = predictor(task, run.model, run.hparams)(patches)
    return [f"test image {i}: predicted {p} (label {task.labels['test'][i]})"
            for i, p in zip(chosen, predicted)]


def add(run, sums):
    task = run.task
    generate = predictor(task, run.model, run.hparams)
    lines = []
    for text in sums:
        a, b = task.parse(text)
        generated = generate(*task.prompts([a], [b]))[0]
        answer = task.decode_answer(generated)
        shown = answer if answer is not None else "(no number: the model did not end a digit string)"
        lines.append(f"{a}+{b} = {shown} (true {a + b})")
    return lines


PREDICTORS = {"seq2seq": translate, "classify": classify, "lm": add}


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `pafree train`")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="German number words (numbers), test image indices (digits) "
                             "or sums like 123+45 (addition)")


def run(args):
    try:
        lines = predict(load_run(args.run_dir), args.inputs)
    except (ValueError, FileNotFoundError) as err:
        print(f"pafree predict: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
