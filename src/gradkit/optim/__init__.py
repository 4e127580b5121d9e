"""Optimizers: one module per paper, each a recipe of gradkit transforms."""
from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "SGD"]
from gradkit.optim.adamp import SGDP, AdamP

__all__ += ["AdamP", "SGDP"]
from gradkit.optim.adabelief import AdaBelief

__all__ += ["AdaBelief"]
from gradkit.optim.adan import Adan

__all__ += ["Adan"]
from gradkit.optim.ademamix import AdEMAMix

__all__ += ["AdEMAMix"]
from gradkit.optim.diffgrad import DiffGrad
from gradkit.optim.exadam import EXAdam
from gradkit.optim.lion import Lion

__all__ += ["DiffGrad", "EXAdam", "Lion"]
