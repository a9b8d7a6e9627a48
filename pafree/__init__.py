"""pafree: multiplication-free neural-network training with piecewise affine operations."""
__version__ = "0.1.0"

from . import config
from .autograd import Tensor, no_grad
from . import functional
from . import functional as F
from . import models, optim

__all__ = ["Tensor", "no_grad", "functional", "F", "config", "models", "optim", "__version__"]
