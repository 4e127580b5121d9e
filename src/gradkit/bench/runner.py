"""The arena's engine: train every contestant on every task the same way and measure it.

Fairness rules, enforced here:

* every run of a task with seed ``s`` starts from the same initial weights (torch's generator is
  seeded with ``s`` before the model is built) and sees the same batches in the same order (a
  separate generator seeded with ``s`` draws them), whatever the optimizer;
* with a sweep, each contestant's hyperparameters are chosen on the first seed by the final
  validation metric (ties: lower validation loss), and only that point is re-run on the other seeds;
* only ``optimizer.step()`` is timed for the step time; evaluation is excluded from wall-clock.
"""
from __future__ import annotations

import itertools
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from .measure import StepTimer, current_rss_bytes, device_name, peak_rss_bytes, state_bytes
from .results import BenchResults, RunRecord, TaskInfo
from .spec import Spec, build_optimizer, parse_spec
from .tasks import Task, make_task

__all__ = ["BenchConfig", "BenchPlan", "Contestant", "plan_bench", "expand_optimizers", "run_bench", "run_one", "select_best", "build_optimizer", "DEFAULT_DIVERGENCE_FACTOR"]

#: A run whose training loss exceeds this multiple of its first loss (or is not finite) has diverged.
DEFAULT_DIVERGENCE_FACTOR = 1e3


@dataclass
class BenchConfig:
    """What to run. Spec strings follow :mod:`gradkit.bench.spec`."""

    tasks: list[str]
    optimizers: list[str]
    aggregators: list[str] = field(default_factory=list)  # multi-task tasks; empty: the task's defaults
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = 1
    steps: int | None = None  # overrides of every task's budget
    eval_every: int | None = None
    batch_size: int | None = None
    device: str = "cpu"
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR

    def __post_init__(self):
        if not self.tasks:
            raise ValueError("tasks: name at least one task")
        if not self.optimizers:
            raise ValueError("optimizers: name at least one optimizer")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be an int >= 1, got {self.seeds!r}")
        if not self.divergence_factor > 1:
            raise ValueError(f"divergence_factor must be > 1, got {self.divergence_factor}")
        for key, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep {key!r}: give at least one value")
        self.optimizers = expand_optimizers(self.optimizers)
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"optimizers: a spec is repeated in {self.optimizers}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks), "optimizers": list(self.optimizers), "aggregators": list(self.aggregators),
            "sweep": {k: [_jsonable(v) for v in vs] for k, vs in self.sweep.items()},
            "seeds": list(range(self.seeds)), "steps": self.steps, "eval_every": self.eval_every,
            "batch_size": self.batch_size, "device": self.device, "divergence_factor": self.divergence_factor,
        }


#: The ``--opt`` value that stands for every optimizer in gradkit's registry, with its defaults.
ALL_GRADKIT = "all"


def _registered_optimizers() -> list[str]:
    """Every registered gradkit optimizer once: of names bound to the same object, the one not
    described as an alias (else the first by name)."""
    from gradkit.registry import list_entries

    chosen: dict[int, object] = {}
    for entry in list_entries("optimizer"):
        current = chosen.get(id(entry.obj))
        if current is None or (current.summary.startswith("alias") and not entry.summary.startswith("alias")):
            chosen[id(entry.obj)] = entry
    return sorted(e.name for e in chosen.values())


def expand_optimizers(specs: list[str]) -> list[str]:
    """Replace ``"all"`` by every registered gradkit optimizer (aliases once, by their main name)."""
    out = []
    for spec in specs:
        out.extend(_registered_optimizers() if spec == ALL_GRADKIT else [spec])
    return out


@dataclass(frozen=True)
class Contestant:
    optimizer: Spec
    aggregator: Spec | None = None

    @property
    def label(self) -> str:
        return str(self.optimizer) if self.aggregator is None else f"{self.optimizer}+{self.aggregator}"


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _build_aggregator(spec: Spec):
    if spec.library is not None:
        raise ValueError(f"aggregator spec {str(spec)!r}: aggregators come from gradkit.combine, without a library prefix")
    try:
        from gradkit.combine import get_aggregator
    except ImportError as err:
        raise ValueError(f"aggregator {str(spec)!r}: multi-task tasks need gradkit.combine ({err})") from None
    try:
        return get_aggregator(spec.name, **spec.kwargs)
    except (KeyError, TypeError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"aggregator spec {str(spec)!r}: {message}") from None


def _grid(sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(sweep)
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))] or [{}]


