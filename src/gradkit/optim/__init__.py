"""Optimizers: one module per paper, each a recipe of gradkit transforms."""
from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "SGD"]
