"""Optimizers: one module per paper, each a recipe of gradkit transforms."""
from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "SGD"]

# Grams, AdaMomentum, SGD-SaI, Muon and non-Euclidean trust-region momentum, XGrad weight prediction
from gradkit.optim import xgrad
from gradkit.optim.adamomentum import AdaMomentum
from gradkit.optim.grams import Grams
from gradkit.optim.muon import Muon
from gradkit.optim.sgd_sai import SGDSaI
from gradkit.optim.trust_region import TrustRegionMomentum

__all__ += ["AdaMomentum", "Grams", "Muon", "SGDSaI", "TrustRegionMomentum", "xgrad"]
