"""The harness itself: results come back in rank order, a raising rank fails fast, a hang is killed."""
from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist

from dist_harness import RankFailure, RankTimeout, run_on_ranks


def _sum_of_ranks(rank, world_size, scale):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return (rank, float(t) * scale)


def _rank1_raises(rank, world_size):
    if rank == 1:
        raise ValueError("rank one refuses")
    dist.barrier()  # rank 0 would wait here forever


def _rank1_never_joins(rank, world_size):
    if rank == 0:
        dist.barrier()
    else:
        time.sleep(3600)


def test_results_in_rank_order():
    assert run_on_ranks(_sum_of_ranks, 2, 10.0, timeout=60) == [(0, 30.0), (1, 30.0)]


def test_a_raising_rank_fails_with_its_traceback():
    with pytest.raises(RankFailure, match=r"^rank 1 raised:(.|\n)*rank one refuses"):
        run_on_ranks(_rank1_raises, 2, timeout=60)


def test_a_hang_is_killed_at_the_timeout():
    # Rank 1 sleeps for an hour: returning at all means the harness killed it.
    with pytest.raises(RankTimeout, match=r"ranks \[0, 1\] of 2 still running"):
        run_on_ranks(_rank1_never_joins, 2, timeout=4)
