"""Tape-based autograd over the registered primitives: Tensor, no_grad, the registry."""
from .tape import no_grad
from .tensor import Tensor, apply
from . import registry

__all__ = ["Tensor", "no_grad", "apply", "registry"]
