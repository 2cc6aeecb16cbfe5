"""What a training config builds: the ITC queue size for the process count."""

from __future__ import annotations

import logging

import pytest
import torch

from openblip.train.build import build_model, queue_size_for
from openblip.train.config import ModelSection, TrainConfig


def test_a_multiple_of_the_global_batch_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert queue_size_for(60, 20) == 60 and queue_size_for(57600, 96 * 8) == 57600
    assert caplog.records == []


def test_another_size_rounds_down_to_a_multiple_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert queue_size_for(60, 40) == 40  # configs/pretrain_synth_ci.toml on 2 processes
        assert queue_size_for(6, 8) == 8  # never below one global batch
    assert "queue_size 60 is not a multiple of the global batch 40 (batch_size x processes): using 40" in caplog.text
    with pytest.raises(ValueError, match="queue_size must be >= 1, got 0"):
        queue_size_for(0, 8)


def _tiny(init_std: float) -> TrainConfig:
    return TrainConfig(model=ModelSection(arch="tiny", image_size=32, init_std=init_std))


def test_init_std_sets_the_random_text_side_and_leaves_the_vit() -> None:
    torch.manual_seed(0)
    default = build_model(_tiny(0.02))
    torch.manual_seed(0)
    wide = build_model(_tiny(0.1))
    words = wide.state_dict()["text_encoder.embeddings.word.weight"]
    # 0.1 * (1 +- a few / sqrt(n)) for n > 10^5 normal draws
    assert float(words.std()) == pytest.approx(0.1, rel=0.02)
    assert float(default.state_dict()["text_encoder.embeddings.word.weight"].std()) == pytest.approx(0.02, rel=0.02)
    for key, value in default.state_dict().items():
        if key.startswith("visual_encoder."):
            assert torch.equal(value, wide.state_dict()[key]), key


def test_init_std_must_be_positive() -> None:
    with pytest.raises(ValueError, match="init_std"):
        build_model(_tiny(0.0))
