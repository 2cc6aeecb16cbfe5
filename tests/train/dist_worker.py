"""Worker for test_distributed.py: a few training steps of an objective on a fixed global batch,
run as one process or under torchrun. Rank 0 saves the losses, gradients and final weights."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from openblip.config import VisionConfig, preset
from openblip.model.blip import Blip
from openblip.train.batch import ImageTextBatch
from openblip.train.distributed import init_distributed
from openblip.train.objectives import PretrainObjective, RetrievalObjective, StepInfo

GLOBAL_BATCH = 4


def global_batch(step: int) -> ImageTextBatch:
    g = torch.Generator().manual_seed(100 + step)
    ids = torch.randint(1000, 3000, (GLOBAL_BATCH, 6), generator=g)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)  # equal token counts per rank: the LM token mean is then split-invariant
    image_ids = torch.tensor([3, 8, 3, 9])  # a repeated image across the two ranks' halves
    return ImageTextBatch(torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g), ids, mask, image_ids)


def main(kind: str, out: str) -> None:
    env = init_distributed(prefer_cuda=False)
    torch.manual_seed(0)
    layout = "pretrain" if kind == "pretrain" else "retrieval"
    vision = VisionConfig(width=32, depth=1, heads=2, mlp_dim=64, image_size=32)
    model = Blip(preset("tiny", layout).replace(vision=vision))
    cls = PretrainObjective if kind == "pretrain" else RetrievalObjective
    obj = cls(
        model, queue_size=8, momentum=0.9, alpha=0.4, alpha_ramp_epochs=1.0, negatives_seed=7, global_batch=GLOBAL_BATCH
    )
    wrapped: torch.nn.Module = DistributedDataParallel(obj, broadcast_buffers=False) if env.distributed else obj
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    b = GLOBAL_BATCH // env.world_size
    losses = []
    grads: dict[str, torch.Tensor] = {}
    for step in range(3):
        full = global_batch(step)
        lo = env.rank * b
        local = ImageTextBatch(
            full.pixels[lo : lo + b], full.ids[lo : lo + b], full.mask[lo : lo + b], full.image_ids[lo : lo + b]
        )
        out_ = wrapped(local, StepInfo(epoch_progress=0.5 + step))
        out_["loss"].backward()
        values = torch.stack([out_[k].detach() for k in sorted(out_)])
        if env.distributed:
            dist.all_reduce(values)
            values /= env.world_size
        losses.append(values)
        if step == 0:
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        opt.zero_grad()
    if env.rank == 0:
        torch.save(
            {
                "losses": torch.stack(losses),
                "grads": grads,
                "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                "queue": obj.queue.image.clone(),
            },
            out,
        )
    if env.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