def select_best(runs: list[RunRecord], higher_is_better: bool) -> RunRecord | None:
    """The run with the best final validation metric (ties: lower validation loss); None if all failed."""
    def key(run: RunRecord):
        metric, loss = run.final_val.get("metric"), run.final_val.get("loss")
        return (metric if higher_is_better else -metric, -loss if loss is not None else -math.inf)

    ok = [r for r in runs if r.status == "ok" and r.final_val.get("metric") is not None]
    return max(ok, key=key) if ok else None


def _is_bad(value: float, reference: float | None, factor: float) -> bool:
    if not math.isfinite(value):
        return True
    return reference is not None and abs(value) > factor * max(abs(reference), 1e-12)


def _evaluate(task: Task, model: torch.nn.Module, data: Any, optimizer: Any = None) -> tuple[dict, dict]:
    # Optimizers that train at one point and evaluate at another (Schedule-Free) have eval()/train().
    swap = callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))
    if swap:
        optimizer.eval()
    model.eval()
    try:
        return task.evaluate(model, data, "train"), task.evaluate(model, data, "val")
    finally:
        model.train()
        if swap:
            optimizer.train()


def run_one(task: Task, data: Any, contestant: Contestant, hparams: dict[str, Any], seed: int, *,
            device: str | torch.device = "cpu", divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
            progress: bool = False, position: int = 1) -> RunRecord:
    """Train ``task``'s model with ``contestant`` for the task's budget and measure everything.

    A run that diverges (non-finite or exploding loss) returns status "diverged"; one whose
    optimizer raises returns status "error" with the message. KeyboardInterrupt propagates.
    """
    device = torch.device(device)
    # Seeded global generator for the whole run: the same initial weights for every optimizer, and
    # reproducible randomness inside stochastic optimizers or aggregators; the caller's state is restored.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _train(task, data, contestant, hparams, seed, device, divergence_factor, progress, position)


def _train(task, data, contestant, hparams, seed, device, divergence_factor, progress, position) -> RunRecord:
    model = task.build_model().to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(contestant.optimizer, [(n, p) for n, p in model.named_parameters() if p.requires_grad], **hparams)
    aggregator = _build_aggregator(contestant.aggregator) if contestant.aggregator is not None else None
    if task.multi_loss and aggregator is None:
        raise ValueError(f"task {task.name!r} has {len(task.loss_names)} losses; it needs an aggregator")
    if aggregator is not None and not task.multi_loss:
        raise ValueError(f"task {task.name!r} has a single loss; aggregators apply to multi-task tasks only")
    if aggregator is not None:
        from gradkit.combine import backward as combine_backward
    shared = task.shared_parameters(model) if aggregator is not None else []
    shared_ids = {id(p) for p in shared}
    heads = [p for p in params if id(p) not in shared_ids]

    record = RunRecord(task=task.name, contestant=contestant.label, optimizer=str(contestant.optimizer),
                       aggregator=None if contestant.aggregator is None else str(contestant.aggregator),
                       hparams={k: _jsonable(v) for k, v in hparams.items()}, seed=seed, status="ok", steps_done=0)
    if task.trajectory:
        record.trajectory = [_point(params)]
    generator = torch.Generator().manual_seed(seed)
    timer = StepTimer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_peak = current_rss_bytes() or 0
    first_loss = None
    conflicts: list[float] = []  # multi-task: fraction of gradient pairs in conflict, per step
    wall = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        desc = f"{contestant.label} {' '.join(f'{k}={v}' for k, v in hparams.items())} seed={seed}".strip()
        bar = tqdm(total=task.steps, desc=desc, position=position, leave=False, dynamic_ncols=True)
    train, val = _evaluate(task, model, data, optimizer)  # the common starting point of every curve
    record.evals.append({"step": 0, "wall_s": 0.0, "train": train, "val": val})
    try:
        for step in range(1, task.steps + 1):
            start = time.perf_counter()
            try:
                batch = task.sample(data, generator)
                optimizer.zero_grad(set_to_none=True)
                losses = task.losses(model, batch)
                if aggregator is None:
                    loss = losses
                    loss.backward()
                else:
                    loss = sum(losses)
                    if heads:  # each head depends on its own loss only, so the sum's gradient is that loss's
                        torch.autograd.backward(loss, inputs=heads, retain_graph=True)
                    info = combine_backward(list(losses), shared, aggregator)
                    conflicts.append(info.conflict_fraction)
            except Exception as err:  # noqa: BLE001 - reported in the run's record, never swallowed
                record.status, record.error = "error", f"step {step}, backward: {type(err).__name__}: {err}"
                break
            value = float(loss.detach())
            record.train_loss.append(value)
            if first_loss is None:
                first_loss = value
            if _is_bad(value, first_loss, divergence_factor):
                record.status, record.diverged_step = "diverged", step
                break
            try:
                with timer:
                    optimizer.step()
            except FloatingPointError as err:  # gradkit optimizers refuse non-finite gradients
                record.status, record.diverged_step, record.error = "diverged", step, f"step {step}: {err}"
                break
            except Exception as err:  # noqa: BLE001 - reported in the run's record, never swallowed
                record.status, record.error = "error", f"step {step}, optimizer.step(): {type(err).__name__}: {err}"
                break
            wall += time.perf_counter() - start
            record.steps_done = step
            rss = current_rss_bytes()
            if rss is not None and rss > rss_peak:
                rss_peak = rss
            if record.trajectory is not None:
                record.trajectory.append(_point(params))
            if step % task.eval_every == 0 or step == task.steps:
                train, val = _evaluate(task, model, data, optimizer)
                record.evals.append({"step": step, "wall_s": wall, "train": train, "val": val})
                if not math.isfinite(val["loss"]):
                    record.status, record.diverged_step = "diverged", step
                    break
                if bar is not None:
                    bar.set_postfix(val_loss=f"{val['loss']:.4g}", refresh=False)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    record.wall_s = wall
    record.step_time_median_s = statistics.median(timer.times) if timer.times else None
    record.state_bytes = state_bytes(optimizer)
    record.peak_rss_bytes = rss_peak or peak_rss_bytes()
    if conflicts:
        record.conflict_fraction = statistics.fmean(conflicts)
    if device.type == "cuda":
        record.peak_cuda_bytes = int(torch.cuda.max_memory_allocated(device))
    if record.status == "ok":  # the last step is always evaluated
        record.final_train, record.final_val = record.evals[-1]["train"], record.evals[-1]["val"]
    return record


