"""Type checks of a parsed ``results.json`` before anything reads it.

A file from another version, edited by hand or damaged must fail with one message that names the
field (``runs[3].seed: missing``), not with a TypeError deep inside the report.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["check_results"]

Check = Callable[[Any, str], None]


def _fail(where: str, expected: str, value: Any = ...) -> None:
    if value is ...:
        raise ValueError(f"field {where}: missing")
    raise ValueError(f"field {where}: expected {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def string(v, where):
    if not isinstance(v, str):
        _fail(where, "a string", v)


def integer(v, where):
    if not isinstance(v, int) or isinstance(v, bool):
        _fail(where, "an integer", v)


def count(v, where):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        _fail(where, "an integer >= 0", v)


def number(v, where):
    if not _is_number(v):
        _fail(where, "a number", v)


def boolean(v, where):
    if not isinstance(v, bool):
        _fail(where, "true or false", v)


def scalar(v, where):
    if not (v is None or isinstance(v, (str, bool)) or _is_number(v)):
        _fail(where, "a string, number, boolean or null", v)


def value(v, where):
    """A hyperparameter value: a scalar or a list of scalars (a tuple such as betas)."""
    if isinstance(v, list):
        for i, item in enumerate(v):
            scalar(item, f"{where}[{i}]")
    else:
        scalar(v, where)


def optional(check: Check) -> Check:
    def run(v, where):
        if v is not None:
            check(v, where)
    return run


def one_of(*allowed: str) -> Check:
    def run(v, where):
        if v not in allowed:
            _fail(where, "one of " + ", ".join(repr(a) for a in allowed), v)
    return run


def list_of(check: Check, min_len: int = 0) -> Check:
    def run(v, where):
        if not isinstance(v, list) or len(v) < min_len:
            _fail(where, "a list" + (f" of at least {min_len}" if min_len else ""), v)
        for i, item in enumerate(v):
            check(item, f"{where}[{i}]")
    return run


def dict_of(check: Check) -> Check:
    def run(v, where):
        if not isinstance(v, dict):
            _fail(where, "an object", v)
        for key, item in v.items():
            check(item, f"{where}.{key}")
    return run


def record(required: dict[str, Check], optional_fields: dict[str, Check] | None = None) -> Check:
    """An object with these fields (unknown fields are allowed: newer writers of the same version)."""
    def run(v, where):
        if not isinstance(v, dict):
            _fail(where, "an object", v)
        for key, check in required.items():
            if key not in v:
                _fail(f"{where}.{key}".lstrip("."), "")
            check(v[key], f"{where}.{key}".lstrip("."))
        for key, check in (optional_fields or {}).items():
            if key in v:
                check(v[key], f"{where}.{key}".lstrip("."))
    return run


metrics = dict_of(optional(number))  # {"loss": ..., "metric": ..., extras}; null = not finite


def _split_metrics(v, where):
    metrics(v, where)
    for key in ("loss", "metric"):
        if key not in v:
            _fail(f"{where}.{key}", "")


def _final(v, where):
    """Empty (a run that did not finish) or the last evaluation."""
    metrics(v, where)
    if v:
        _split_metrics(v, where)


_evaluation = record({"step": count, "wall_s": optional(number), "train": _split_metrics, "val": _split_metrics})


def _surface(v, where):
    record({"x": list_of(number, 1), "y": list_of(number, 1), "z": list_of(list_of(number, 1), 1),
            "optimum": list_of(number, 2)})(v, where)


_task = record(
    {"spec": string, "summary": string, "metric": string, "higher_is_better": boolean, "steps": count,
     "eval_every": count, "batch_size": count, "num_params": count, "loss_names": list_of(string)},
    {"surface": optional(_surface)},
)

_run = record(
    {"task": string, "contestant": string, "optimizer": string, "aggregator": optional(string),
     "hparams": dict_of(value), "seed": count, "status": one_of("ok", "diverged", "error"), "steps_done": count},
    {"diverged_step": optional(count), "error": optional(string), "final_train": _final, "final_val": _final,
     "step_time_median_s": optional(number), "wall_s": optional(number), "state_bytes": optional(count),
     "peak_rss_bytes": optional(count), "peak_cuda_bytes": optional(count), "conflict_fraction": optional(number),
     "selected": boolean, "train_loss": list_of(optional(number)), "evals": list_of(_evaluation),
     "trajectory": optional(list_of(list_of(optional(number))))},
)

_config = record({}, {"tasks": list_of(string), "optimizers": list_of(string), "aggregators": list_of(string),
                      "sweep": dict_of(list_of(value, 1)), "seeds": list_of(count, 1), "steps": optional(count),
                      "eval_every": optional(count), "batch_size": optional(count), "device": string,
                      "divergence_factor": number})

_results = record(
    {"name": string, "command": string, "created": string, "environment": dict_of(scalar), "config": _config,
     "tasks": dict_of(_task), "runs": list_of(_run)},
    {"status": one_of("running", "complete", "interrupted")},
)


def check_results(data: Any) -> None:
    """ValueError naming the first bad field of a parsed results file; None if it is well formed."""
    from .results import SCHEMA, SCHEMA_VERSION

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else _describe(data)
        raise ValueError(f"not a gradkit bench results file (field schema must be {SCHEMA!r}, got {got!r})")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"field version: expected an integer in 1..{SCHEMA_VERSION}, got {version!r}; "
                         f"a newer version needs a newer gradkit")
    _results(data, "")
    for i, run in enumerate(data["runs"]):
        if run["task"] not in data["tasks"]:
            raise ValueError(f"field runs[{i}].task: {run['task']!r} is not one of the file's tasks "
                             f"({', '.join(map(repr, data['tasks'])) or 'none'})")
