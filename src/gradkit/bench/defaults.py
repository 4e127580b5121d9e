"""What ``gradkit bench`` runs when the command line names nothing: extend the lists here."""
from __future__ import annotations

#: Tasks of the default run (sized to finish in well under 3 minutes on a 2-core CPU).
DEFAULT_TASKS: tuple[str, ...] = ("digits-mlp",)

#: Optimizers of the default run: gradkit's own, each with its defaults (SGD with the momentum and
#: step size a small MLP needs), next to torch.optim's references.
DEFAULT_OPTIMIZERS: tuple[str, ...] = (
    "adamw",
    "adam",
    "sgd:lr=0.1,momentum=0.9",
    "adan",
    "ademamix",
    "lion",
    "muon",
    "frugal",
    "torch:AdamW",
    "torch:SGD:lr=0.1,momentum=0.9",
)

#: Seeds of the default run (mean ± std in the report).
DEFAULT_SEEDS = 3
