"""Transformer blocks and the three models built from them.

- ``TransformerEncoderClassifier`` / ``ViT``: encoder blocks over a class token
  and input vectors (image patches for the ViT), learned positions.
- ``DecoderOnlyLM``: encoder blocks under a causal mask (a GPT block is an
  encoder block with a causal mask); position ids may be given, which is what
  position coupling needs.
- ``EncoderDecoder``: encoder blocks, then decoder blocks (causal self-attention,
  cross-attention to the encoder output); greedy and beam-search decoding.

Blocks are pre-LN (LayerNorm before each sub-layer, a final LayerNorm after the
stack) or post-LN (LayerNorm after each residual add, as in the original
Transformer).
"""
import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..ops.indices import index_range
from ..ops import unbuffered
from .layers import Dropout, Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention
from .module import Module, ModuleList, parameter


class EncoderBlock(Module):
    def __init__(self, d_model, n_heads, d_ff, dropout, rng, pre_ln=True, activation="relu"):
        super().__init__()
        self.pre_ln = pre_ln
        self.attention = MultiHeadAttention(d_model, n_heads, rng)
        self.norm1 = LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff, rng, activation)
        self.norm2 = LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x, mask=None):
        if self.pre_ln:
            x = x + self.dropout(self.attention(self.norm1(x), mask=mask))
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, mask=mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))

    def extra_repr(self):
        return "pre-LN" if self.pre_ln else "post-LN"


class DecoderBlock(Module):
    def __init__(self, d_model, n_heads, d_ff, dropout, rng, pre_ln=True, activation="relu"):
        super().__init__()
        self.pre_ln = pre_ln
        self.self_attention = MultiHeadAttention(d_model, n_heads, rng)
        self.norm1 = LayerNorm(d_model)
        self.cross_attention = MultiHeadAttention(d_model, n_heads, rng)
        self.norm2 = LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff, rng, activation)
        self.norm3 = LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        drop = self.dropout
        if self.pre_ln:
            x = x + drop(self.self_attention(self.norm1(x), mask=self_mask))
            x = x + drop(self.cross_attention(self.norm2(x), memory=memory, mask=memory_mask))
            return x + drop(self.feed_forward(self.norm3(x)))
        x = self.norm1(x + drop(self.self_attention(x, mask=self_mask)))
        x = self.norm2(x + drop(self.cross_attention(x, memory=memory, mask=memory_mask)))
        return self.norm3(x + drop(self.feed_forward(x)))

    def extra_repr(self):
        return "pre-LN" if self.pre_ln else "post-LN"


def causal_mask(length):
    """(length, length) bool: query i may look at keys 0..i."""
    mask = np.zeros((length, length), dtype=bool)
    for i in range(length):                  # np.tril: a float divide in np.arange
        mask[i, :i + 1] = True
    return mask


def key_padding_mask(ids, pad_id):
    """(batch, 1, 1, keys) bool: True at real tokens."""
    return (np.asarray(ids) != pad_id)[:, None, None, :]


class Stack(Module):
    """n blocks, then a final LayerNorm in the pre-LN arrangement."""

    def __init__(self, blocks, d_model, pre_ln):
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.final_norm = LayerNorm(d_model) if pre_ln else None

    def forward(self, x, *args, **kwargs):
        for block in self.blocks:
            x = block(x, *args, **kwargs)
        return x if self.final_norm is None else self.final_norm(x)


def encoder_stack(n_layers, d_model, n_heads, d_ff, dropout, rng, pre_ln, activation):
    blocks = [EncoderBlock(d_model, n_heads, d_ff, dropout, rng, pre_ln, activation)
              for _ in range(n_layers)]
    return Stack(blocks, d_model, pre_ln)


