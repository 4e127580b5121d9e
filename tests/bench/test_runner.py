import sys
import types

import pytest
import torch

import gradkit.spec

from gradkit.bench import BenchConfig, Contestant, make_task, parse_spec, rank, run_bench, run_one, select_best


def _run(opt, task="quadratic:steps=10,eval_every=5", seed=0, **kw):
    task = make_task(task)
    return run_one(task, task.load("cpu"), Contestant(parse_spec(opt)), {}, seed, **kw)


def test_same_seed_same_start_and_batches_across_optimizers():
    # Different optimizers, same seed: identical initial weights and first batch, hence identical first loss.
    task = "digits-mlp:steps=3,eval_every=3,batch_size=8"
    a, b = _run("torch:SGD:lr=0.1", task), _run("torch:Adam:lr=0.001", task)
    assert a.train_loss[0] == b.train_loss[0] and a.evals[0] == b.evals[0]
    # Same optimizer twice: the whole run is reproducible.
    assert _run("torch:Adam:lr=0.001", task).train_loss == b.train_loss
    # Another seed: another start.
    assert _run("torch:Adam:lr=0.001", task, seed=1).train_loss[0] != b.train_loss[0]


def test_run_measures_state_time_trajectory_and_evals():
    run = _run("torch:Adam:lr=0.1")
    assert run.status == "ok" and run.steps_done == 10 and len(run.train_loss) == 10
    assert [e["step"] for e in run.evals] == [0, 5, 10]
    assert run.state_bytes == 2 * 2 * 4 + 4  # two fp32 moments of a 2-vector and the step counter
    assert run.step_time_median_s > 0 and run.peak_rss_bytes > 0
    assert len(run.trajectory) == 11 and run.trajectory[0] == [-1.5, -0.5]
    assert run.final_val == run.evals[-1]["val"]


def test_divergence_is_reported_not_raised():
    run = _run("torch:SGD:lr=100")
    assert run.status == "diverged" and run.diverged_step is not None and run.final_val == {}
    assert run.steps_done < 10


