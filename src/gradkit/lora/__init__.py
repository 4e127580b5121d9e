"""Low-rank adapters (LoRA) and the methods that make their updates follow full fine-tuning.

* ``LoRALinear``, ``apply_lora``, ``lora_modules``: the adapter (``layer.py``; Hu et al., arXiv:2106.09685).
* ``lora_ga_init``: LoRA-GA's initialisation from the gradient's SVD (``ga.py``; arXiv:2407.05000).
* ``lora_pro_``: LoRA-Pro's closed-form adapter gradients (``pro.py``; arXiv:2407.18242).

The adapters' parameters train with any optimizer (gradkit's or torch.optim's).
"""
from .ga import estimate_weight_gradients, lora_ga_init
from .layer import LoRALinear, apply_lora, lora_modules
from .pro import lora_pro_

__all__ = ["LoRALinear", "apply_lora", "lora_modules", "lora_ga_init", "estimate_weight_gradients", "lora_pro_"]