class TransformerEncoderClassifier(Module):
    """Classifies a sequence of input vectors (batch, length, d_input): project them,
    prepend a learned class token, add learned positions, encode, and read the
    class from the class token's output."""

    def __init__(self, d_input, length, n_classes, d_model=64, n_heads=4, n_layers=3,
                 d_ff=128, dropout=0.1, pre_ln=True, activation="relu", seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = Linear(d_input, d_model, rng)
        self.class_token = parameter(rng.normal(0.0, 0.02, size=(1, 1, d_model)))
        self.positions = parameter(rng.normal(0.0, 0.02, size=(1, length + 1, d_model)))
        self.dropout = Dropout(dropout)
        self.encoder = encoder_stack(n_layers, d_model, n_heads, d_ff, dropout, rng,
                                     pre_ln, activation)
        self.head = Linear(d_model, n_classes, rng)

    def forward(self, vectors):
        vectors = np.asarray(vectors, dtype=np.float32)
        batch = vectors.shape[0]
        tokens = self.embed(vectors)
        class_tokens = self.class_token + np.zeros((batch, 1, 1), np.float32)
        x = F.concatenate([class_tokens, tokens], axis=1) + self.positions
        x = self.encoder(self.dropout(x))
        return self.head(x[:, 0])


def patchify(images, patch_size):
    """(batch, [channels,] H, W) -> (batch, patches, channels * patch_size**2), row-major patches."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    batch, channels, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not divisible by patch size {p}")
    patches = images.reshape(batch, channels, height // p, p, width // p, p)
    patches = patches.transpose(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // p) * (width // p), channels * p * p)


class ViT(TransformerEncoderClassifier):
    """Vision transformer: square images cut into patch_size x patch_size patches."""

    def __init__(self, image_size=8, patch_size=2, channels=1, n_classes=10, **kwargs):
        n_patches = (image_size // patch_size) ** 2
        super().__init__(d_input=channels * patch_size ** 2, length=n_patches,
                         n_classes=n_classes, **kwargs)
        self.patch_size = patch_size

    def forward(self, images):
        return self.forward_patches(patchify(images, self.patch_size))

    # the classifier over patch vectors, for callers that cut the patches themselves
    forward_patches = TransformerEncoderClassifier.forward

    def extra_repr(self):
        return f"patch_size={self.patch_size}"


class DecoderOnlyLM(Module):
    """A causal language model: logits for the next token at every position."""

    def __init__(self, vocab_size, max_len, d_model=64, n_heads=4, n_layers=3, d_ff=128,
                 dropout=0.0, pre_ln=True, activation="relu", seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.max_len = max_len
        self.tokens = Embedding(vocab_size, d_model, rng)
        self.positions = Embedding(max_len, d_model, rng)
        self.dropout = Dropout(dropout)
        self.decoder = encoder_stack(n_layers, d_model, n_heads, d_ff, dropout, rng,
                                     pre_ln, activation)
        self.head = Linear(d_model, vocab_size, rng)

    def forward(self, tokens, positions=None):
        """tokens (batch, length) ints; positions the same shape (default 0..length-1)."""
        tokens = np.asarray(tokens)
        length = tokens.shape[1]
        if positions is None:
            positions = np.broadcast_to(index_range(length), tokens.shape)
        positions = np.asarray(positions)
        if positions.max(initial=0) >= self.max_len:
            raise ValueError(f"position id {positions.max()} is beyond max_len={self.max_len}")
        x = self.dropout(self.tokens(tokens) + self.positions(positions))
        return self.head(self.decoder(x, mask=causal_mask(length)))

    @no_grad()
    def generate(self, prompt, prompt_positions, new_positions):
        """Greedy continuation of equal-length prompts (batch, length): token k is
        chosen by argmax and fed back at position ``new_positions[k]``; returns
        (batch, len(new_positions)) ids."""
        tokens, positions = np.asarray(prompt), np.asarray(prompt_positions)
        start = tokens.shape[1]
        for k in range(len(new_positions)):
            token = self(tokens, positions).data[:, -1].argmax(axis=1)
            tokens = np.concatenate([tokens, token[:, None]], axis=1)
            positions = np.concatenate(
                [positions, np.full((len(tokens), 1), new_positions[k])], axis=1)
        return tokens[:, start:]


class EncoderDecoder(Module):
    """Sequence to sequence. Token id ``pad_id`` is masked out as a key; decoding
    starts from ``bos_id`` and a hypothesis ends at ``eos_id``."""

    def __init__(self, src_vocab_size, tgt_vocab_size, max_len, d_model=64, n_heads=4,
                 n_enc_layers=3, n_dec_layers=3, d_ff=128, dropout=0.1, pre_ln=True,
                 activation="relu", pad_id=0, bos_id=1, eos_id=2, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.max_len = max_len
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.src_tokens = Embedding(src_vocab_size, d_model, rng)
        self.tgt_tokens = Embedding(tgt_vocab_size, d_model, rng)
        self.positions = Embedding(max_len, d_model, rng)
        self.dropout = Dropout(dropout)
        self.encoder = encoder_stack(n_enc_layers, d_model, n_heads, d_ff, dropout, rng,
                                     pre_ln, activation)
        blocks = [DecoderBlock(d_model, n_heads, d_ff, dropout, rng, pre_ln, activation)
                  for _ in range(n_dec_layers)]
        self.decoder = Stack(blocks, d_model, pre_ln)
        self.head = Linear(d_model, tgt_vocab_size, rng)

    def embed(self, table, ids):
        length = ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence of length {length} is longer than max_len={self.max_len}")
        return self.dropout(table(ids) + self.positions(index_range(length)))

    def encode(self, src):
        src = np.asarray(src)
        return self.encoder(self.embed(self.src_tokens, src), mask=key_padding_mask(src, self.pad_id))

    def decode(self, tgt_in, memory, src):
        tgt_in = np.asarray(tgt_in)
        x = self.embed(self.tgt_tokens, tgt_in)
        x = self.decoder(x, memory, self_mask=causal_mask(tgt_in.shape[1]),
                         memory_mask=key_padding_mask(src, self.pad_id))
        return self.head(x)

    def forward(self, src, tgt_in):
        """Teacher forcing: logits (batch, tgt_length, tgt_vocab) for the next target token."""
        return self.decode(tgt_in, self.encode(src), src)

    def next_log_probs(self, prefix, memory, src):
        """log p(next token | prefix) for each row, as a float32 array (batch, vocab)."""
        logits = self.decode(prefix, memory, src)[:, -1]
        return F.log_softmax(logits, axis=-1).data

    def decode_length(self, max_len):
        return self.max_len - 1 if max_len is None else min(max_len, self.max_len - 1)

    @no_grad()
    def greedy(self, src, max_len=None):
        """The most likely next token at each step; a list of id lists (no bos/eos)."""
        src = np.asarray(src)
        memory = self.encode(src)
        prefixes = np.full((src.shape[0], 1), self.bos_id, dtype=np.int64)
        finished = np.zeros(src.shape[0], dtype=bool)
        for _ in range(self.decode_length(max_len)):
            token = self.next_log_probs(prefixes, memory, src).argmax(axis=1)
            token[finished] = self.pad_id
            prefixes = np.concatenate([prefixes, token[:, None]], axis=1)
            finished |= token == self.eos_id
            if finished.all():
                break
        return [self.strip(p[1:]) for p in prefixes]

    def beam_search(self, src, beam=5, max_len=None):
        """Keep the ``beam`` best prefixes by summed log-probability (no length
        normalisation, so scores need only additions); a finished hypothesis
        keeps its score. Returns the best finished hypothesis per source (the best
        unfinished one where none finished within ``max_len`` tokens)."""
        best, _ = self.beam_search_with_scores(src, beam, max_len)
        return best

    @no_grad()
    def beam_search_with_scores(self, src, beam=5, max_len=None):
        """Like ``beam_search``, also returning each chosen hypothesis's score."""
        src = np.asarray(src)
        max_len = self.decode_length(max_len)
        batch = src.shape[0]
        memory = self.encode(src)
        # every source repeated beam times: row b * beam + k is hypothesis k of source b
        sources = index_range(batch)
        rows = np.repeat(sources, beam)
        memory, src_rows = memory[rows], src[rows]
        prefixes = np.full((batch * beam, 1), self.bos_id, dtype=np.int64)
        scores = np.full((batch, beam), -np.inf, dtype=np.float32)
        scores[:, 0] = 0.0                               # one live hypothesis to start
        finished = np.zeros((batch, beam), dtype=bool)
        # broadcasting ufuncs, axis reductions and broadcast fancy indices go through
        # numpy's buffered iterator, which multiplies: flat indices and unbuffered.apply
        first_rows = unbuffered.apply(np.multiply, sources, beam)      # row of hypothesis 0
        for _ in range(max_len):
            log_probs = self.next_log_probs(prefixes, memory, src_rows)
            vocab = log_probs.shape[1]
            # a finished hypothesis continues only with padding, at no cost
            done = finished.reshape(-1)
            log_probs = unbuffered.where(done[:, None], np.float32(-np.inf), log_probs)
            log_probs[:, self.pad_id] = np.where(done, np.float32(0), log_probs[:, self.pad_id])
            candidates = unbuffered.apply(np.add, scores.reshape(-1, 1),
                                          log_probs).reshape(batch, beam * vocab)
            top = np.ascontiguousarray(np.argsort(-candidates, axis=1, kind="stable")[:, :beam])
            scores = np.take(candidates.reshape(-1), unbuffered.apply(
                np.add, unbuffered.apply(np.multiply, sources[:, None], beam * vocab), top))
            parent, token = np.divmod(top, vocab)
            parent_rows = unbuffered.apply(np.add, first_rows[:, None], parent).reshape(-1)
            finished = np.take(finished.reshape(-1), parent_rows).reshape(batch, beam) | (
                token == self.eos_id)
            prefixes = np.concatenate([prefixes[parent_rows], token.reshape(-1, 1)], axis=1)
            if finished.all():
                break
        # prefer finished hypotheses: unfinished ones count only where none finished
        first_finished = np.add(first_rows, finished.argmax(axis=1))   # argmax: no iterator
        any_finished = np.take(finished.reshape(-1), first_finished)
        keep = unbuffered.apply(np.bitwise_or, finished, ~any_finished[:, None])
        ranked = unbuffered.where(keep, scores, np.float32(-np.inf))
        chosen = np.add(first_rows, ranked.argmax(axis=1))
        hypotheses = prefixes[chosen][:, 1:]
        best = [self.strip(h) for h in hypotheses]
        return best, np.take(scores.reshape(-1), chosen)

    def strip(self, ids):
        """Token ids up to (not including) the first eos, padding removed."""
        out = []
        for token in ids.tolist():
            if token == self.eos_id:
                break
            if token != self.pad_id:
                out.append(token)
        return out
