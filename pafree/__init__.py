"""pafree: multiplication-free neural-network training with piecewise affine operations."""
__version__ = "0.1.0"
