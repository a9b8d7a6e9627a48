"""addition: integer addition for a decoder-only LM, with optional position coupling.

A sequence is ``BOS a + b = c EOS`` with the digits of the sum c REVERSED (least
significant first, the order in which carries are computed), no zero padding; the loss
counts only the answer digits and EOS. Training operands have 1..``train_digits`` digits
each (lengths drawn independently, then digits uniformly, no leading zero). Evaluation is
per length L = 1..``eval_digits``: both operands have exactly L digits, greedy decoding,
exact match (all answer digits and the EOS). Lengths above ``train_digits`` test length
generalisation.

Held-out pairs: for L >= 2 the valid and test pairs are distinct, disjoint and never
drawn for training (rejected in ``train_batch``). For L = 1 there are only 100 pairs:
valid and test both hold all of them, and training sees them too.

Position ids (``position_coupling``):
- off: 0, 1, 2, ... as usual;
- on (Cho et al. 2024, "Position Coupling"): tokens tied to the same digit significance
  share an id. Operand digits of significance s (s = 0 for units) get ``1 + s + o``. The
  id is aligned with what a token PREDICTS: ``=`` (which predicts the answer's units) gets
  ``1 + o`` and the answer digit of significance s (which predicts significance s + 1)
  gets ``2 + s + o``; so the query that must produce digit s carries the same id as the
  two operand digits it needs. BOS, ``+``, EOS and PAD get 0. The offset ``o`` is random
  per training sequence in 0..eval_digits-train_digits (0 in evaluation), so every id used
  at evaluation lengths has been trained.
"""
from dataclasses import dataclass

import numpy as np

from ..models import DecoderOnlyLM
from .base import Metric, Task, check_split, token_cross_entropy, transformer_options
from .vocab import BOS, EOS, PAD, Vocab

DEFAULTS = {
    "position_coupling": True, "train_digits": 5, "eval_digits": 8,
    "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 256, "dropout": 0.0,
    "norm": "pre", "activation": "relu", "label_smoothing": 0.0,
    "steps": 1500, "batch_size": 64, "lr": 1e-3, "warmup": 100, "schedule": "cosine",
    "min_lr": 0.0, "weight_decay": 0.01, "betas": (0.9, 0.98), "eps": 1e-8, "clip": 1.0,
}
EVAL_SIZES = {"valid": 200, "test": 500}    # pairs per operand length (L = 1: all 100)
SEED = 0


def random_operands(rng, lengths):
    """One integer with exactly lengths[i] digits per entry (1 digit includes 0)."""
    lo = np.where(lengths == 1, 0, 10 ** (lengths - 1))
    return rng.integers(lo, 10 ** lengths)


@dataclass
class LMBatch:
    """Teacher forcing, (N, T) each: inputs, their position ids, next-token targets, and
    1.0 where the target counts in the loss (answer digits and EOS)."""
    tokens: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray


