"""cifar10: the CIFAR-10 images (32x32 colour, 10 classes), read from the binary version's
files in ``--set data_dir=DIR``, for a pre-activation ResNet-20. Nothing is downloaded.

DIR holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` (as the
archive cifar-10-binary.tar.gz unpacks into ``cifar-10-batches-bin/``): records of 1 label
byte (0..9) and 3,072 pixel bytes (the 1,024 red, then green, then blue values of a 32x32
image, rows top to bottom), 10,000 records (30,730,000 bytes) per file. Any positive whole
number of records is read, so tests can write small files; a missing file, a size that is
not whole records or a label outside 0..9 is an error naming the file and what was
expected.

Splits: the records of the five training files in order, the first nine tenths train
(45,000 images), the last tenth valid (5,000); test = test_batch.bin (10,000). Pixels stay uint8; a batch becomes
the network's float32 input by look-up in a per-channel normalization table (mean and
standard deviation of the train split, computed once when the task is built; see
``pafree.tasks.images``). Training batches are augmented by a random crop of the image
padded by ``crop_padding`` (4) black pixels and a random horizontal flip (``flip``).
"""
import os

import numpy as np

from ..models import PreActResNet
from .images import ImageClassification, normalization_table

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32        # bytes: the label, then the pixels (CHW)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
LAYOUT = ("CIFAR-10 binary version: data_batch_1.bin ... data_batch_5.bin and "
          "test_batch.bin, records of 1 label byte (0..9) + 3072 pixel bytes")

DEFAULTS = {
    "data_dir": "data/cifar-10-batches-bin", "depth": 20, "widths": (16, 32, 64),
    "crop_padding": 4, "flip": True, "label_smoothing": 0.0, "steps": 35000,
    "batch_size": 128, "lr": 2e-3, "warmup": 500, "schedule": "cosine", "min_lr": 0.0,
    "weight_decay": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "clip": None,
}


def read_batch_file(path):
    """(labels (n,) int64, pixels (n, 3, 32, 32) uint8) of one CIFAR-10 binary file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing (cifar10 reads the {LAYOUT}, from --set "
                                f"data_dir=DIR; nothing is downloaded)")
    records = np.fromfile(path, dtype=np.uint8)
    if records.size == 0 or records.size % RECORD:
        raise ValueError(f"{path}: {records.size:,} bytes is not a positive whole number of "
                         f"{RECORD}-byte records (1 label byte + 3072 pixel bytes; a real "
                         f"file is 10,000 records, {10000 * RECORD:,} bytes)")
    records = records.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= len(CLASSES))
    if bad.size:
        raise ValueError(f"{path}: label {labels[bad[0]]} in record {bad[0]} is outside "
                         f"0..{len(CLASSES) - 1}")
    return labels, records[:, 1:].reshape(-1, *SHAPE)


def write_random_files(directory, records, seed=0):
    """The six files of the binary version in ``directory``, ``records`` random records each:
    data of the real shape and layout, for timing a step without the data set."""
    rng = np.random.default_rng(seed)
    for name in TRAIN_FILES + (TEST_FILE,):
        data = rng.integers(0, 256, (records, RECORD), dtype=np.uint8)
        data[:, 0] %= len(CLASSES)
        data.tofile(os.path.join(directory, name))


class Cifar10Task(ImageClassification):
    """CIFAR-10 from ``data_dir``; ``crop_padding`` and ``flip`` (augmentation) are options."""

    name = "cifar10"
    defaults = DEFAULTS
    class_names = CLASSES

    def __init__(self, data_dir=DEFAULTS["data_dir"], crop_padding=DEFAULTS["crop_padding"],
                 flip=DEFAULTS["flip"]):
        if not isinstance(data_dir, str) or not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir={data_dir!r} is not a directory (cifar10 reads "
                                    f"the {LAYOUT}, from --set data_dir=DIR)")
        parts = [read_batch_file(os.path.join(data_dir, f)) for f in TRAIN_FILES]
        labels = np.concatenate([p[0] for p in parts])
        pixels = np.concatenate([p[1] for p in parts])
        train = len(labels) - len(labels) // 10
        test_labels, test_pixels = read_batch_file(os.path.join(data_dir, TEST_FILE))
        self.pixels = {"train": pixels[:train], "valid": pixels[train:], "test": test_pixels}
        self.labels = {"train": labels[:train], "valid": labels[train:], "test": test_labels}
        self.table = normalization_table(self.pixels["train"])
        self.crop_padding, self.flip = crop_padding, flip

    def build_model(self, hparams, seed):
        return PreActResNet(hparams["depth"], hparams["widths"], in_channels=3,
                            n_classes=self.n_classes, seed=seed)
