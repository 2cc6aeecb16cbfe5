"""Image-text retrieval recall@K, as BLIP's ``itm_eval`` (``train_retrieval.py``) computes it.

* Image -> text ("txt_r@K"): an image counts as retrieved at K when *any* of its ground-truth
  captions is among the K best-scored texts (its rank is the best rank of its captions).
* Text -> image ("img_r@K"): each caption has one ground-truth image.
* ``txt_r_mean``/``img_r_mean`` average R@1, R@5, R@10 of a direction and ``r_mean`` averages the
  two (BLIP selects checkpoints on ``r_mean``).  All values are percentages.

BLIP's scores are not symmetric: each direction is re-ranked separately (top ``k_test`` by ITC,
then ITM + ITC; every other entry is -100), so the text -> image scores are a separate matrix.
Pass it as ``scores_t2i``; without it the transpose of ``scores_i2t`` is used (plain ITC).

Ranks are positions in ``np.argsort(scores)[::-1]``, as in the original, so ties (e.g. the -100
fill of re-ranked matrices) are broken exactly as the original breaks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

__all__ = ["recall_at_k"]

# A torch tensor (on any device) or anything numpy can read.  torch is not imported at run time:
# metric code should not pay for it, and a tensor is recognised by its ``detach`` method.
ScoreMatrix = Union["torch.Tensor", npt.ArrayLike]


def _as_matrix(scores: ScoreMatrix, name: str) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().double().numpy()
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D score matrix, got shape {matrix.shape}")
    if np.isnan(matrix).any():
        row = int(np.argwhere(np.isnan(matrix))[0][0])
        raise ValueError(f"{name} has NaN scores (first in row {row})")
    return matrix


def _ranks(scores: np.ndarray) -> np.ndarray:
    """``ranks[i, j]``: position of column j when row i is sorted by decreasing score (0 = best)."""
    order = np.argsort(scores, axis=1)[:, ::-1]
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(scores.shape[1])[None, :]
    return ranks


def recall_at_k(
    scores_i2t: ScoreMatrix,
    txt2img: Sequence[int],
    img2txts: Sequence[Sequence[int]],
    scores_t2i: ScoreMatrix | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K in both directions, in percent.

    Args:
        scores_i2t: (n_img, n_txt) scores of every text for every image (higher is better); a torch
            tensor or anything numpy can read.
        txt2img: for each text, the index of its image.
        img2txts: for each image, the indices of its texts (at least one each).
        scores_t2i: (n_txt, n_img) scores of every image for every text, when they are not simply
            ``scores_i2t`` transposed (BLIP's re-ranked evaluation).
        ks: the cut-offs.  ``*_r_mean`` averages over them.

    Returns:
        ``txt_r{k}`` (image -> text) and ``img_r{k}`` (text -> image) for each k, plus
        ``txt_r_mean``, ``img_r_mean`` and ``r_mean``.
    """
    i2t = _as_matrix(scores_i2t, "scores_i2t")
    t2i = i2t.T if scores_t2i is None else _as_matrix(scores_t2i, "scores_t2i")
    n_img, n_txt = i2t.shape
    if t2i.shape != (n_txt, n_img):
        raise ValueError(f"scores_t2i has shape {t2i.shape}, expected (n_txt, n_img) = {(n_txt, n_img)}")
    if len(txt2img) != n_txt:
        raise ValueError(f"txt2img has {len(txt2img)} entries for {n_txt} texts")
    if len(img2txts) != n_img:
        raise ValueError(f"img2txts has {len(img2txts)} entries for {n_img} images")
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    for t, img in enumerate(txt2img):
        if not 0 <= img < n_img:
            raise ValueError(f"txt2img[{t}] = {img} is not an image index (0..{n_img - 1})")
    for img, texts in enumerate(img2txts):
        if len(texts) == 0:
            raise ValueError(f"img2txts[{img}] is empty: every image needs a ground-truth text")
        for t in texts:
            if not 0 <= t < n_txt:
                raise ValueError(f"img2txts[{img}] contains {t}, not a text index (0..{n_txt - 1})")

    i2t_ranks = _ranks(i2t)
    image_ranks = np.array([i2t_ranks[img, list(texts)].min() for img, texts in enumerate(img2txts)])
    text_ranks = _ranks(t2i)[np.arange(n_txt), np.asarray(txt2img, dtype=np.int64)]

    result: dict[str, float] = {}
    for prefix, ranks in (("txt", image_ranks), ("img", text_ranks)):
        for k in ks:
            result[f"{prefix}_r{k}"] = 100.0 * float(np.count_nonzero(ranks < k)) / len(ranks)
        result[f"{prefix}_r_mean"] = sum(result[f"{prefix}_r{k}"] for k in ks) / len(ks)
    result["r_mean"] = (result["txt_r_mean"] + result["img_r_mean"]) / 2
    return result
