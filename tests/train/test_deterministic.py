"""run.deterministic: torch's deterministic algorithms are on within the block, every thread is
kept, and the caller's setting comes back afterwards, also on error."""

from __future__ import annotations

import pytest
import torch

from openblip.train.config import RunSection
from openblip.train.deterministic import deterministic_training


def test_the_switch_is_off_by_default() -> None:
    assert RunSection().deterministic is False


def test_deterministic_algorithms_within_the_block_and_the_setting_comes_back() -> None:
    threads = torch.get_num_threads()
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_training(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == threads  # no thread is given up
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="boom"), deterministic_training(True, torch.device("cpu")):
        raise RuntimeError("boom")
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_training(False, torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()  # off: nothing changes
