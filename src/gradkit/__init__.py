"""gradkit: everything a PyTorch training loop does with gradients."""

__version__ = "0.1.0"
