"""Each loss of train/losses.py against a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from openblip.train import losses


def test_soft_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    targets = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    # row 0: -log(e^2 / (e^1 + e^2)) = log(1 + e^-1); row 1: -(0.5 log 0.5 + 0.5 log 0.5) = log 2
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert losses.soft_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_diagonal_and_id_positives() -> None:
    d = losses.diagonal_positives(2, 5, offset=2, device=torch.device("cpu"))
    assert d.tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    p = losses.id_positives(torch.tensor([1, 2]), torch.tensor([1, 2, 1, -100]))
    assert p.tolist() == [[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]


def test_distill_targets_by_hand() -> None:
    sim_m = torch.tensor([[0.0, math.log(3.0)]])  # softmax -> [0.25, 0.75]
    t = losses.distill_targets(sim_m, torch.tensor([[1.0, 0.0]]), alpha=0.4)
    assert t[0].tolist() == pytest.approx([0.4 * 0.25 + 0.6, 0.4 * 0.75], rel=1e-6)
    assert t.sum().item() == pytest.approx(1.0)


def test_itc_loss_is_mean_of_both_directions() -> None:
    sim_i2t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    sim_t2i = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    eye = torch.eye(2)
    i2t = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    t2i = (math.log(2) + math.log(1 + math.exp(-3))) / 2
    assert losses.itc_loss(sim_i2t, sim_t2i, eye, eye).item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_negative_weights_zero_excluded_pairs_and_add_eps() -> None:
    sim = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    ids = torch.tensor([7, 8, 7])  # items 0 and 2 show the same image
    exclude = ids[:, None] == ids[None, :]
    w = losses.negative_weights(sim, exclude, eps=1e-4)
    # row 0: softmax = [1/4, 2/4, 1/4]; only column 1 is another image
    assert w[0].tolist() == pytest.approx([0.0, 0.5 + 1e-4, 0.0], rel=1e-6)
    assert w[1].tolist() == pytest.approx([1 / 3 + 1e-4, 0.0, 1 / 3 + 1e-4], rel=1e-6)
    assert w[2].tolist() == pytest.approx([0.0, 1 / 3 + 1e-4, 0.0], rel=1e-6)


def test_negative_weights_without_any_candidate_is_an_error() -> None:
    with pytest.raises(ValueError, match="no hard negative"):
        losses.negative_weights(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool), eps=1e-4)


def test_negative_weights_underflow_falls_back_to_uniform() -> None:
    sim = torch.tensor([[1000.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    w = losses.negative_weights(sim, torch.eye(3, dtype=torch.bool), eps=0.0)
    assert w[0].tolist() == [0.0, 1.0, 1.0]


def test_sample_negatives_follows_the_weights() -> None:
    w = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([losses.sample_negatives(w, g) for _ in range(2000)])  # (2000, 2)
    assert set(draws[:, 0].tolist()) == {1, 2}
    assert (draws[:, 1] == 0).all()
    assert (draws[:, 0] == 2).float().mean().item() == pytest.approx(0.75, abs=0.04)
    again = losses.sample_negatives(w, torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[0])


def test_itm_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0], [0.0, 0.0]])
    # positive: p(match) = 3/4; negatives: p(no match) = 4/5 and 1/2
    expected = -(math.log(0.75) + math.log(0.8) + math.log(0.5)) / 3
    assert losses.itm_loss(logits, positives=1).item() == pytest.approx(expected, rel=1e-6)


def test_lm_labels_mask_padding_and_prompt() -> None:
    ids = torch.tensor([[101, 1037, 3861, 1997, 2417, 102, 0]])
    mask = (ids != 0).long()
    assert losses.lm_labels(ids, mask).tolist() == [[101, 1037, 3861, 1997, 2417, 102, -100]]
    assert losses.lm_labels(ids, mask, prompt_length=4).tolist() == [[-100, -100, -100, -100, 2417, 102, -100]]


def _smoothed_ce(logits: list[float], target: int, eps: float) -> float:
    """Label-smoothed CE written out: (1-eps)*(-log p_y) + eps * mean_j(-log p_j)."""
    z = math.log(sum(math.exp(v) for v in logits))
    nll = [z - v for v in logits]
    return (1 - eps) * nll[target] + eps * sum(nll) / len(nll)


def test_weighted_answer_loss_by_hand() -> None:
    # 2 answers (V = 3, L = 3): answer 0 = [DEC] 1 2, answer 1 = [DEC] 2 <pad>
    logits = torch.tensor(
        [
            [[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [5.0, 5.0, 5.0]],
            [[0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [9.0, 9.0, 9.0]],
        ]
    )
    labels = torch.tensor([[0, 1, 2], [0, 2, -100]])
    weights = torch.tensor([0.25, 1.0])
    a0 = _smoothed_ce([1.0, 0.0, 0.0], 1, 0.1) + _smoothed_ce([0.0, 0.0, 2.0], 2, 0.1)
    a1 = _smoothed_ce([0.0, 0.0, 1.0], 2, 0.1)
    expected = (0.25 * a0 + 1.0 * a1) / 2  # two questions
    got = losses.weighted_answer_loss(logits, labels, weights, questions=2, label_smoothing=0.1)
    assert got.item() == pytest.approx(expected, rel=1e-5)
