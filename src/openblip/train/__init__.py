"""BLIP training: objectives (pretrain ITC+ITM+LM, caption, retrieval, VQA), one loop, evaluation.

    from openblip.train import load_config, train
    result = train(load_config("configs/pretrain_synth_ci.toml", ["data.train=DIR/train"]))

Layout: config.py (TrainConfig), objectives.py + losses.py + momentum.py (what is optimised),
loop.py (the engine), optim.py (AdamW groups, schedules), distributed.py (torchrun, gathers with
gradient), checkpoint.py (resumable run state), data.py (deterministic batch stream), build.py
(model and objective from a config), text_init.py (MiniLM text weights), evaluate.py (retrieval,
caption and VQA evaluation).
"""

from openblip.train.config import TrainConfig, load_config
from openblip.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]
