"""Memory-efficient optimization: projectors and the FRUGAL / GaLore / Fira / SVD-free / subset-norm family.

Every optimizer here is a ``gradkit.Optimizer`` (a chain of transforms); its state is counted exactly by
``optimizer.state_bytes(by="param" | "key" | "kind")`` and predicted before training by
``gradkit.memory.estimate(model, "frugal", density=0.25)``.
"""
from gradkit.lowrank.fira import Fira
from gradkit.lowrank.frugal import FRUGAL, inner_transform
from gradkit.lowrank.galore import GaLore
from gradkit.lowrank.groups import DEFAULT_FULL_STATE, LowRankOptimizer, split_param_groups
from gradkit.lowrank.projectors import (
    PROJECTORS,
    BlockProjector,
    DCTProjector,
    Projector,
    RandKProjector,
    RandomProjector,
    SeededRandomProjector,
    SVDProjector,
    dct_basis,
    get_projector,
)
from gradkit.lowrank.snsm import SNSM, EMAMomentum, SubsetNorm, SubsetNormSubspaceMomentum
from gradkit.lowrank.split import COMPLEMENTS, STATE_POLICIES, ProjectedSplit, project_split
from gradkit.lowrank.subset_norm import ScaleBySubsetNorm, scale_by_subset_norm
from gradkit.lowrank.svdfree import SVDFree

__all__ = [
    "BlockProjector",
    "COMPLEMENTS",
    "DCTProjector",
    "DEFAULT_FULL_STATE",
    "EMAMomentum",
    "FRUGAL",
    "Fira",
    "GaLore",
    "LowRankOptimizer",
    "PROJECTORS",
    "ProjectedSplit",
    "Projector",
    "RandKProjector",
    "RandomProjector",
    "SeededRandomProjector",
    "SNSM",
    "STATE_POLICIES",
    "SVDFree",
    "SVDProjector",
    "ScaleBySubsetNorm",
    "SubsetNorm",
    "SubsetNormSubspaceMomentum",
    "dct_basis",
    "get_projector",
    "inner_transform",
    "project_split",
    "scale_by_subset_norm",
    "split_param_groups",
]
