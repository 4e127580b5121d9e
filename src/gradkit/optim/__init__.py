"""Optimizers: one module per paper, each a recipe of gradkit transforms."""
from gradkit.optim import xgrad
from gradkit.optim.adabelief import AdaBelief
from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.adamomentum import AdaMomentum
from gradkit.optim.adamp import SGDP, AdamP
from gradkit.optim.adan import Adan
from gradkit.optim.ademamix import AdEMAMix
from gradkit.optim.diffgrad import DiffGrad
from gradkit.optim.exadam import EXAdam
from gradkit.optim.grams import Grams
from gradkit.optim.lion import Lion
from gradkit.optim.muon import Muon
from gradkit.optim.perp_adamw import PerpAdamW
from gradkit.optim.sgd import SGD
from gradkit.optim.sgd_sai import SGDSaI
from gradkit.optim.trust_region import TrustRegionMomentum

__all__ = [
    "AdaBelief",
    "AdaMomentum",
    "AdEMAMix",
    "Adam",
    "AdamP",
    "AdamW",
    "Adan",
    "DiffGrad",
    "EXAdam",
    "Grams",
    "Lion",
    "Muon",
    "SGD",
    "SGDP",
    "SGDSaI",
    "TrustRegionMomentum",
    "xgrad",
    "PerpAdamW",
]
