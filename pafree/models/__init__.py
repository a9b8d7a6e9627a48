"""pafree.models: Module, layers, transformer blocks, convolutional layers and the models
built from them (three transformers, three CNNs).

Every multiply in them goes through ``pafree.functional``, whose component modes
(``pafree.config``) make the same model the float baseline or piecewise affine.
"""
from .module import Module, ModuleList, parameter
from .cnn import (AvgPool2d, BatchNorm2d, Conv2d, ConvMixer, GlobalAvgPool2d, MaxPool2d,
                  PreActResNet, VGG)
from .layers import (Dropout, Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention,
                     set_dropout_rng)
from .transformer import (DecoderBlock, DecoderOnlyLM, EncoderBlock, EncoderDecoder,
                          TransformerEncoderClassifier, ViT, causal_mask, key_padding_mask,
                          patchify)

__all__ = ["Module", "ModuleList", "parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "MultiHeadAttention", "FeedForward", "EncoderBlock", "DecoderBlock",
           "TransformerEncoderClassifier", "ViT", "DecoderOnlyLM", "EncoderDecoder",
           "causal_mask", "key_padding_mask", "patchify", "set_dropout_rng",
           "Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d",
           "PreActResNet", "VGG", "ConvMixer"]
