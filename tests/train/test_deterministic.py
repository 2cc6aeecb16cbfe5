"""run.deterministic: training on the CPU runs on one intra-op thread within the block, and the
caller's thread count and deterministic-algorithms setting come back afterwards, also on error."""

from __future__ import annotations

import pytest
import torch

from openblip.train.config import RunSection
from openblip.train.deterministic import deterministic_training


def test_the_switch_is_off_by_default() -> None:
    assert RunSection().deterministic is False


def test_cpu_training_runs_on_one_thread_and_the_thread_count_comes_back() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with deterministic_training(True, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"), deterministic_training(True, torch.device("cpu")):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with deterministic_training(False, torch.device("cpu")):
            assert torch.get_num_threads() == 2  # off: nothing changes
    finally:
        torch.set_num_threads(before)
