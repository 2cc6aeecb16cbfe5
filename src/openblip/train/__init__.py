"""BLIP training: objectives (pretrain ITC+ITM+LM, caption, retrieval, VQA), one loop, evaluation.

    from openblip.train import load_config, train
    result = train(load_config("configs/pretrain_synth_ci.toml", ["data.train=DIR/train"]))

Layout: config.py (TrainConfig), objectives.py + losses.py + momentum.py (what is optimised),
loop.py (the engine), optim.py (AdamW groups, schedules), distributed.py (torchrun, gathers with
gradient), checkpoint.py (checkpoint files), resume.py (what a checkpoint holds, restoring it),
progress.py (metrics.jsonl, progress on stderr), deterministic.py (run.deterministic: torch's
deterministic algorithms), data.py (deterministic batch stream), build.py (model and objective from a
config), text_init.py (MiniLM text weights), evaluate.py (retrieval, caption and VQA evaluation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openblip.train.config import TrainConfig, load_config

if TYPE_CHECKING:
    from openblip.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]


def __getattr__(name: str) -> Any:
    # The loop pulls in the data readers (PIL, pyarrow); importing a submodule such as
    # openblip.train.objectives should not (the GPU benchmark machine has neither).
    if name in ("train", "TrainResult"):
        from openblip.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'openblip.train' has no attribute {name!r}")
