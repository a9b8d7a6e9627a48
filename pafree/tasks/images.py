"""What the CNN tasks (digits-cnn, cifar10) share: images kept as integer pixels, turned
into the network's float32 input by table look-up, index-only augmentation, and the
classification loss, predictor, metric and ``pafree predict`` answers.

A task holds ``pixels[split]`` (N, C, H, W) uint8, ``labels[split]`` and a normalization
table (C, 256) float32: the input of pixel value v in channel c is ``table[c, v]`` =
(v - mean_c) / std_c, the train split's statistics, computed once when the task is built.
Turning a batch into floats is then a gather, with no float arithmetic at all, in any mode.

Augmentation (``crop_flip``): a random crop of the image padded by zero pixels and a
random horizontal flip, as integer index arithmetic on the pixels.
"""
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..ops import unbuffered
from ..ops.indices import index_range
from .base import Metric, Task, check_split, epoch_indices, image_indices
from .metrics import accuracy

EVAL_BATCH = 250        # evaluation and prediction go through the network this many at a time


@dataclass
class PixelBatch:
    images: np.ndarray      # (N, C, H, W) float32, normalized
    labels: np.ndarray      # (N,) int64 class ids


def normalization_table(pixels):
    """(C, 256) float32: (v - mean_c) / std_c for every pixel value v of each channel c, from
    the per-channel histogram of ``pixels`` (N, C, H, W) uint8 (data preparation, float64)."""
    table = []
    values = np.arange(256, dtype=np.float64)
    for channel in np.moveaxis(pixels, 1, 0):
        counts = np.bincount(channel.reshape(-1), minlength=256)
        mean = (counts * values).sum() / counts.sum()
        std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
        table.append((values - mean) / (std if std > 0 else 1.0))
    return np.array(table, dtype=np.float32)


def crop_flip(pixels, rng, padding, flip):
    """Each image (N, C, H, W) cut at a random offset from itself padded by ``padding`` zero
    pixels on every side, and mirrored left-right with probability 1/2 if ``flip``."""
    n, c, h, w = pixels.shape
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), pixels.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = pixels
    offsets = rng.integers(0, 2 * padding + 1, (n, 2))
    columns = index_range(w)
    if flip:
        mirrored = rng.integers(0, 2, n).astype(bool)
        columns = unbuffered.where(mirrored[:, None], columns[::-1], columns)
    rows = unbuffered.apply(np.add, offsets[:, :1], index_range(h))        # (N, H) source rows
    cols = unbuffered.apply(np.add, offsets[:, 1:], columns)               # (N, W) source cols
    return padded[index_range(n)[:, None, None, None], index_range(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


class ImageClassification(Task):
    """A CNN task over ``pixels``, ``labels`` and ``table`` (set by the subclass), with
    ``crop_padding`` and ``flip`` as its augmentation. Metric: accuracy."""

    metric = Metric("accuracy", "fraction of test images classified correctly")
    predict_inputs = "test image indices (cifar10, digits-cnn)"
    class_names = tuple(map(str, range(10)))       # what ``pafree predict`` prints
    n_classes = 10

    def size(self, split):
        check_split(split)
        return len(self.labels[split])

    def normalized(self, pixels):
        """The float32 network input of uint8 ``pixels`` (N, C, H, W): a table look-up."""
        return self.table[index_range(pixels.shape[1])[None, :, None, None], pixels]

    def images(self, split, index):
        """The float32 network input of ``pixels[split][index]``."""
        return self.normalized(self.pixels[split][index])

    def train_batch(self, step, batch_size, seed):
        idx = epoch_indices(step, batch_size, self.size("train"), seed)
        pixels = self.pixels["train"][idx]
        if self.crop_padding or self.flip:
            pixels = crop_flip(pixels, np.random.default_rng([seed, step, 1]),
                               self.crop_padding, self.flip)
        return PixelBatch(self.normalized(pixels), self.labels["train"][idx])

    def batches(self, split, batch_size):
        for i in range(0, self.size(split), batch_size):
            yield PixelBatch(self.images(split, slice(i, i + batch_size)),
                             self.labels[split][i:i + batch_size])

    def loss(self, model, batch, label_smoothing):
        return F.cross_entropy(model(batch.images), batch.labels, label_smoothing=label_smoothing)

    def predictor(self, model, hparams, beam=None):
        return lambda images: model(images).data.argmax(axis=1)

    def predicted(self, classify, split, index):
        """Predicted classes of ``pixels[split][index]``, EVAL_BATCH images at a time."""
        index = index_range(self.size(split))[index]
        return np.concatenate([np.asarray(classify(self.images(split, index[i:i + EVAL_BATCH])))
                               .reshape(-1) for i in range(0, len(index), EVAL_BATCH)])

    def evaluate(self, classify, split, limit=None):
        """``classify(images (N, C, H, W) float32) -> (N,) class ids``; returns the accuracy."""
        predicted = self.predicted(classify, split, slice(None, limit))
        return {"accuracy": accuracy(predicted, self.labels[split][:limit])}

    def answer(self, classify, inputs):
        chosen = image_indices(inputs, self.size("test"))
        predicted = self.predicted(classify, "test", chosen)
        names = self.class_names
        return [f"test image {i}: predicted {names[p]} (label {names[self.labels['test'][i]]})"
                for i, p in zip(chosen, predicted)]