class AdditionTask(Task):
    """Addition ``a+b=`` -> reversed sum (see the module docstring)."""

    name = "addition"
    defaults = DEFAULTS
    metric = Metric("exact_match", "fraction of test sums right, mean over the trained lengths")
    predict_inputs = "sums like 123+45 (addition)"

    def __init__(self, position_coupling=DEFAULTS["position_coupling"],
                 train_digits=DEFAULTS["train_digits"], eval_digits=DEFAULTS["eval_digits"]):
        if not 1 <= train_digits <= eval_digits <= 18:
            raise ValueError("need 1 <= train_digits <= eval_digits <= 18")
        self.vocab = Vocab(list("0123456789+="))
        self.coupled = bool(position_coupling)
        self.train_digits, self.eval_digits = train_digits, eval_digits
        self.max_offset = eval_digits - train_digits if self.coupled else 0
        # one more than the largest id handed out, which is the position offered for the
        # last token generated in evaluation (L + 2 of them after a 2L + 3 token prompt)
        self.n_positions = eval_digits + 4 if self.coupled else 3 * eval_digits + 5
        self.eval_pairs = self.draw_eval_pairs()
        self.heldout = {(int(a), int(b)) for split in ("valid", "test")
                        for L, (aa, bb) in self.eval_pairs[split].items() if L > 1
                        for a, b in zip(aa, bb)}

    def draw_eval_pairs(self):
        """split -> {L: (a, b)} arrays of evaluation operands, fixed by SEED."""
        rng = np.random.default_rng([SEED, self.eval_digits])
        pairs = {"valid": {}, "test": {}}
        for L in range(1, self.eval_digits + 1):
            if L == 1:
                a, b = np.divmod(np.arange(100), 10)
                pairs["valid"][L] = pairs["test"][L] = (a, b)
                continue
            need = EVAL_SIZES["valid"] + EVAL_SIZES["test"]
            seen, a_list, b_list = set(), [], []
            while len(a_list) < need:
                a, b = random_operands(rng, np.array([L, L]))
                if (a, b) not in seen:
                    seen.add((a, b))
                    a_list.append(a)
                    b_list.append(b)
            a, b = np.array(a_list), np.array(b_list)
            nv = EVAL_SIZES["valid"]
            pairs["valid"][L] = (a[:nv], b[:nv])
            pairs["test"][L] = (a[nv:], b[nv:])
        return pairs

    def size(self, split):
        check_split(split)
        if split == "train":
            raise ValueError("the addition training set is drawn afresh for every step")
        return sum(len(a) for a, _ in self.eval_pairs[split].values())

    def sequence(self, a, b, offset=0):
        """Token ids and position ids of the full sequence ``BOS a+b=c EOS`` (c reversed)."""
        da, db, dc = str(a), str(b), str(a + b)[::-1]
        tokens = [BOS] + self.vocab.encode(da + "+" + db + "=" + dc) + [EOS]
        if not self.coupled:
            return tokens, list(range(len(tokens)))
        o = offset
        positions = ([0] + [1 + s + o for s in range(len(da) - 1, -1, -1)] + [0]
                     + [1 + s + o for s in range(len(db) - 1, -1, -1)] + [1 + o]
                     + [2 + s + o for s in range(len(dc))] + [0])
        return tokens, positions

    def make_batch(self, pairs, offsets):
        """Teacher-forcing batch: inputs are the sequence without its last token."""
        seqs = [self.sequence(int(a), int(b), int(o)) for (a, b), o in zip(pairs, offsets)]
        width = max(len(t) for t, _ in seqs) - 1
        batch = LMBatch(tokens=np.full((len(seqs), width), PAD, np.int64),
                        positions=np.zeros((len(seqs), width), np.int64),
                        targets=np.full((len(seqs), width), PAD, np.int64),
                        loss_mask=np.zeros((len(seqs), width), np.float32))
        eq = self.vocab.stoi["="]
        for i, (tokens, positions) in enumerate(seqs):
            n = len(tokens) - 1
            batch.tokens[i, :n] = tokens[:-1]
            batch.positions[i, :n] = positions[:-1]
            batch.targets[i, :n] = tokens[1:]
            batch.loss_mask[i, tokens.index(eq):n] = 1.0   # predict answer digits and EOS
        return batch

    def train_batch(self, step, batch_size, seed):
        """Fresh random pairs for ``step`` (a pure function of seed and step)."""
        rng = np.random.default_rng([seed, step])
        pairs = []
        while len(pairs) < batch_size:
            a, b = random_operands(rng, rng.integers(1, self.train_digits + 1, 2))
            if (int(a), int(b)) not in self.heldout:
                pairs.append((a, b))
        offsets = rng.integers(0, self.max_offset + 1, batch_size)
        return self.make_batch(pairs, offsets)

    def batches(self, split, batch_size):
        check_split(split)
        if split == "train":
            raise ValueError("use train_batch(step, ...) for addition training data")
        for a, b in self.eval_pairs[split].values():
            for i in range(0, len(a), batch_size):
                pairs = list(zip(a[i:i + batch_size], b[i:i + batch_size]))
                yield self.make_batch(pairs, np.zeros(len(pairs), np.int64))

    def build_model(self, hparams, seed):
        return DecoderOnlyLM(len(self.vocab), max_len=self.n_positions,
                             n_layers=hparams["n_layers"], **transformer_options(hparams, seed))

    def loss(self, model, batch, label_smoothing):
        logits = model(batch.tokens, batch.positions)
        return token_cross_entropy(logits, batch.targets, batch.loss_mask > 0, label_smoothing)

    def predictor(self, model, hparams, beam=None):
        return model.generate

    def answer(self, generate, sums):
        lines = []
        for text in sums:
            a, b = self.parse(text)
            answer = self.decode_answer(generate(*self.prompts([a], [b]))[0])
            shown = answer if answer is not None else \
                "(no number: the model did not end a digit string)"
            lines.append(f"{a}+{b} = {shown} (true {a + b})")
        return lines

    def prompts(self, a, b):
        """Prompt ids/positions (N, Tp) for operand pairs whose digit counts are the same
        in every row, and the positions of the tokens to generate (answer digits and EOS,
        longest sum + 1 of them), shape (n_new,)."""
        shapes = {(len(str(int(x))), len(str(int(y)))) for x, y in zip(a, b)}
        if len(shapes) != 1:
            raise ValueError(f"one prompt batch needs equal digit counts, got {sorted(shapes)}")
        (la, lb), = shapes
        n_prompt = la + lb + 3                      # BOS a + b =
        seqs = [self.sequence(int(x), int(y)) for x, y in zip(a, b)]
        tokens = np.array([t[:n_prompt] for t, _ in seqs], np.int64)
        positions = np.array([p[:n_prompt] for _, p in seqs], np.int64)
        k = np.arange(max(la, lb) + 2)
        new_positions = 2 + k if self.coupled else n_prompt + k
        return tokens, positions, new_positions

    def parse(self, text):
        """'123+45' -> (123, 45); anything else raises ValueError saying what is expected."""
        parts = "".join(text.split()).removesuffix("=").split("+")
        if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
            raise ValueError(f"expected an addition such as '123+45' (two non-negative "
                             f"integers), got {text!r}")
        a, b = int(parts[0]), int(parts[1])
        if max(len(str(a)), len(str(b))) > self.eval_digits:
            raise ValueError(f"operands have at most {self.eval_digits} digits here "
                             f"(the position table's limit), got {text!r}")
        return a, b

    def decode_answer(self, generated):
        """The sum as a string from generated ids (reversed digits up to EOS), or None if
        the model did not produce digits followed by EOS."""
        ids = [int(i) for i in generated]
        if EOS not in ids:
            return None
        digits = self.vocab.decode(ids)
        if not digits or not all(d.isdigit() for d in digits):
            return None
        return "".join(digits)[::-1]

    def evaluate(self, generate, split, limit=None):
        """``generate(prompt_tokens (N, Tp), prompt_positions (N, Tp), new_positions (n,))
        -> (N, n) int`` greedy continuations, the k-th generated token being fed back with
        position ``new_positions[k]``. Returns exact match per length (``exact_match_lenL``)
        and ``exact_match``, the mean over the trained lengths 1..train_digits."""
        check_split(split)
        out = {}
        for L, (a, b) in self.eval_pairs[split].items():
            a, b = a[:limit], b[:limit]
            tokens, positions, new_positions = self.prompts(a, b)
            generated = np.asarray(generate(tokens, positions, new_positions))
            out[f"exact_match_len{L}"] = float(np.mean(
                [self.decode_answer(g) == str(x + y) for g, x, y in zip(generated, a, b)]))
        out["exact_match"] = float(np.mean(
            [out[f"exact_match_len{L}"] for L in range(1, self.train_digits + 1)]))
        return out
