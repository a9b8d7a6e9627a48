"""Metrics, computed outside the training step (ordinary float math is fine here)."""
import numpy as np
import sacrebleu


def accuracy(pred, labels):
    """Fraction of predicted class ids equal to the labels."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"accuracy: shapes differ: {pred.shape} vs {labels.shape}")
    return float(np.mean(pred == labels)) if labels.size else 0.0


def exact_match(hyps, refs):
    """Fraction of hypothesis strings identical to their reference."""
    if len(hyps) != len(refs):
        raise ValueError(f"exact_match: {len(hyps)} hypotheses for {len(refs)} references")
    return sum(h == r for h, r in zip(hyps, refs)) / len(refs) if refs else 0.0


def bleu(hyps, refs):
    """Corpus BLEU (sacrebleu, default 13a tokenization), 0-100."""
    if len(hyps) != len(refs):
        raise ValueError(f"bleu: {len(hyps)} hypotheses for {len(refs)} references")
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)
