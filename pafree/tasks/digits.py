"""digits: the 8x8 handwritten digits shipped in scikit-learn, for a small ViT.

1,797 grey images of the digits 0-9 (pixel values 0..16). Fixed stratified split
(seed 0): train 1,257 / valid 180 / test 360. Pixels are scaled once at load time to
``(x/16 - mean)/std`` with the train split's global mean and standard deviation.

The task hands the model patches, so the ViT only needs a Linear patch embedding:
``patchify(images, p)`` cuts each image into (8/p)**2 non-overlapping p x p patches in
row-major order, each flattened row-major. Training batches are augmented by a random
shift of up to ``shift`` pixels (zero-filled, a pure re-indexing); evaluation never is.
Metric: accuracy. Model: ``ViT`` over the patches; ``pafree predict`` takes test image
indices.
"""
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..models import ViT, patchify
from .base import (Metric, Task, check_split, epoch_indices, image_indices,
                   transformer_options)
from .metrics import accuracy

SIZES = {"valid": 180, "test": 360}         # train gets the remaining 1,257

DEFAULTS = {
    "patch_size": 4, "shift": 1, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128,
    "dropout": 0.1, "norm": "pre", "activation": "relu", "label_smoothing": 0.1,
    "steps": 1500, "batch_size": 64, "lr": 5e-3, "warmup": 100, "schedule": "cosine",
    "min_lr": 0.0, "weight_decay": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "clip": 1.0,
}


def load_split():
    """(images (1797, 8, 8) pixel values 0..16, labels, (train, valid, test) indices): the
    fixed stratified split (seed 0) of scikit-learn's digits."""
    from sklearn.datasets import load_digits        # slow to import: only when built
    from sklearn.model_selection import train_test_split
    data = load_digits()
    y = data.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=SIZES["test"], stratify=y, random_state=0)
    train, valid = train_test_split(rest, test_size=SIZES["valid"], stratify=y[rest],
                                    random_state=0)
    return data.images, y, (train, valid, test)


@dataclass
class ImageBatch:
    patches: np.ndarray     # (N, n_patches, patch_dim) float32
    labels: np.ndarray      # (N,) int64 class ids


class DigitsTask(Task):
    """The digits task; ``patch_size`` and ``shift`` (augmentation, pixels) are options."""

    name = "digits"
    defaults = DEFAULTS
    metric = Metric("accuracy", "fraction of test images classified correctly")
    predict_inputs = "test image indices (digits)"
    n_classes = 10

    def __init__(self, patch_size=DEFAULTS["patch_size"], shift=DEFAULTS["shift"]):
        if patch_size not in (1, 2, 4, 8):
            raise ValueError(f"patch_size={patch_size!r} (allowed: 1, 2, 4 or 8, the sizes "
                             f"that tile an 8x8 image)")
        pixels, y, (train, valid, test) = load_split()
        x = pixels.astype(np.float64) / 16.0
        mean, std = x[train].mean(), x[train].std()
        x = ((x - mean) / std).astype(np.float32)
        self.background = np.float32(-mean / std)   # the scaled value of a blank pixel
        self.indices = {"train": train, "valid": valid, "test": test}  # into load_digits()
        self.images = {"train": x[train], "valid": x[valid], "test": x[test]}
        self.labels = {"train": y[train], "valid": y[valid], "test": y[test]}
        self.patch_size = patch_size
        self.shift = shift
        self.n_patches = (8 // patch_size) ** 2
        self.patch_dim = patch_size * patch_size

    def size(self, split):
        check_split(split)
        return len(self.labels[split])

    def patches(self, split):
        check_split(split)
        return patchify(self.images[split], self.patch_size)

    def train_batch(self, step, batch_size, seed):
        idx = epoch_indices(step, batch_size, self.size("train"), seed)
        images = self.images["train"][idx]
        if self.shift:
            rng = np.random.default_rng([seed, step, 1])
            images = self.shifted(images, rng.integers(-self.shift, self.shift + 1, (len(idx), 2)))
        return ImageBatch(patchify(images, self.patch_size), self.labels["train"][idx])

    def shifted(self, images, offsets):
        """Each image moved by (rows, cols) = offsets[i], the uncovered border left blank."""
        s = self.shift
        padded = np.pad(images, ((0, 0), (s, s), (s, s)), constant_values=self.background)
        rows = s - offsets[:, 0, None] + np.arange(8)        # (N, 8) source rows
        cols = s - offsets[:, 1, None] + np.arange(8)
        n = np.arange(len(images))[:, None, None]
        return padded[n, rows[:, :, None], cols[:, None, :]]

    def batches(self, split, batch_size):
        patches, labels = self.patches(split), self.labels[split]
        for i in range(0, len(labels), batch_size):
            yield ImageBatch(patches[i:i + batch_size], labels[i:i + batch_size])

    def build_model(self, hparams, seed):
        return ViT(image_size=8, patch_size=self.patch_size, channels=1,
                   n_classes=self.n_classes, n_layers=hparams["n_layers"],
                   **transformer_options(hparams, seed))

    def loss(self, model, batch, label_smoothing):
        logits = model.forward_patches(batch.patches)
        return F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)

    def predictor(self, model, hparams, beam=None):
        return lambda patches: model.forward_patches(patches).data.argmax(axis=1)

    def answer(self, classify, inputs):
        chosen = image_indices(inputs, self.size("test"))
        predicted = classify(self.patches("test")[chosen])
        return [f"test image {i}: predicted {p} (label {self.labels['test'][i]})"
                for i, p in zip(chosen, predicted)]

    def evaluate(self, classify, split, limit=None):
        """``classify(patches (N, P, D) float32) -> (N,) class ids``; returns the accuracy."""
        patches, labels = self.patches(split)[:limit], self.labels[split][:limit]
        return {"accuracy": accuracy(np.asarray(classify(patches)).reshape(-1), labels)}
