import pytest

from gradkit.bench import BenchConfig, run_bench


@pytest.fixture(scope="session")
def tiny_results():
    """A real two-optimizer, two-seed run on the quadratic (about a second)."""
    config = BenchConfig(tasks=["quadratic:steps=15,eval_every=5"], optimizers=["torch:SGD:lr=0.5", "torch:Adam:lr=0.1"], seeds=2)
    return run_bench(config, name="tiny", command="gradkit bench ...")
