from __future__ import annotations

import numpy as np
import pytest
import torch

from openblip.evaluate import recall_at_k

# 3 images, 5 texts; image 0 has texts 0 and 1, image 1 text 2, image 2 texts 3 and 4.
IMG2TXTS = [[0, 1], [2], [3, 4]]
TXT2IMG = [0, 0, 1, 2, 2]
SCORES_I2T = np.array(
    [
        [0.10, 0.90, 0.30, 0.20, 0.00],  # text order 1,2,3,0,4: best GT (text 1) at rank 0
        [0.50, 0.40, 0.35, 0.25, 0.10],  # text order 0,1,2,3,4: GT text 2 at rank 2
        [0.90, 0.80, 0.70, 0.10, 0.60],  # text order 0,1,2,4,3: best GT (text 4) at rank 3
    ]
)
# Transposed, per text the image order and the rank of its image:
#   t0 [.10 .50 .90] -> 2,1,0: image 0 at rank 2     t1 [.90 .40 .80] -> 0,2,1: rank 0
#   t2 [.30 .35 .70] -> 2,1,0: image 1 at rank 1     t3 [.20 .25 .10] -> 1,0,2: image 2 at rank 2
#   t4 [.00 .10 .60] -> 2,1,0: rank 0
# Image ranks [0, 2, 3], text ranks [2, 0, 1, 2, 0].


def test_recall_by_hand() -> None:
    r = recall_at_k(SCORES_I2T, TXT2IMG, IMG2TXTS, ks=(1, 2, 3))
    assert r["txt_r1"] == pytest.approx(100 / 3)
    assert r["txt_r2"] == pytest.approx(100 / 3)
    assert r["txt_r3"] == pytest.approx(200 / 3)
    assert r["img_r1"] == pytest.approx(40.0)
    assert r["img_r2"] == pytest.approx(60.0)
    assert r["img_r3"] == pytest.approx(100.0)
    assert r["txt_r_mean"] == pytest.approx((100 / 3 + 100 / 3 + 200 / 3) / 3)
    assert r["img_r_mean"] == pytest.approx((40 + 60 + 100) / 3)
    assert r["r_mean"] == pytest.approx((r["txt_r_mean"] + r["img_r_mean"]) / 2)


def test_default_cutoffs_and_torch_input() -> None:
    r = recall_at_k(torch.tensor(SCORES_I2T, dtype=torch.float32), TXT2IMG, IMG2TXTS)
    directions = [f"{d}_r{k}" for d in ("txt", "img") for k in (1, 5, 10, "_mean")]
    assert set(r) == {*directions, "r_mean"}
    assert r["txt_r1"] == pytest.approx(100 / 3)
    assert r["txt_r5"] == r["txt_r10"] == 100.0  # only 5 texts: every rank is < 5
    assert r["img_r1"] == pytest.approx(40.0)


def test_separate_text_to_image_scores() -> None:
    # Re-ranked text->image scores that put every text's image first.
    t2i = np.full((5, 3), -100.0)
    t2i[np.arange(5), TXT2IMG] = 1.0
    r = recall_at_k(SCORES_I2T, TXT2IMG, IMG2TXTS, scores_t2i=t2i, ks=(1,))
    assert r["img_r1"] == 100.0
    assert r["txt_r1"] == pytest.approx(100 / 3)  # image->text still from scores_i2t


def _reference_ranks(scores: np.ndarray, gt: list[list[int]]) -> np.ndarray:
    """One row at a time, as itm_eval: position of the best ground truth in argsort(...)[::-1]."""
    out = np.zeros(len(scores))
    for i, row in enumerate(scores):
        order = np.argsort(row)[::-1]
        out[i] = min(np.where(order == j)[0][0] for j in gt[i])
    return out


def test_matches_the_per_row_loop_including_ties() -> None:
    rng = np.random.default_rng(0)
    n_img, per = 12, 3
    txt2img = [i for i in range(n_img) for _ in range(per)]
    img2txts = [[i * per + j for j in range(per)] for i in range(n_img)]
    # Re-ranked style matrices: a few real scores per row, the rest a tied -100 fill.
    i2t = np.full((n_img, n_img * per), -100.0)
    t2i = np.full((n_img * per, n_img), -100.0)
    for row in i2t:
        row[rng.choice(row.size, 5, replace=False)] = rng.normal(size=5).round(1)
    for row in t2i:
        row[rng.choice(row.size, 4, replace=False)] = rng.normal(size=4).round(1)
    ks = (1, 5, 10)
    r = recall_at_k(i2t, txt2img, img2txts, scores_t2i=t2i, ks=ks)
    image_ranks = _reference_ranks(i2t, img2txts)
    text_ranks = _reference_ranks(t2i, [[g] for g in txt2img])
    for k in ks:
        assert r[f"txt_r{k}"] == pytest.approx(100.0 * np.mean(image_ranks < k))
        assert r[f"img_r{k}"] == pytest.approx(100.0 * np.mean(text_ranks < k))
    assert 0 < r["r_mean"] < 100


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="txt2img has 4 entries for 5 texts"):
        recall_at_k(SCORES_I2T, TXT2IMG[:4], IMG2TXTS)
    with pytest.raises(ValueError, match=r"img2txts\[1\] is empty"):
        recall_at_k(SCORES_I2T, TXT2IMG, [[0, 1], [], [3, 4]])
    with pytest.raises(ValueError, match=r"img2txts\[2\] contains 7"):
        recall_at_k(SCORES_I2T, TXT2IMG, [[0, 1], [2], [3, 7]])
    with pytest.raises(ValueError, match=r"txt2img\[0\] = 3"):
        recall_at_k(SCORES_I2T, [3, 0, 1, 2, 2], IMG2TXTS)
    with pytest.raises(ValueError, match="expected \\(n_txt, n_img\\)"):
        recall_at_k(SCORES_I2T, TXT2IMG, IMG2TXTS, scores_t2i=SCORES_I2T)
    with pytest.raises(ValueError, match="2-D"):
        recall_at_k(SCORES_I2T[0], TXT2IMG, IMG2TXTS)
    nan = SCORES_I2T.copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN scores \\(first in row 2\\)"):
        recall_at_k(nan, TXT2IMG, IMG2TXTS)