def test_optimizer_failure_is_recorded(monkeypatch):
    class Broken(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("boom")

    monkeypatch.setitem(gradkit.spec.LIBRARY_MODULES, "broken_opt_lib", "broken_opt_lib")  # a library --opt knows
    sys.modules["broken_opt_lib"] = types.SimpleNamespace(Broken=Broken)
    try:
        run = _run("broken_opt_lib:Broken:lr=0.1")
    finally:
        del sys.modules["broken_opt_lib"]
    assert run.status == "error" and "RuntimeError: boom" in run.error


def test_sweep_picks_the_best_point_and_reruns_it_on_other_seeds():
    config = BenchConfig(tasks=["quadratic:steps=30,eval_every=10"], optimizers=["torch:SGD:lr=7"],
                         sweep={"lr": [0.01, 1.0, 100.0]}, seeds=2)
    results = run_bench(config)
    runs = results.runs
    assert [(r.hparams["lr"], r.seed) for r in runs] == [(0.01, 0), (1.0, 0), (100.0, 0), (1.0, 1)]
    assert [r.status for r in runs] == ["ok", "ok", "diverged", "ok"]
    assert [r.selected for r in runs] == [False, True, False, True]
    assert runs[0].contestant == "torch:SGD"  # the swept lr replaces the spec's
    row, = rank(results, "quadratic")
    assert row.hparams == {"lr": 1.0} and row.runs == 2 and row.val_metric[0] < runs[0].final_val["metric"]


def test_select_best_ignores_failed_runs_and_respects_direction():
    ok, bad = _run("torch:SGD:lr=0.5"), _run("torch:SGD:lr=100")
    worse = _run("torch:SGD:lr=0.01")
    assert select_best([bad, worse, ok], higher_is_better=False) is ok
    assert select_best([bad, worse, ok], higher_is_better=True) is worse
    assert select_best([bad], higher_is_better=False) is None


def test_bad_specs_fail_before_training():
    with pytest.raises(ValueError, match="optimizer spec 'torch:SGD:lr=0.1,momentun=0.9'.*momentun"):
        run_bench(BenchConfig(tasks=["quadratic"], optimizers=["torch:SGD:lr=0.1,momentun=0.9"]))
    with pytest.raises(ValueError, match="unknown task"):
        run_bench(BenchConfig(tasks=["nope"], optimizers=["torch:SGD"]))
    with pytest.raises(ValueError, match="none of the tasks has several losses"):
        run_bench(BenchConfig(tasks=["quadratic"], optimizers=["torch:SGD"], aggregators=["sum"]))
    with pytest.raises(ValueError, match="seeds must be"):
        BenchConfig(tasks=["quadratic"], optimizers=["torch:SGD"], seeds=0)


def test_interrupt_keeps_finished_runs(monkeypatch):
    import gradkit.bench.runner as runner

    real, calls = runner.run_one, []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", interrupt_second)
    results = run_bench(BenchConfig(tasks=["quadratic:steps=5"], optimizers=["torch:SGD:lr=0.1", "torch:Adam"]))
    assert results.status == "interrupted" and len(results.runs) == 1


def test_multitask_runs_through_gradkit_combine():
    pytest.importorskip("gradkit.combine", reason="the multi-task task needs gradkit.combine")
    config = BenchConfig(tasks=["multitask-digits:steps=4,eval_every=2,batch_size=16"], optimizers=["torch:Adam"],
                         aggregators=["sum", "pcgrad:seed=0"])
    results = run_bench(config)
    assert [r.contestant for r in results.runs] == ["torch:Adam+sum", "torch:Adam+pcgrad:seed=0"]
    assert all(r.status == "ok" and {"digit_accuracy", "reconstruction_mse"} <= set(r.final_val) for r in results.runs)
    assert all(0.0 <= r.conflict_fraction <= 1.0 for r in results.runs)
    with pytest.raises(ValueError, match="aggregator spec 'no-such'"):
        run_bench(BenchConfig(tasks=["multitask-digits"], optimizers=["torch:Adam"], aggregators=["no-such"]))


def test_aggregator_objective_count_is_checked_before_training():
    combine = pytest.importorskip("gradkit.combine", reason="the multi-task task needs gradkit.combine")
    if "bloop" not in combine.AGGREGATORS:
        pytest.skip("gradkit.combine has no Bloop here")
    with pytest.raises(ValueError, match="'bloop' combines exactly 2 objectives, but task 'multitask-digits' has 3"):
        run_bench(BenchConfig(tasks=["multitask-digits:tasks=digit/parity/reconstruction"], optimizers=["torch:Adam"],
                              aggregators=["bloop"]))


def test_failure_inside_backward_is_recorded_and_the_bench_goes_on():
    class Exploding(torch.nn.Module):
        def forward(self):
            raise RuntimeError("forward failed")

    task = make_task("quadratic:steps=3")
    task.losses = lambda model, batch: Exploding()()
    run = run_one(task, task.load("cpu"), Contestant(parse_spec("torch:SGD")), {}, 0)
    assert run.status == "error" and "step 1, backward: RuntimeError: forward failed" in run.error


def test_non_finite_gradient_refusal_counts_as_divergence(monkeypatch):
    class Refuses(torch.optim.SGD):
        def step(self, closure=None):
            raise FloatingPointError("a gradient holds inf or nan")

    monkeypatch.setitem(gradkit.spec.LIBRARY_MODULES, "refusing_opt_lib", "refusing_opt_lib")

    sys.modules["refusing_opt_lib"] = types.SimpleNamespace(Refuses=Refuses)
    try:
        run = _run("refusing_opt_lib:Refuses:lr=0.1")
    finally:
        del sys.modules["refusing_opt_lib"]
    assert run.status == "diverged" and run.diverged_step == 1 and "inf or nan" in run.error


def test_gradkit_and_torch_optimizers_run_side_by_side():
    pytest.importorskip("gradkit.optim", reason="needs gradkit's core optimizers")
    task = "digits-mlp:steps=20,eval_every=10,batch_size=16"
    ours, theirs = _run("adamw:lr=0.01", task), _run("torch:AdamW:lr=0.01", task)
    assert ours.status == theirs.status == "ok"
    # Same loop, same data, same start: the two AdamW implementations follow the same path.
    assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-4, abs=1e-6)
    assert ours.state_bytes > 0 and theirs.state_bytes > 0


def test_all_expands_to_every_registered_optimizer():
    from gradkit.registry import list_entries

    config = BenchConfig(tasks=["quadratic"], optimizers=["all", "torch:SGD"])
    entries = list_entries("optimizer")
    assert {"adam", "adamw", "sgd"} <= set(config.optimizers) and config.optimizers[-1] == "torch:SGD"
    # every registered object once: aliases (same object, other name) are not run twice
    assert len(config.optimizers) - 1 == len({id(e.obj) for e in entries})
    assert set(config.optimizers[:-1]) <= {e.name for e in entries}
    with pytest.raises(ValueError, match="repeated"):
        BenchConfig(tasks=["quadratic"], optimizers=["all", "torch:SGD", "torch:SGD"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_task_runs_on_cuda():
    for name in ("digits-mlp", "digits-cnn", "quadratic", "rosenbrock",
                 "stdlib-lm:train_bytes=20000,val_bytes=5000,eval_windows=8,context=16,dim=16,heads=2,depth=1"):
        task = make_task(name, steps=3, eval_every=3)
        run = run_one(task, task.load("cuda"), Contestant(parse_spec("torch:Adam")), {}, 0, device="cuda")
        assert run.status == "ok" and run.peak_cuda_bytes > 0 and run.step_time_median_s > 0
