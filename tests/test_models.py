"""pafree.models: the Module tree, layers against numpy references, masks, decoding."""
import numpy as np
import pytest

from pafree import Tensor, config, no_grad, ops
from pafree import functional as F
from pafree.models import (DecoderOnlyLM, EncoderBlock, EncoderDecoder, LayerNorm, Linear,
                           MultiHeadAttention, ViT, patchify, set_dropout_rng)

MODES = ["standard", "pa-matmul", "pa"]


def rng(seed=0):
    return np.random.default_rng(seed)


# --- Module ------------------------------------------------------------------------

def tiny_lm(**kw):
    return DecoderOnlyLM(vocab_size=7, max_len=10, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                         **kw)


def test_named_parameters_in_assignment_order_and_counted():
    m = tiny_lm()
    names = [n for n, _ in m.named_parameters()]
    assert names[:2] == ["tokens.weight", "positions.weight"]
    assert names[2:4] == ["decoder.blocks.0.attention.query.weight",
                          "decoder.blocks.0.attention.query.bias"]
    assert names[-2:] == ["head.weight", "head.bias"]
    assert len(set(names)) == len(names)
    # d=8, ff=16, vocab 7, 10 positions, 2 layers, 3 attention Linear (q, kv, out)
    per_block = (8 * 8 + 8) + (8 * 16 + 16) + (8 * 8 + 8) + 2 * 8 + (8 * 16 + 16) + (16 * 8 + 8) + 2 * 8
    expected = 7 * 8 + 10 * 8 + 2 * per_block + 2 * 8 + (8 * 7 + 7)
    assert m.num_parameters() == expected
    assert f"[{expected:,} params]" in repr(m).splitlines()[0]


def test_state_dict_round_trip_and_mismatch():
    a, b = tiny_lm(seed=1), tiny_lm(seed=2)
    assert not np.array_equal(a.head.weight.data, b.head.weight.data)
    state = a.state_dict()
    b.load_state_dict(state)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.data, q.data)
    state["head.weight"][...] = 0        # a copy: the model is unaffected
    assert np.abs(a.head.weight.data).sum() > 0
    del state["head.bias"]
    with pytest.raises(KeyError, match="head.bias"):
        b.load_state_dict(state)
    state = a.state_dict()
    state["head.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="head.bias"):
        b.load_state_dict(state)


def test_train_eval_switch_reaches_every_module():
    m = tiny_lm(dropout=0.5)
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())


def test_dropout_active_only_in_training():
    m = tiny_lm(dropout=0.5)
    tokens = rng().integers(0, 7, (2, 5))
    with no_grad():
        m.eval()
        a, b = m(tokens).data, m(tokens).data
        assert np.array_equal(a, b)
        m.train()
        set_dropout_rng(m, np.random.default_rng(0))
        c = m(tokens).data
        set_dropout_rng(m, np.random.default_rng(0))
        d = m(tokens).data
    assert not np.allclose(a, c)
    assert np.array_equal(c, d)                    # the masks follow the generator


# --- layers against independent references -----------------------------------------

def test_linear_standard_and_pa():
    layer = Linear(5, 3, rng())
    x = rng(1).normal(size=(4, 5)).astype(np.float32)
    w, b = layer.weight.data, layer.bias.data
    with config.mode("standard"):
        np.testing.assert_allclose(layer(x).data, x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-6)
    with config.mode("pa"):
        expected = ops.pam_matmul(x, w) + b
        np.testing.assert_array_equal(layer(x).data, expected)


def test_layer_norm_standard_matches_numpy():
    norm = LayerNorm(6)
    norm.weight.data[...] = rng(2).normal(size=6)
    x = rng(3).normal(size=(3, 6))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-5) * norm.weight.data + norm.bias.data
    with config.mode("standard"):
        np.testing.assert_allclose(norm(x.astype(np.float32)).data, expected, rtol=1e-4, atol=1e-5)


