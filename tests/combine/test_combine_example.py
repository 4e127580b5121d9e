"""Smoke test of examples/offline_rl_orthogonal.py and of its dynamic-programming ground truth."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "offline_rl_orthogonal.py"


def load():
    spec = importlib.util.spec_from_file_location("offline_rl_orthogonal", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dynamic_programming_is_consistent():
    ex = load()
    env = ex.GridWorld()
    q_star = env.optimal_q()
    greedy = torch.nn.functional.one_hot(q_star.argmax(dim=1), 4).to(torch.float64)
    v = env.policy_value(greedy)
    live = ~env.terminal_mask()
    # The greedy policy of Q* achieves V* = max_a Q*, and a random policy does worse from the start.
    torch.testing.assert_close(v[live], q_star.max(dim=1).values[live])
    assert float(env.policy_value(torch.full((env.n_states, 4), 0.25, dtype=torch.float64))[env.start]) < float(v[env.start])
    assert torch.allclose(env.transition[live].sum(-1), torch.ones(1, dtype=torch.float64))


def test_example_runs_and_prints_the_table(capsys):
    ex = load()
    assert ex.main(["--seeds", "1", "--steps", "15", "--transitions", "1500", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    for label in ("semi-gradient", "true gradient", "orthogonal gradient"):
        assert f"| {label} |" in out
