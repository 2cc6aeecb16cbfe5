"""What a training config builds: the ITC queue size for the process count."""

from __future__ import annotations

import logging

import pytest

from openblip.train.build import queue_size_for


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
