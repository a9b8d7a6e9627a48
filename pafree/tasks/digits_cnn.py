"""digits-cnn: the 8x8 digits of the ``digits`` task (the same split, 1,257 / 180 / 360),
for a small pre-activation ResNet instead of a ViT.

The images are the pixel values 0..16 as (N, 1, 8, 8) uint8, normalized by table look-up
with the train split's mean and standard deviation (``pafree.tasks.images``): the same
inputs as ``digits`` up to float rounding. Training batches are augmented by a random
crop of the image padded by ``crop_padding`` blank pixels (1: a shift of up to one pixel,
like ``digits``); no flips (digits are not mirror-symmetric).
"""
import numpy as np

from ..models import PreActResNet
from .digits import load_split
from .images import ImageClassification, normalization_table

DEFAULTS = {
    "depth": 8, "widths": (16, 32, 64), "crop_padding": 1, "flip": False,
    "label_smoothing": 0.1, "steps": 1000, "batch_size": 64, "lr": 5e-3, "warmup": 50,
    "schedule": "cosine", "min_lr": 0.0, "weight_decay": 0.05, "betas": (0.9, 0.999),
    "eps": 1e-8, "clip": 1.0,
}


class DigitsCNNTask(ImageClassification):
    """The digits task for a CNN; ``crop_padding`` and ``flip`` (augmentation) are options."""

    name = "digits-cnn"
    defaults = DEFAULTS

    def __init__(self, crop_padding=DEFAULTS["crop_padding"], flip=DEFAULTS["flip"]):
        images, labels, splits = load_split()
        pixels = images.astype(np.uint8)[:, None]          # (1797, 1, 8, 8), values 0..16
        self.pixels = {s: pixels[i] for s, i in zip(("train", "valid", "test"), splits)}
        self.labels = {s: labels[i] for s, i in zip(("train", "valid", "test"), splits)}
        self.table = normalization_table(self.pixels["train"])
        self.crop_padding, self.flip = crop_padding, flip

    def build_model(self, hparams, seed):
        return PreActResNet(hparams["depth"], hparams["widths"], in_channels=1,
                            n_classes=self.n_classes, seed=seed)
