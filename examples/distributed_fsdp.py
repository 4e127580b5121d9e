"""Sharded training (FSDP2) with a gradkit optimizer and a distributed checkpoint that reshards.

    OMP_NUM_THREADS=1 PYTHONPATH=src torchrun --standalone --nproc-per-node 2 examples/distributed_fsdp.py

Each rank holds its rows of every parameter (``fully_shard``); Muon orthogonalises each hidden matrix whole on
one owner rank (one all-to-all there and back, ``gradkit/core/redistribute.py``) and AdamW steps the rest on the
local shards. After 100 steps the ranks save model and optimizer with ``torch.distributed.checkpoint``; a fresh
model and optimizer load it (any number of ranks can, or one process without FSDP) and train on. Every rank
prints the same numbers; rank 0 prints them.
"""
from __future__ import annotations

import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import gradkit
import gradkit.distributed as gd
from gradkit.datasets import digits


def build(mesh):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 96), nn.GELU(), nn.Linear(96, 10))
    for layer in (model[0], model[2], model[4], model):
        fully_shard(layer, mesh=mesh)
    # Muon for the hidden matrices, AdamW for the first and last layers and the biases (by name)
    opt = gradkit.optim.Muon(model.named_parameters(), lr=0.02, adamw=["0.*", "4.*"], adamw_lr=3e-3)
    return model, opt


def train(model, opt, x, y, steps, first, rank, world):
    loss_fn = nn.CrossEntropyLoss()
    for step in range(first, first + steps):
        batch = torch.randint(0, len(y), (32,), generator=torch.Generator().manual_seed(step * world + rank))
        opt.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
    return loss.item()


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    train_set = digits("train")
    share = gd.rank_slice(len(train_set), rank, world)
    x, y = train_set.inputs[share], train_set.targets[share]

    model, opt = build(mesh)
    loss = train(model, opt, x, y, 100, 1, rank, world)
    path = [tempfile.mkdtemp(prefix="gradkit-fsdp-") if rank == 0 else None]
    dist.broadcast_object_list(path)
    dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)},
             checkpoint_id=path[0])

    resumed, resumed_opt = build(mesh)  # fresh weights and state, then the checkpoint's
    target = {"model": get_model_state_dict(resumed), "optim": get_optimizer_state_dict(resumed, resumed_opt)}
    dcp.load(target, checkpoint_id=path[0])
    set_model_state_dict(resumed, target["model"])
    set_optimizer_state_dict(resumed, resumed_opt, target["optim"])

    after = train(model, opt, x, y, 50, 101, rank, world)
    after_resumed = train(resumed, resumed_opt, x, y, 50, 101, rank, world)
    gap = max(float((p.full_tensor() - q.full_tensor()).abs().max())
              for p, q in zip(model.parameters(), resumed.parameters()))
    val = digits("val")
    with torch.no_grad():
        accuracy = float((model(val.inputs).argmax(1) == val.targets).float().mean())
    if rank == 0:
        print(f"step 100: loss {loss:.4f}; step 150: loss {after:.4f}, resumed from the checkpoint {after_resumed:.4f}, "
              f"largest parameter difference {gap:.1e}; validation accuracy {accuracy:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
