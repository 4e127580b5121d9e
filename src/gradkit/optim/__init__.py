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
from gradkit.optim.entropy_sgd import EntropySGD
from gradkit.optim.grades import GradES
from gradkit.optim.mkor import MKOR
from gradkit.optim.multi_momentum import MultiMomentumSGD
from gradkit.optim.optimistic_amsgrad import OptimisticAMSGrad
from gradkit.optim.perp_adamw import PerpAdamW
from gradkit.optim.sgd import SGD
from gradkit.optim.sgd_sai import SGDSaI
from gradkit.optim.trust_region import TrustRegionMomentum
from gradkit.optim.adopt import ADOPT
from gradkit.optim.cautious import CautiousAdamW, CautiousLion
from gradkit.optim.dadapt import DAdaptAdam
from gradkit.optim.laprop import LaProp
from gradkit.optim.mars import MARS
from gradkit.optim.prodigy import Prodigy
from gradkit.optim.shampoo import Shampoo
from gradkit.optim.soap import SOAP
from gradkit.optim.psgd_kron import PSGDKron
from gradkit.optim.udog import UDoG
from gradkit.optim.dog import DoG
from gradkit.optim.schedule_free import ScheduleFree, ScheduleFreeAdamW, ScheduleFreeSGD, recompute_batchnorm_statistics

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
    "ADOPT",
    "CautiousAdamW",
    "CautiousLion",
    "DAdaptAdam",
    "LaProp",
    "MARS",
    "Prodigy",
    "PSGDKron",
    "recompute_batchnorm_statistics",
    "ScheduleFree",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "Shampoo",
    "SOAP",
    "PerpAdamW",
    "OptimisticAMSGrad",
    "MultiMomentumSGD",
    "GradES",
    "EntropySGD",
    "MKOR",
    "UDoG",
    "DoG",
]