def _point(params: list[torch.nn.Parameter]) -> list[float]:
    return torch.cat([p.detach().flatten() for p in params]).double().cpu().tolist()


def environment(device: str) -> dict[str, Any]:
    import gradkit

    dev = torch.device(device)
    name = device_name(dev)
    return {
        "gradkit": gradkit.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device": f"{dev.type}: {name}", "threads": torch.get_num_threads(),
    }


def _contestants(task: Task, config: BenchConfig) -> list[Contestant]:
    # Swept keys belong to the sweep, not to the contestant's name: the sweep replaces them.
    optimizers = []
    for text in config.optimizers:
        spec = parse_spec(text)
        optimizers.append(Spec(spec.name, {k: v for k, v in spec.kwargs.items() if k not in config.sweep}, spec.library))
    if not task.multi_loss:
        return [Contestant(o) for o in optimizers]
    names = config.aggregators or _available_aggregators(getattr(task, "default_aggregators", ()))
    if not names:
        raise ValueError(f"task {task.name!r} needs --aggregator")
    return [Contestant(o, parse_spec(a)) for o in optimizers for a in names]


def _available_aggregators(names) -> list[str]:
    """The task's default aggregators that gradkit.combine provides (``--aggregator`` picks others)."""
    try:
        from gradkit.combine import AGGREGATORS
    except ImportError:
        return []
    return [n for n in names if n in AGGREGATORS]


def _preflight(task: Task, contestants: list[Contestant], grid: list[dict], device: torch.device) -> None:
    """Build every optimizer and aggregator once, so a bad spec fails before any training."""
    from .summary import format_hparams

    with torch.random.fork_rng(devices=[]):
        model = task.build_model().to(device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for c in contestants:
        build_optimizer(c.optimizer, named)  # the spec as typed: its own error first
        for point in grid:
            if not point:
                continue
            try:
                build_optimizer(c.optimizer, named, **point)
            except ValueError as err:
                reason = str(err).split(": ", 1)[-1]
                err = f"optimizer {c.optimizer.qualified_name!r} rejects it: {reason}"
                words = [f"{k}={v}" for k, v in point.items() if isinstance(v, str)]
                hint = (f" ({', '.join(words)} was read as a word; sweep values are numbers such as 1e-3, "
                        f"true/false, none, tuples such as 0.9/0.99, or words)") if words else ""
                raise ValueError(f"--sweep {format_hparams(point)}: {err}{hint}") from None
        if c.aggregator is not None:
            aggregator = _build_aggregator(c.aggregator)
            wanted = getattr(aggregator, "num_objectives", None)
            if wanted is not None and wanted != len(task.loss_names):
                raise ValueError(f"aggregator {str(c.aggregator)!r} combines exactly {wanted} objectives, but task "
                                 f"{task.name!r} has {len(task.loss_names)} losses ({', '.join(task.loss_names)})")


def _check_device(text: str) -> torch.device:
    """A device the bench can train on: cpu, cuda[:N] with a GPU, or mps where available."""
    allowed = "cpu, cuda or cuda:N (with a GPU), mps (Apple GPUs)"
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device must be one of {allowed}, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text!r} was asked for but torch.cuda.is_available() is False; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {text!r}: there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {text!r} was asked for but torch.backends.mps.is_available() is False; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be one of {allowed}, got {text!r}")
    return device


