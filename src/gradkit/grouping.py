"""``gradkit.param_groups(model)``: param groups by what each parameter is, decided from the model.

Muon and the low-rank optimizers (FRUGAL, GaLore, Fira, ...) treat the hidden matrices of a network
differently from its embeddings, its output head and its vectors (biases, norm weights, scalars), as the
official Muon code (``MuonWithAuxAdam``, https://github.com/KellerJordan/Muon) and the FRUGAL
(arXiv:2411.07837) and GaLore (arXiv:2403.03507) papers do. Name
patterns say which is which only when the parameters come with names, and training frameworks often
hand an optimizer bare tensors (Hugging Face ``Trainer`` with ``optimizer_cls_and_kwargs``). This helper
reads the model instead: the type of the module that owns each parameter, and its shape. It returns
param groups that carry both the names and the kind::

    [{"params": [(name, p), ...], "kind": "hidden"}, {"params": [...], "kind": "embedding"}, ...]

``Muon`` sends the matrices of ``"hidden"`` groups to Muon and everything else to AdamW; the low-rank
optimizers project ``"hidden"`` groups and keep the rest fully state-full; any other optimizer (gradkit's
or torch.optim's) keeps ``kind`` as an inert group field. Name rules given to those optimizers
(``adamw=``, ``full_state=``) still apply on top, since the names travel with the groups.

The kinds (:data:`KINDS`):

* ``"vector"``: every parameter with fewer than two dimensions (biases, norm weights, gains, scalars);
* ``"embedding"``: matrices owned by an ``nn.Embedding`` or ``nn.EmbeddingBag`` (an output layer whose
  weight is tied to an embedding is this one parameter);
* ``"head"``: matrices of the output layer: ``model.get_output_embeddings()`` where the model has it
  (Hugging Face models), else the last layer of an ``nn.Sequential`` that holds a matrix, else a linear
  child named ``lm_head``, ``head``, ``classifier``, ``score`` or ``output``; or the module given as ``head``;
* ``"hidden"``: matrices owned by a layer whose weights are matrices of a linear map: ``nn.Linear``,
  ``nn.Bilinear``, convolutions, ``nn.MultiheadAttention``, recurrent layers, ``transformers``' ``Conv1D``;
* ``"other"``: matrices owned by any other module (e.g. a learned positional table or a class token
  declared as a bare ``nn.Parameter``): their role cannot be told from the model, so a warning names
  them; they are treated like embeddings (AdamW in Muon, state-full in the low-rank optimizers).

``kinds={"pattern": kind}`` decides any parameter by name first (``fnmatch`` patterns, first match
wins), which also silences the warnings for the parameters it names. Every routing warning, here and in
the optimizers, is a :class:`RoutingWarning`.
"""
from __future__ import annotations

import sys
import warnings
from fnmatch import fnmatchcase
from typing import Any

from torch import Tensor, nn

__all__ = ["KINDS", "RoutingWarning", "check_kind", "param_groups"]

KINDS = ("hidden", "embedding", "head", "vector", "other")


class RoutingWarning(UserWarning):
    """A parameter could not be routed as intended: no name for a name rule, a rule matching nothing,
    a matrix of unknown kind, no output head found."""

_HEAD_NAMES = ("lm_head", "head", "classifier", "score", "output")
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_LINEAR_MAPS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)


