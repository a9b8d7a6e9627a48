"""The CNN tasks: the CIFAR-10 binary reader on small files written here in the real format,
its errors, the normalization table, crop/flip augmentation, digits-cnn's split, and both
tasks trained (a few steps), checkpointed and answering ``pafree predict``."""
import numpy as np
import pytest

from pafree.tasks import get_task
from pafree.tasks import cifar10
from pafree.tasks.images import crop_flip, normalization_table

TINY = dict(steps=2, batch_size=4, depth=8, widths=[2, 4, 4], warmup=0)


def write_cifar(directory, records=(7, 7, 7, 7, 8), test=5, seed=0):
    """Files in the CIFAR-10 binary layout: per record 1 label byte, then 3072 pixel bytes
    (red plane, green plane, blue plane, each 32 rows of 32). Returns what was written."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in zip(cifar10.TRAIN_FILES + (cifar10.TEST_FILE,), (*records, test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        with open(directory / name, "wb") as f:
            for label, image in zip(labels, pixels):
                f.write(bytes([label]))
                for channel in image:
                    for row in channel:
                        f.write(bytes(row.tolist()))
        written[name] = (labels, pixels)
    return written


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cifar")
    return directory, write_cifar(directory)


def test_cifar_reader_reads_the_binary_layout_and_splits(cifar_dir):
    directory, written = cifar_dir
    task = get_task("cifar10", data_dir=str(directory))
    labels = np.concatenate([written[f][0] for f in cifar10.TRAIN_FILES])
    pixels = np.concatenate([written[f][1] for f in cifar10.TRAIN_FILES])
    assert task.size("train") == 33 and task.size("valid") == 3 and task.size("test") == 5
    np.testing.assert_array_equal(task.labels["train"], labels[:33])
    np.testing.assert_array_equal(task.labels["valid"], labels[33:])
    np.testing.assert_array_equal(task.pixels["train"], pixels[:33])
    np.testing.assert_array_equal(task.pixels["test"], written["test_batch.bin"][1])
    # the network's input: per-channel standardisation by the train split's statistics
    x = pixels[:33].astype(np.float64)
    mean, std = x.mean((0, 2, 3), keepdims=True), x.std((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(task.images("train", slice(0, 4)), ((x - mean) / std)[:4],
                               rtol=1e-5, atol=1e-5)


def test_cifar_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir=.*is not a directory"):
        get_task("cifar10", data_dir=str(tmp_path / "nowhere"))
    write_cifar(tmp_path, records=(1, 1, 1, 1, 1), test=1)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin: missing .*test_batch.bin"):
        get_task("cifar10", data_dir=str(tmp_path))
    write_cifar(tmp_path, records=(1, 1, 1, 1, 1), test=1)
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(ValueError, match="test_batch.bin: 3,083 bytes .*3073-byte records"):
        get_task("cifar10", data_dir=str(tmp_path))
    write_cifar(tmp_path, records=(1, 1, 1, 1, 1), test=1)
    data = bytearray((tmp_path / "data_batch_2.bin").read_bytes())
    data[0] = 10
    (tmp_path / "data_batch_2.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="data_batch_2.bin: label 10 in record 0 .*0..9"):
        get_task("cifar10", data_dir=str(tmp_path))


def test_normalization_table_standardises_each_channel():
    pixels = np.random.default_rng(1).integers(0, 256, (5, 2, 3, 3)).astype(np.uint8)
    table = normalization_table(pixels)
    assert table.shape == (2, 256) and table.dtype == np.float32
    values = table[np.arange(2)[None, :, None, None], pixels].astype(np.float64)
    np.testing.assert_allclose(values.mean((0, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(values.std((0, 2, 3)), 1, atol=1e-5)


@pytest.mark.parametrize("padding,flip", [(0, False), (2, False), (1, True)])
def test_crop_flip_cuts_a_window_of_the_padded_image(padding, flip):
    pixels = np.random.default_rng(2).integers(1, 256, (6, 2, 5, 4)).astype(np.uint8)
    out = crop_flip(pixels, np.random.default_rng(3), padding, flip)
    padded = np.pad(pixels, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    flips_seen = set()
    for image, source in zip(out, padded):
        windows = [source[:, dy:dy + 5, dx:dx + 4] for dy in range(2 * padding + 1)
                   for dx in range(2 * padding + 1)]
        candidates = [mirrored for w in windows for mirrored in (False, True)[:1 + flip]
                      if np.array_equal(image, w[:, :, ::-1] if mirrored else w)]
        assert candidates, "not a window of the padded (mirrored) image"
        flips_seen.update(candidates)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    if padding == 0 and not flip:
        np.testing.assert_array_equal(out, pixels)
    if flip:
        assert flips_seen == {False, True}


def test_digits_cnn_has_the_digits_split_and_inputs():
    cnn, vit = get_task("digits-cnn"), get_task("digits")
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(cnn.labels[split], vit.labels[split])
        np.testing.assert_allclose(cnn.images(split, slice(None))[:, 0], vit.images[split],
                                   rtol=1e-5, atol=1e-5)
    batch = cnn.train_batch(3, 16, seed=1)
    again = cnn.train_batch(3, 16, seed=1)
    np.testing.assert_array_equal(batch.images, again.images)
    assert batch.images.shape == (16, 1, 8, 8) and batch.images.dtype == np.float32


@pytest.mark.parametrize("mode", ["standard", "pa"])
def test_cnn_tasks_train_checkpoint_and_predict(tmp_path, cifar_dir, mode):
    from pafree.run import Run, train
    for task, extra in (("digits-cnn", {}), ("cifar10", {"data_dir": str(cifar_dir[0])})):
        out = tmp_path / task
        final = train(task, mode, out=str(out), progress=False, eval_limit=8, **TINY, **extra)
        assert final["steps"] == 2 and 0 <= final["test_accuracy"] <= 1
        run = Run.from_directory(str(out))
        assert np.abs(run.model.blocks[0].norm1.running_mean.data).sum() > 0   # restored
        lines = run.answer(["0", "2"])
        label = run.task.class_names[run.task.labels["test"][2]]
        assert lines[1].startswith("test image 2: predicted ") and lines[1].endswith(
            f"(label {label})")
        with pytest.raises(ValueError, match="not a test image index"):
            run.answer([str(run.task.size("test"))])
