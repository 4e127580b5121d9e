"""Data-parallel training with a gradkit optimizer, combined objectives and full-batch inspection.

    OMP_NUM_THREADS=1 PYTHONPATH=src torchrun --standalone --nproc-per-node 2 examples/distributed_ddp.py

Each rank trains a DDP-wrapped MLP on its share of scikit-learn's digits with two objectives
(classification, and the parity of the digit from a second head), combined by UPGrad from the
gradients of the *whole* batch (``process_group``), and measures the top Hessian eigenvalue of the
classification loss over the whole training set split across the ranks. Every rank prints the
same numbers; rank 0 prints them.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

import gradkit
import gradkit.distributed as gd
from gradkit import combine, inspect
from gradkit.datasets import digits


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 12))  # 10 classes + 2 parity logits
    model = nn.parallel.DistributedDataParallel(body)
    opt = gradkit.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    agg = combine.get_aggregator("upgrad")

    train = digits("train")
    share = gd.rank_slice(len(train), rank, world)  # this rank's examples
    x, y = train.inputs[share], train.targets[share]
    classify = nn.CrossEntropyLoss()

    def classification_loss(out, target):
        return classify(out[:, :10], target)

    for step in range(1, 201):
        batch = torch.randint(0, len(y), (32,), generator=torch.Generator().manual_seed(step * world + rank))
        out = model(x[batch])
        losses = [classification_loss(out, y[batch]), classify(out[:, 10:], y[batch] % 2)]
        opt.zero_grad()
        info = combine.backward(losses, model.parameters(), agg, process_group=dist.group.WORLD)
        opt.step()
        if step % 100 == 0:
            # The Hessian of the classification loss over all training examples, split over the ranks.
            op = inspect.HessianOperator(body, classification_loss, (x, y), process_group=dist.group.WORLD)
            top = inspect.top_eigenpairs(op, k=1, generator=torch.Generator().manual_seed(0))
            loss, _ = op.loss_and_gradient()
            if rank == 0:
                print(f"step {step}: full-data loss {loss:.4f}, top Hessian eigenvalue {float(top.eigenvalues[0]):.3f}, "
                      f"objectives' cosine {float(info.cosine[0, 1]):.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