def param_groups(model: nn.Module, *, head: Any = "auto", kinds: dict[str, str] | None = None,
                 settings: dict[str, dict] | None = None) -> list[dict]:
    """Param groups of ``model``'s trainable parameters, one per kind, with names (see the module docstring).

    Args:
        model: the ``nn.Module`` to group. Parameters with ``requires_grad=False`` are left out.
        head: the output layer: ``"auto"`` (default: found as described above, also inside
            ``torch.compile``'s and data parallelism's wrappers; a warning when none is found), a submodule,
            a submodule's name (as in ``model.named_modules()``), or ``None`` for a model without one (its
            last layer's matrices are then ``"hidden"``).
        kinds: ``{name pattern: kind}`` deciding parameters by name before anything else.
        settings: extra group fields per kind, e.g. ``{"vector": {"weight_decay": 0.0}}``.

    Returns:
        A list of param-group dicts in :data:`KINDS` order, empty kinds left out; each has ``"params"``
        (``(name, parameter)`` pairs in ``model.named_parameters()`` order) and ``"kind"``.

    Example:
        >>> import torch, gradkit
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 10))
        >>> [(g["kind"], [n for n, _ in g["params"]]) for g in gradkit.param_groups(model)]
        [('hidden', ['1.weight']), ('embedding', ['0.weight']), ('head', ['2.weight']),
         ('vector', ['1.bias', '2.bias'])]
        >>> opt = gradkit.optim.Muon(gradkit.param_groups(model))
        >>> [(g["kind"], g["use_muon"]) for g in opt.param_groups]
        [('hidden', True), ('embedding', False), ('head', False), ('vector', False)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    by_name = _check_kinds(kinds)
    extra = _check_settings(settings)
    head_module = _find_head(model, head)
    owners = _owners(model)

    grouped: dict[str, list[tuple[str, Tensor]]] = {kind: [] for kind in KINDS}
    unknown = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = next((k for pattern, k in by_name.items() if fnmatchcase(name, pattern)), None)
        if kind is None:
            kind = _kind(p, owners.get(id(p), []), head_module)
            if kind == "other":
                unknown.append(f"{name} {tuple(p.shape)} in {type(owners[id(p)][0]).__name__}")
        grouped[kind].append((name, p))
    if head is not None and head_module is None and not any(k == "head" for k in by_name.values()):
        warnings.warn("param_groups found no output head (no get_output_embeddings(), no nn.Sequential, no linear "
                      f"child named one of {_HEAD_NAMES}): every linear layer is grouped as 'hidden'. Pass "
                      "head=<the output module or its name>, or head=None for a model without one",
                      RoutingWarning, stacklevel=2)
    if unknown:
        warnings.warn(f"param_groups cannot tell the kind of {len(unknown)} parameter(s) from their module: "
                      f"{', '.join(unknown)}; they are grouped as 'other' (AdamW in Muon, state-full in the low-rank "
                      "optimizers). Name their kind with kinds={'<name pattern>': 'hidden' | 'embedding' | ...}",
                      RoutingWarning, stacklevel=2)
    if not any(grouped.values()):
        raise ValueError("model has no trainable parameters (all have requires_grad=False or there are none)")
    return [{"params": grouped[kind], "kind": kind, **extra.get(kind, {})} for kind in KINDS if grouped[kind]]


def _kind(p: Tensor, owners: list[nn.Module], head_module: nn.Module | None) -> str:
    if p.dim() < 2:
        return "vector"
    if any(isinstance(m, _EMBEDDINGS) for m in owners):
        return "embedding"
    if head_module is not None and any(m is head_module for m in owners):
        return "head"
    if any(isinstance(m, _linear_maps()) for m in owners):
        return "hidden"
    return "other"


def _linear_maps() -> tuple[type, ...]:
    # transformers' GPT-2-style Conv1D is a linear layer with a transposed weight; looked up only when
    # transformers is already imported, so this module never imports it.
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return _LINEAR_MAPS + ((conv1d,) if isinstance(conv1d, type) else ())


def _owners(model: nn.Module) -> dict[int, list[nn.Module]]:
    """Every module that holds each parameter directly (a tied weight has several)."""
    owners: dict[int, list[nn.Module]] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            held = owners.setdefault(id(p), [])
            if not any(m is module for m in held):
                held.append(module)
    return owners


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and data parallelism's wrappers, whose structure names the head."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _find_head(model: nn.Module, head: Any) -> nn.Module | None:
    if head is None:
        return None
    if isinstance(head, nn.Module):
        if not any(m is head for m in (*model.modules(), *_unwrapped(model).modules())):
            raise ValueError("head must be a submodule of model (or its name, 'auto' or None), got a module that "
                             f"model does not hold: {type(head).__name__}")
        return head
    if not isinstance(head, str):
        raise TypeError(f"head must be 'auto', an nn.Module, a submodule name or None, got {type(head).__name__}")
    if head != "auto":
        modules = {**dict(_unwrapped(model).named_modules()), **dict(model.named_modules())}
        if head not in modules:
            raise ValueError(f"head must name a submodule of model, got {head!r}; submodules: "
                             f"{', '.join(n for n in modules if n) or '(none)'}")
        return modules[head]
    model = _unwrapped(model)
    get_output = getattr(model, "get_output_embeddings", None)
    if callable(get_output):
        found = get_output()
        if isinstance(found, nn.Module):
            return found
    if isinstance(model, nn.Sequential):
        layers = [m for m in model.modules() if not isinstance(m, nn.Sequential)
                  and any(p.dim() >= 2 for p in m.parameters(recurse=False))]
        if layers:
            return layers[-1]  # a Sequential runs its (nested) layers in registration order
    children = dict(model.named_children())
    for name in _HEAD_NAMES:
        if isinstance(children.get(name), nn.Linear):
            return children[name]
    return None


def _check_kinds(kinds) -> dict[str, str]:
    if kinds is None:
        return {}
    if not isinstance(kinds, dict):
        raise TypeError(f"kinds must be a dict {{name pattern: kind}}, got {type(kinds).__name__}")
    for pattern, kind in kinds.items():
        if not isinstance(pattern, str):
            raise TypeError(f"kinds keys must be name patterns (str), got {pattern!r}")
        if kind not in KINDS:
            raise ValueError(f"kinds[{pattern!r}] must be one of {KINDS}, got {kind!r}")
    return dict(kinds)


def _check_settings(settings) -> dict[str, dict]:
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict {{kind: group fields}}, got {type(settings).__name__}")
    for kind, fields in settings.items():
        if kind not in KINDS:
            raise ValueError(f"settings keys must be kinds, one of {KINDS}, got {kind!r}")
        if not isinstance(fields, dict) or "params" in fields or "kind" in fields:
            raise ValueError(f"settings[{kind!r}] must be a dict of group fields other than 'params' and 'kind', "
                             f"got {fields!r}")
    return settings


def check_kind(group: dict) -> str | None:
    """A param group's ``kind`` (None when it has none); ``ValueError`` for anything not in :data:`KINDS`."""
    kind = group.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"a param group's 'kind' must be one of {KINDS}, got {kind!r}")
    return kind
