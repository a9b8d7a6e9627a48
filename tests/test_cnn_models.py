"""The CNNs: structure, parameter counts, train/eval behaviour, gradients against finite
differences, every mode running (tiny widths: these run the real conv2d)."""
import numpy as np
import pytest

from pafree import F, config, no_grad
from pafree.models import Conv2d, ConvMixer, PreActResNet, VGG

MODES = ["standard", "pa-matmul", "pa"]


def images(n=4, c=3, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, size, size)).astype(np.float32)


def resnet_parameters(depth, widths, channels, classes):
    """Counted from the architecture: convs without bias, BN weight + bias per channel."""
    count, previous = channels * widths[0] * 9, widths[0]
    for stage, width in enumerate(widths):
        for b in range((depth - 2) // 6):
            count += 2 * previous + previous * width * 9 + 2 * width + width * width * 9
            if previous != width or (stage and not b):
                count += previous * width
            previous = width
    return count + 2 * previous + previous * classes + classes


def test_resnet20_structure():
    m = PreActResNet()
    assert len(m.blocks) == 9
    assert [b.conv1.stride for b in m.blocks] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert [b.shortcut is not None for b in m.blocks] == [False] * 3 + [True, False, False] * 2
    assert m.num_parameters() == resnet_parameters(20, (16, 32, 64), 3, 10)
    assert 0.27e6 < m.num_parameters() < 0.28e6           # ResNet-20's "0.27M"
    with pytest.raises(ValueError, match="6n \\+ 2"):
        PreActResNet(depth=21)


@pytest.mark.parametrize("mode", MODES)
def test_every_model_runs_and_trains_in_every_mode(mode):
    x, labels = images(), np.array([0, 1, 2, 3])
    models = [PreActResNet(8, (4, 8, 8)), VGG((4, "M", 8, "M"), image_size=8),
              ConvMixer(dim=8, depth=1, kernel_size=3, patch_size=2)]
    for m in models:
        with config.mode(mode):
            logits = m(x)
            F.cross_entropy(logits, labels).backward()
        assert logits.shape == (4, 10) and np.isfinite(logits.data).all()
        for name, p in m.named_parameters():
            assert p.grad is not None and np.isfinite(p.grad).all(), name
            assert p.grad.shape == p.data.shape


def test_convmixer_depthwise_convolution_has_one_filter_per_channel():
    m = ConvMixer(dim=6, depth=1, kernel_size=3, patch_size=2)
    assert m.blocks[0].depthwise.weight.shape == (6, 1, 3, 3)
    with pytest.raises(ValueError, match="groups"):
        Conv2d(6, 4, 3, np.random.default_rng(0), groups=3)


def test_eval_mode_is_per_image_and_training_moves_the_running_statistics():
    m = PreActResNet(8, (4, 8, 8))
    x = images()
    with config.mode("pa"):
        with no_grad():
            m(x)                                   # training: running statistics move
        assert np.abs(m.norm.running_mean.data).sum() > 0
        m.eval()
        with no_grad():
            whole, alone = m(x).data, m(x[2:3]).data
    np.testing.assert_array_equal(whole[2:3], alone)   # nothing depends on the batch


def test_resnet_gradient_matches_finite_differences_in_the_float_baseline():
    """Central differences with a small step (the loss curves strongly: batch norm over 3
    images); tolerance: 2 % plus the float32 rounding of the loss over the step."""
    m = PreActResNet(8, (2, 4, 4), seed=1)
    h = np.float32(2 ** -12)
    x, labels = images(3, seed=1), np.array([1, 2, 3])

    def loss():
        return F.cross_entropy(m(x), labels)

    with config.mode("standard"):
        loss().backward()
        for p in (m.stem.weight, m.blocks[1].conv1.weight, m.blocks[2].norm2.weight,
                  m.head.weight):
            grad = p.grad.copy()
            for j in list(np.ndindex(p.shape))[::7][:6]:
                saved = p.data[j]
                p.data[j] = saved + h
                with no_grad():
                    up = loss().item()
                p.data[j] = saved - h
                with no_grad():
                    down = loss().item()
                p.data[j] = saved
                assert abs((up - down) / (2 * h) - grad[j]) <= 2e-2 * abs(grad[j]) + 2e-3, j
