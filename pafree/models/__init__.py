"""pafree.models: Module, layers, transformer blocks and three models built from them.

Every multiply in them goes through ``pafree.functional``, whose component modes
(``pafree.config``) make the same model the float baseline or piecewise affine.
"""
from .module import Module, ModuleList, parameter
from .layers import (Dropout, Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention,
                     set_dropout_rng)
from .transformer import (DecoderBlock, DecoderOnlyLM, EncoderBlock, EncoderDecoder,
                          TransformerEncoderClassifier, ViT, causal_mask, key_padding_mask,
                          patchify)

__all__ = ["Module", "ModuleList", "parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "MultiHeadAttention", "FeedForward", "EncoderBlock", "DecoderBlock",
           "TransformerEncoderClassifier", "ViT", "DecoderOnlyLM", "EncoderDecoder",
           "causal_mask", "key_padding_mask", "patchify", "set_dropout_rng"]
