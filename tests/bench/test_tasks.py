import math

import pytest
import torch

from gradkit.bench.tasks import Task, get_task, list_tasks, make_task, register_task

ALL = {"digits-mlp", "digits-cnn", "stdlib-lm", "multitask-digits", "quadratic", "rosenbrock"}
# Small options so every task builds, trains a step and evaluates quickly.
SMALL = {"stdlib-lm": "stdlib-lm:train_bytes=20000,val_bytes=5000,eval_windows=8,context=16,dim=16,heads=2,depth=1"}


def test_registry_holds_every_task():
    assert ALL <= {t.name for t in list_tasks()}
    assert get_task("digits-mlp").name == "digits-mlp"
    with pytest.raises(ValueError, match="unknown task 'nope'; tasks: .*digits-mlp"):
        get_task("nope")


def test_task_options_override_defaults_and_are_checked():
    task = make_task("digits-mlp:hidden=32,steps=7", batch_size=16)
    assert (task.options["hidden"], task.steps, task.batch_size) == (32, 7, 16)
    assert make_task("quadratic:condition=10").options["condition"] == 10.0  # ints widen to float
    with pytest.raises(ValueError, match="unknown option 'width'; options: .*hidden"):
        make_task("digits-mlp:width=3")
    with pytest.raises(TypeError, match="option 'hidden' must be int"):
        make_task("digits-mlp:hidden=0.5")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        make_task("digits-mlp:steps=0")
    with pytest.raises(ValueError, match="no library prefix"):
        make_task("torch:digits")


def test_register_task_rejects_incomplete_and_duplicate_tasks():
    class NoBudget(Task):
        name, summary, metric, higher_is_better = "no-budget", "x", "m", True
        defaults = {"steps": 1}

    with pytest.raises(ValueError, match="defaults lack"):
        register_task(NoBudget)

    class Clash(Task):
        name, summary, metric, higher_is_better = "digits-mlp", "x", "m", True
        defaults = {"steps": 1, "eval_every": 1, "batch_size": 1}

    with pytest.raises(ValueError, match="already registered"):
        register_task(Clash)


@pytest.mark.parametrize("name", [t.name for t in list_tasks()])  # every registered task, new ones included
def test_every_task_trains_and_evaluates(name):
    task = make_task(SMALL.get(name, name), batch_size=4)
    data = task.load("cpu")
    torch.manual_seed(0)
    model = task.build_model()
    b1 = task.sample(data, torch.Generator().manual_seed(3))
    b2 = task.sample(data, torch.Generator().manual_seed(3))
    assert repr(b1) == repr(b2)  # batches come from the generator alone
    losses = task.losses(model, b1)
    losses = list(losses) if task.multi_loss else [losses]
    assert len(losses) == len(task.loss_names)
    sum(losses).backward()
    assert all(p.grad is not None for p in model.parameters())
    for split in ("train", "val"):
        result = task.evaluate(model, data, split)
        assert {"loss", "metric"} <= set(result) and all(math.isfinite(v) for v in result.values())


def test_toy_tasks_know_their_optimum():
    for name in ("quadratic", "rosenbrock"):
        task = make_task(name)
        model = task.build_model()
        with torch.no_grad():
            model.x.copy_(torch.tensor(task.surface()["optimum"]))
        result = task.evaluate(model, None, "val")
        assert result["loss"] == pytest.approx(0.0, abs=1e-10) and result["metric"] == pytest.approx(0.0, abs=1e-6)
    assert make_task("quadratic:dim=5").surface() is None  # trajectories only in 2-D
    with pytest.raises(ValueError, match="condition must be >= 1"):
        make_task("quadratic:condition=0.5")


def test_quadratic_condition_number():
    task = make_task("quadratic:dim=4,condition=1000")
    eig = torch.linalg.eigvalsh(task.hessian)
    assert float(eig.max() / eig.min()) == pytest.approx(1000, rel=1e-6)


def test_multitask_heads_are_an_option():
    assert make_task("multitask-digits").loss_names == ("digit", "reconstruction")
    task = make_task("multitask-digits:tasks=digit/parity/reconstruction")
    assert task.loss_names == ("digit", "parity", "reconstruction") and task.multi_loss
    for bad in ("tasks=digit", "tasks=digit/colour", "tasks=digit/digit", "tasks=reconstruction/reconstruction"):
        with pytest.raises(ValueError, match="tasks must"):
            make_task(f"multitask-digits:{bad}")