@dataclass
class BenchPlan:
    """What :func:`plan_bench` checked: the tasks with their contestants, and the sweep grid."""

    tasks: list[tuple[Task, str, list[Contestant]]]
    grid: list[dict[str, Any]]


def plan_bench(config: BenchConfig) -> BenchPlan:
    """Check everything about ``config`` that can be checked without training: tasks, specs, sweep
    values (every optimizer is built once on every grid point), aggregators, device."""
    device = _check_device(config.device)
    if config.aggregators and not any(make_task(t).multi_loss for t in config.tasks):
        raise ValueError("aggregators: given, but none of the tasks has several losses (try multitask-digits)")
    overrides = {"steps": config.steps, "eval_every": config.eval_every, "batch_size": config.batch_size}
    tasks = [make_task(t, **overrides) for t in config.tasks]
    if len({t.name for t in tasks}) != len(tasks):
        raise ValueError(f"tasks: a task is repeated in {config.tasks}")
    grid = _grid(config.sweep)
    plans = []
    for task, task_spec in zip(tasks, config.tasks):
        contestants = _contestants(task, config)
        _preflight(task, contestants, grid, device)
        plans.append((task, task_spec, contestants))
    return BenchPlan(plans, grid)


def run_bench(config: BenchConfig, *, name: str = "bench", command: str = "", progress: bool = False,
              on_run: Callable[[BenchResults, RunRecord], None] | None = None,
              plan: BenchPlan | None = None) -> BenchResults:
    """Run the whole comparison. ``on_run`` is called after every finished run (to save as it goes).

    The results say ``status="running"`` while runs remain and ``"complete"`` once all have finished.
    Ctrl-C (or a signal the caller turns into KeyboardInterrupt) stops the run in progress; the result
    holds every finished run and ``status="interrupted"``. ``plan`` is :func:`plan_bench`'s result when
    the caller has already checked the config.
    """
    device = torch.device(config.device)
    plan = plan or plan_bench(config)
    plans, grid = plan.tasks, plan.grid

    results = BenchResults(name=name, command=command, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           environment=environment(config.device), config=config.to_dict())
    total = sum(len(c) * (len(grid) + config.seeds - 1) for _, _, c in plans)
    outer = None
    if progress:
        from tqdm.auto import tqdm

        outer = tqdm(total=total, desc="bench", position=0, dynamic_ncols=True, unit="run")

    def finish(record: RunRecord) -> RunRecord:
        results.runs.append(record)
        if outer is not None:
            outer.update(1)
        if record.status != "ok":
            _note(f"{record.task} | {record.contestant} {record.hparams} seed={record.seed}: "
                  f"{record.status}{' at step ' + str(record.diverged_step) if record.diverged_step else ''}"
                  f"{': ' + record.error if record.error else ''}", outer)
        if on_run is not None:
            on_run(results, record)
        return record

    try:
        for task, task_spec, contestants in plans:
            data = task.load(device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                num_params = sum(p.numel() for p in task.build_model().parameters())
            results.tasks[task.name] = TaskInfo(
                spec=task_spec, summary=task.summary, metric=task.metric, higher_is_better=task.higher_is_better,
                steps=task.steps, eval_every=task.eval_every, batch_size=task.batch_size, num_params=num_params,
                loss_names=list(task.loss_names), surface=task.surface())
            for contestant in contestants:
                kw = dict(device=device, divergence_factor=config.divergence_factor, progress=progress)
                first = [finish(run_one(task, data, contestant, point, 0, **kw)) for point in grid]
                best = first[0] if len(grid) == 1 else select_best(first, task.higher_is_better)
                if best is None:  # every point failed: nothing to re-run on other seeds
                    if outer is not None:
                        outer.update(config.seeds - 1)
                    continue
                best.selected = True
                point = grid[first.index(best)]
                for seed in range(1, config.seeds):
                    record = run_one(task, data, contestant, point, seed, **kw)
                    record.selected = True
                    finish(record)
        results.status = "complete"
    except KeyboardInterrupt:
        results.status = "interrupted"
    finally:
        if outer is not None:
            outer.close()
    return results


def _note(message: str, bar) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)
