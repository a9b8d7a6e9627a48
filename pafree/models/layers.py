"""Layers. Every multiply goes through ``pafree.functional``, whose functions pick
float or piecewise affine arithmetic from ``pafree.config`` (component modes),
so the same layer is the float baseline or multiplication-free.

Weights are initialised with plain numpy from a seeded ``numpy.random.Generator``
(initialisation is outside the training step)."""
import numpy as np

from .. import functional as F
from .module import Module, parameter


def uniform_init(rng, shape, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the usual default for linear layers."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


class Linear(Module):
    """y = x @ weight + bias, weight of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, rng, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = parameter(uniform_init(rng, (in_features, out_features), in_features))
        self.bias = parameter(np.zeros(out_features)) if bias else None

    def forward(self, x):
        # (..., in) as one (rows, in) matrix: one GEMM forward and one per gradient,
        # instead of a batch of small products whose weight gradients are then summed
        y = F.matmul(x.reshape(-1, self.in_features), self.weight)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}"


class Embedding(Module):
    """Rows of a (num_embeddings, dim) table, looked up by integer ids."""

    def __init__(self, num_embeddings, dim, rng, std=0.02):
        super().__init__()
        self.num_embeddings, self.dim = num_embeddings, dim
        self.weight = parameter(rng.normal(0.0, std, size=(num_embeddings, dim)))

    def forward(self, ids):
        return F.embedding(self.weight, np.asarray(ids))

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.dim}"


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = parameter(np.ones(dim))
        self.bias = parameter(np.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def extra_repr(self):
        return str(self.dim)


class Dropout(Module):
    """Zeroes a fraction p of the inputs while training and rescales the rest
    (by 1 ⊘ (1 - p) in PA modes). The random generator is shared and set by the
    caller (``set_dropout_rng``), so a training run can make it depend on the step
    alone and a resumed run draws the same masks."""

    def __init__(self, p):
        super().__init__()
        self.p = p
        self.rng = np.random.default_rng(0)

    @property
    def p(self):
        return self._p

    @p.setter
    def p(self, p):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self._p = p
        self.threshold = F.dropout_threshold(p)      # once here, not in every step

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng, threshold=self.threshold)

    def extra_repr(self):
        return f"p={self.p}"


def set_dropout_rng(model, rng):
    """Point every Dropout in ``model`` at ``rng``."""
    for m in model.modules():
        if isinstance(m, Dropout):
            m.rng = rng


class MultiHeadAttention(Module):
    """Scaled dot-product attention over n_heads heads of size d_model / n_heads.

    ``mask``: a bool array broadcastable to (batch, heads, queries, keys),
    True where a query may look at a key (causal and padding masks combine with &).
    The 1/sqrt(d_head) scale is computed with the `other` component's arithmetic
    (float in the baseline, pasqrt and PAD in PA modes: exact when d_head is a
    power of 4) and applied to the queries.
    """

    def __init__(self, d_model, n_heads, rng):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        self.d_head = d_model // n_heads
        self.query = Linear(d_model, d_model, rng)
        self.key_value = Linear(d_model, 2 * d_model, rng)
        self.out = Linear(d_model, d_model, rng)

    def split_heads(self, x):
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.n_heads, self.d_head).transpose(0, 2, 1, 3)

    def forward(self, x, memory=None, mask=None):
        """Self-attention on x, or cross-attention from x to ``memory``."""
        source = x if memory is None else memory
        batch, length, _ = x.shape
        scale = F.div(1.0, F.sqrt(float(self.d_head)))
        q = self.split_heads(F.mul(self.query(x), scale))
        kv = self.key_value(source)
        k = self.split_heads(kv[:, :, :self.d_model])
        v = self.split_heads(kv[:, :, self.d_model:])
        weights = F.softmax(F.matmul(q, k.transpose(0, 1, 3, 2)), axis=-1, mask=mask)
        heads = F.matmul(weights, v)                     # (batch, heads, length, d_head)
        return self.out(heads.transpose(0, 2, 1, 3).reshape(batch, length, self.d_model))

    def extra_repr(self):
        return f"d_model={self.d_model}, heads={self.n_heads}"


class FeedForward(Module):
    """Linear -> ReLU (or GELU) -> Linear."""

    def __init__(self, d_model, d_ff, rng, activation="relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}; choose from ['gelu', 'relu']")
        self.activation = activation
        self.up = Linear(d_model, d_ff, rng)
        self.down = Linear(d_ff, d_model, rng)

    def forward(self, x):
        hidden = self.up(x)
        hidden = F.relu(hidden) if self.activation == "relu" else F.gelu(hidden)
        return self.down(hidden)

    def extra_repr(self):
        return self.activation