def reference_attention(att, x, mask):
    """Multi-head attention in float64 numpy from the layer's weights."""
    d, h = att.d_model, att.n_heads
    dh = d // h
    q = x @ att.query.weight.data + att.query.bias.data
    kv = x @ att.key_value.weight.data + att.key_value.bias.data
    k, v = kv[..., :d], kv[..., d:]
    split = lambda t: t.reshape(t.shape[0], t.shape[1], h, dh).transpose(0, 2, 1, 3)
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(dh)
    scores = np.where(mask, scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    heads = (p @ split(v)).transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], d)
    return heads @ att.out.weight.data + att.out.bias.data


def test_attention_standard_matches_reference_with_masks():
    att = MultiHeadAttention(12, 3, rng())          # d_head = 4
    x = rng(4).normal(size=(2, 5, 12))
    causal = np.tril(np.ones((5, 5), bool))
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)[:, None, None, :]
    mask = causal & padding
    with config.mode("standard"):
        out = att(x.astype(np.float32), mask=mask).data
    np.testing.assert_allclose(out, reference_attention(att, x, mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d_head", [4, 16, 8])
def test_attention_scale_goes_through_the_switch(d_head):
    """Float 1/sqrt(d) in standard; PAD(1, pasqrt(d)) in PA: exact for d a power of 4."""
    seen = {}
    original = F.mul

    def spy(a, b):
        seen.setdefault("scale", np.asarray(b.data if isinstance(b, Tensor) else b).item())
        return original(a, b)

    att = MultiHeadAttention(2 * d_head, 2, rng())
    x = rng(5).normal(size=(1, 3, 2 * d_head)).astype(np.float32)
    for mode, expected in [("standard", np.float32(1 / np.sqrt(d_head))),
                           ("pa", ops.pad(1.0, ops.pasqrt(float(d_head))).item())]:
        seen.clear()
        F.mul = spy
        try:
            with config.mode(mode):
                att(x)
        finally:
            F.mul = original
        assert seen["scale"] == expected
    if d_head in (4, 16):
        assert seen["scale"] == 1 / np.sqrt(d_head)


@pytest.mark.parametrize("mode", MODES)
def test_causal_lm_does_not_look_ahead(mode):
    m = tiny_lm()
    m.eval()
    tokens = rng(6).integers(0, 7, (2, 6))
    changed = tokens.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 7
    with config.mode(mode), no_grad():
        a, b = m(tokens).data, m(changed).data
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.array_equal(a[:, 4:], b[:, 4:])


def test_lm_positions_are_used():
    m = tiny_lm()
    tokens = rng(7).integers(0, 7, (1, 4))
    with no_grad():
        a = m(tokens).data
        b = m(tokens, positions=np.array([[0, 1, 2, 3]])).data
        c = m(tokens, positions=np.array([[3, 2, 1, 0]])).data
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="max_len"):
        m(tokens, positions=np.array([[0, 1, 2, 10]]))


def tiny_seq2seq(**kw):
    return EncoderDecoder(src_vocab_size=9, tgt_vocab_size=8, max_len=8, d_model=8, n_heads=2,
                          n_enc_layers=1, n_dec_layers=2, d_ff=16, dropout=0.0, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_source_padding_is_ignored(mode):
    m = tiny_seq2seq()
    src = np.array([[4, 5, 6]])
    padded = np.array([[4, 5, 6, 0, 0]])
    tgt = np.array([[1, 3, 4]])
    with config.mode(mode), no_grad():
        np.testing.assert_array_equal(m(src, tgt).data, m(padded, tgt).data)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_block_gradients_match_finite_differences(pre_ln):
    """Float baseline: backprop through a whole block (reshapes, heads, residuals, norms)."""
    block = EncoderBlock(8, 2, 16, 0.0, rng(8), pre_ln=pre_ln, activation="gelu")
    x = rng(9).normal(size=(2, 3, 8)).astype(np.float32)
    probe = rng(10).normal(size=(2, 3, 8)).astype(np.float32)
    mask = np.tril(np.ones((3, 3), bool))

    def objective():
        return F.sum(F.mul(block(x, mask=mask), probe))

    with config.mode("standard"):
        objective().backward()
        for p in [block.attention.query.weight, block.feed_forward.up.weight, block.norm1.weight]:
            grad = p.grad.copy()
            for idx in [(0, 0), (1, 2)] if p.data.ndim == 2 else [(0,), (5,)]:
                old = p.data[idx]
                p.data[idx] = old + 1e-2
                up = objective().item()
                p.data[idx] = old - 1e-2
                down = objective().item()
                p.data[idx] = old
                assert abs((up - down) / 2e-2 - grad[idx]) <= 2e-2 * max(1.0, abs(grad[idx]))


def test_patchify_matches_explicit_loops():
    images = rng(11).normal(size=(2, 3, 4, 6)).astype(np.float32)     # 2 channels-first images
    patches = patchify(images, 2)
    k = 0
    for i in range(2):
        for j in range(3):
            expected = images[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, -1)
            np.testing.assert_array_equal(patches[:, k], expected)
            k += 1
    with pytest.raises(ValueError, match="divisible"):
        patchify(images, 4)


@pytest.mark.parametrize("mode", MODES)
def test_vit_classifies_images_and_patches_alike(mode):
    m = ViT(image_size=4, patch_size=2, n_classes=3, d_model=8, n_heads=2, n_layers=1, d_ff=8)
    m.eval()
    images = rng(12).normal(size=(5, 4, 4)).astype(np.float32)
    with config.mode(mode), no_grad():
        logits = m(images).data
        np.testing.assert_array_equal(logits, m.forward_patches(patchify(images, 2)).data)
    assert logits.shape == (5, 3) and np.isfinite(logits).all()


# --- decoding ------------------------------------------------------------------------

def sequence_log_prob(model, src, hyp):
    """Sum of log p over hyp + eos by teacher forcing (independent of the decoder loop)."""
    tgt_in = np.array([[model.bos_id] + hyp])
    targets = hyp + [model.eos_id]
    with no_grad():
        logp = F.log_softmax(model(src, tgt_in), axis=-1).data[0]
    return sum(logp[t, y] for t, y in enumerate(targets))


@pytest.mark.parametrize("mode", ["standard", "pa"])
def test_beam_one_is_greedy_and_scores_are_sequence_log_probs(mode):
    m = tiny_seq2seq(seed=3)
    m.eval()
    src = rng(13).integers(3, 9, (4, 5))
    with config.mode(mode):
        greedy = m.greedy(src, max_len=6)
        beam1, _ = m.beam_search_with_scores(src, beam=1, max_len=6)
        beam3, scores = m.beam_search_with_scores(src, beam=3, max_len=6)
        assert beam1 == greedy
        for i, hyp in enumerate(beam3):
            if len(hyp) < 6:                      # finished with eos inside the limit
                assert scores[i] == pytest.approx(sequence_log_prob(m, src[i:i + 1], hyp),
                                                  abs=1e-4)


class MarkovDecoder(EncoderDecoder):
    """Next-token log-probabilities from a fixed table indexed by the last token."""

    def __init__(self, table):
        super().__init__(src_vocab_size=4, tgt_vocab_size=table.shape[1], max_len=6,
                         d_model=4, n_heads=1, n_enc_layers=1, n_dec_layers=1, d_ff=4)
        self.table = np.log(table).astype(np.float32)

    def next_log_probs(self, prefix, memory, src):
        return self.table[prefix[:, -1]].copy()


def test_beam_search_beats_greedy_on_a_constructed_case():
    # tokens: 0 pad, 1 bos, 2 eos, 3 "A", 4 "B". Greedy takes A (0.6) but every
    # continuation of A is poor; B (0.4) then eos (0.9) scores 0.36 > 0.6 * 0.4.
    table = np.full((5, 5), 1e-6)
    table[1, 3], table[1, 4] = 0.6, 0.4
    table[3, 2], table[3, 3], table[3, 4] = 0.4, 0.3, 0.3
    table[4, 2], table[4, 3] = 0.9, 0.1
    table[2, 2] = 1.0
    m = MarkovDecoder(table / table.sum(1, keepdims=True))
    src = np.array([[3]])
    assert m.greedy(src) == [[3]]
    best, score = m.beam_search_with_scores(src, beam=2)
    assert best == [[4]]
    assert score[0] == pytest.approx(np.log(0.4 * 0.9), abs=1e-4)
    assert m.beam_search(src, beam=5) == [[4]]
