"""Convolutional layers and three CNNs built from them (NCHW float32 images).

- ``Conv2d`` (component ``matmul``: ``pafree.functional.conv2d`` lowers to the PAM GEMM),
  ``BatchNorm2d`` (component ``norm``), ``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool2d``
  (the sum over each channel ⊘ its size, component ``other``).
- ``PreActResNet``: the pre-activation ResNet of He et al. (2016) for CIFAR, depth 6n + 2
  (n blocks per stage, three stages), as Mogami (2020) and Kosson & Jaggi's Appendix C
  train it; ``VGG``: plain 3x3 convolutions and max pooling, no batch norm;
  ``ConvMixer`` (Trockman & Kolter 2022): a patch embedding, then depthwise and pointwise
  convolutions with GELU and batch norm.

Weights are initialised with plain numpy (He uniform for convolutions), outside the step.
"""
import numpy as np

from .. import functional as F
from .layers import Linear
from .module import Module, ModuleList, parameter


class Conv2d(Module):
    """y = conv2d(x, weight) + bias; weight (out, in / groups, k, k)."""

    def __init__(self, in_channels, out_channels, kernel_size, rng, stride=1, padding=0,
                 groups=1, bias=True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = (kernel_size, stride,
                                                                    padding, groups)
        fan_in = in_channels // groups * kernel_size * kernel_size
        bound = np.sqrt(6.0 / fan_in)                     # He uniform: ReLU keeps the scale
        self.weight = parameter(rng.uniform(-bound, bound, size=(
            out_channels, in_channels // groups, kernel_size, kernel_size)))
        self.bias = parameter(np.zeros(out_channels)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        groups=self.groups)

    def extra_repr(self):
        groups = f", groups={self.groups}" if self.groups > 1 else ""
        return (f"{self.in_channels} -> {self.out_channels}, {self.kernel_size}x"
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding}{groups}")


class BatchNorm2d(Module):
    """Per-channel batch normalization: the batch's statistics while training (the running
    averages move by ``momentum``), the running statistics in evaluation."""

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        super().__init__()
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.weight = parameter(np.ones(channels))
        self.bias = parameter(np.zeros(channels))
        self.register_buffer("running_mean", np.zeros(channels))
        self.register_buffer("running_var", np.ones(channels))

    def forward(self, x):
        return F.batch_norm(x, self.weight, self.bias, self.running_mean.data,
                            self.running_var.data, training=self.training,
                            momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return str(self.channels)


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size

    def extra_repr(self):
        return f"{self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class PreActBlock(Module):
    """BN -> ReLU -> conv3x3 (stride) -> BN -> ReLU -> conv3x3, plus the shortcut: the
    identity, or a strided 1x1 convolution of the pre-activated input where the shape
    changes."""

    def __init__(self, in_channels, out_channels, stride, rng):
        super().__init__()
        self.norm1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, rng, stride=stride, padding=1,
                            bias=False)
        self.norm2 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, rng, padding=1, bias=False)
        self.shortcut = (Conv2d(in_channels, out_channels, 1, rng, stride=stride, bias=False)
                         if stride != 1 or in_channels != out_channels else None)

    def forward(self, x):
        out = F.relu(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.norm2(self.conv1(out))))
        return out + shortcut


class PreActResNet(Module):
    """Pre-activation ResNet of depth 6n + 2: a 3x3 stem, three stages of n blocks (widths
    ``widths``, the second and third starting with stride 2), BN -> ReLU, global average
    pooling and a linear classifier. Depth 20 (n = 3) with widths 16/32/64 is ResNet-20."""

    def __init__(self, depth=20, widths=(16, 32, 64), in_channels=3, n_classes=10, seed=0):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth={depth}: a pre-activation ResNet has depth 6n + 2 "
                             f"(8, 14, 20, 32, 56, 110, ...)")
        rng = np.random.default_rng(seed)
        self.depth, self.widths = depth, tuple(widths)
        self.stem = Conv2d(in_channels, widths[0], 3, rng, padding=1, bias=False)
        blocks, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for b in range((depth - 2) // 6):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(PreActBlock(channels, width, stride, rng))
                channels = width
        self.blocks = ModuleList(blocks)
        self.norm = BatchNorm2d(channels)
        self.pool = GlobalAvgPool2d()
        self.head = Linear(channels, n_classes, rng)

    def forward(self, images):
        x = self.stem(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(F.relu(self.norm(x))))

    def extra_repr(self):
        return f"depth={self.depth}, widths={self.widths}"


class VGG(Module):
    """3x3 convolutions (padding 1) with ReLU and 2x2 max pooling, no batch norm, then a
    linear classifier on the flattened features. ``layers``: widths, "M" for a pool
    (VGG13 for CIFAR: 64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)."""

    def __init__(self, layers=(32, "M", 64, "M", 128, "M"), in_channels=3, image_size=32,
                 n_classes=10, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.layers = tuple(layers)
        stack, channels, size = [], in_channels, image_size
        for layer in layers:
            if layer == "M":
                stack.append(MaxPool2d(2))
                size //= 2
            else:
                stack.append(Conv2d(channels, layer, 3, rng, padding=1))
                channels = layer
        self.features = ModuleList(stack)
        self.head = Linear(channels * size * size, n_classes, rng)

    def forward(self, images):
        x = images
        for layer in self.features:
            x = layer(x) if isinstance(layer, MaxPool2d) else F.relu(layer(x))
        return self.head(x.reshape(x.shape[0], -1))

    def extra_repr(self):
        return ", ".join(map(str, self.layers))


class ConvMixerBlock(Module):
    """x + BN(GELU(depthwise conv k x k)), then BN(GELU(pointwise conv))."""

    def __init__(self, dim, kernel_size, rng):
        super().__init__()
        self.depthwise = Conv2d(dim, dim, kernel_size, rng, padding=kernel_size // 2,
                                groups=dim)
        self.norm1 = BatchNorm2d(dim)
        self.pointwise = Conv2d(dim, dim, 1, rng)
        self.norm2 = BatchNorm2d(dim)

    def forward(self, x):
        x = x + self.norm1(F.gelu(self.depthwise(x)))
        return self.norm2(F.gelu(self.pointwise(x)))


class ConvMixer(Module):
    """ConvMixer-dim/depth: a patch embedding (conv with kernel = stride = patch_size),
    GELU, BN, ``depth`` mixer blocks, global average pooling, a linear classifier
    (the appendix trains ConvMixer-256/8)."""

    def __init__(self, dim=64, depth=4, kernel_size=5, patch_size=2, in_channels=3,
                 n_classes=10, seed=0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: odd sizes keep the image size")
        rng = np.random.default_rng(seed)
        self.dim, self.depth = dim, depth
        self.embed = Conv2d(in_channels, dim, patch_size, rng, stride=patch_size)
        self.norm = BatchNorm2d(dim)
        self.blocks = ModuleList([ConvMixerBlock(dim, kernel_size, rng) for _ in range(depth)])
        self.pool = GlobalAvgPool2d()
        self.head = Linear(dim, n_classes, rng)

    def forward(self, images):
        x = self.norm(F.gelu(self.embed(images)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x))

    def extra_repr(self):
        return f"dim={self.dim}, depth={self.depth}"
