import json
import math

import pytest

from gradkit.bench import SCHEMA, SCHEMA_VERSION, BenchResults, RunRecord, load_results


def test_json_round_trip_is_exact(tiny_results, tmp_path):
    path = tiny_results.save(tmp_path / "run" / "results.json")
    again = load_results(tmp_path / "run")
    assert again == tiny_results
    assert BenchResults.from_json(again.to_json()).to_json() == tiny_results.to_json()
    data = json.loads(path.read_text())
    assert (data["schema"], data["version"]) == (SCHEMA, SCHEMA_VERSION)
    run = data["runs"][0]
    assert {"task", "contestant", "optimizer", "hparams", "seed", "status", "final_val", "state_bytes",
            "step_time_median_s", "train_loss", "evals", "trajectory", "selected"} <= set(run)


def test_non_finite_numbers_become_null(tiny_results):
    results = BenchResults.from_json(tiny_results.to_json())
    results.runs[0].train_loss.append(math.nan)
    results.runs[0].final_val["loss"] = math.inf
    data = json.loads(results.to_json())  # strict JSON: no NaN literal
    assert data["runs"][0]["train_loss"][-1] is None and data["runs"][0]["final_val"]["loss"] is None


def test_reader_rejects_other_files_and_newer_versions(tiny_results):
    data = tiny_results.to_dict()
    with pytest.raises(ValueError, match="schema must be 'gradkit.bench.results'"):
        BenchResults.from_dict({**data, "schema": "other"})
    with pytest.raises(ValueError, match="version: expected an integer in 1..1"):
        BenchResults.from_dict({**data, "version": SCHEMA_VERSION + 1})
    with pytest.raises(FileNotFoundError):
        load_results("/nonexistent/run")


def test_run_status_is_checked():
    with pytest.raises(ValueError, match="status must be one of"):
        RunRecord(task="t", contestant="c", optimizer="o", aggregator=None, hparams={}, seed=0, status="crashed", steps_done=0)
