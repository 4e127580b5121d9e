"""gradkit.distributed's helpers in one process (no process group)."""
from __future__ import annotations

import pickle

import pytest
import torch

import gradkit.distributed as gd


@pytest.mark.parametrize("total,ranks", [(0, 1), (7, 1), (16, 2), (11, 4), (3, 5)])
def test_rank_slices_cover_the_range_in_order(total, ranks):
    slices = [gd.rank_slice(total, r, ranks) for r in range(ranks)]
    assert [i for s in slices for i in range(total)[s]] == list(range(total))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("args,match", [((4, 2, 2), "rank must be"), ((4, 0, 0), "num_ranks must be"), ((-1, 0, 1), "total must be")])
def test_rank_slice_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        gd.rank_slice(*args)


def test_local_is_one_picklable_sentinel():
    assert pickle.loads(pickle.dumps(gd.LOCAL)) is gd.LOCAL
    assert repr(gd.LOCAL) == "gradkit.distributed.LOCAL"
    assert gd.resolve_group(gd.LOCAL) is None and gd.resolve_group(None) is None


def test_a_group_needs_an_initialised_process_group():
    with pytest.raises(ValueError, match="my_group was given but torch.distributed is not initialised"):
        gd.resolve_group(object(), argument="my_group")


def test_without_a_group_nothing_is_communicated():
    t = torch.arange(4.0)
    assert gd.all_reduce_sum(t, None) is t and t.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert gd.broadcast_from_first(t, None) is t
    gd.check_same_on_ranks(t, None, "anything")  # nothing to compare with
    assert gd.world_size(None) == 1
    assert not gd.is_dtensor(t)
