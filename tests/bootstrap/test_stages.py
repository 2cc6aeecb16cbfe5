"""decode and the caption + filter stage (bootstrap/stages.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from openblip.api import load
from openblip.bootstrap.config import CaptionSettings
from openblip.bootstrap.stages import Scorer, decode_batch, decode_one
from openblip.tasks.match import match_images_texts

from .conftest import jpeg_bytes


def test_decode_one() -> None:
    good = decode_one(0, "k", jpeg_bytes(0), (64, 32), 10**6)
    assert good.error is None and good.ext == "jpg" and good.thumb[:2] == b"\xff\xd8"
    assert good.pixels is not None and [p.shape for p in good.pixels] == [(3, 64, 64), (3, 32, 32)]
    bad = decode_one(1, "k1", b"not an image", (64,), 10**6)
    assert bad.pixels is None and bad.error is not None and "k1" in bad.error
    big = decode_one(2, "k2", jpeg_bytes(2, size=120), (64,), 100 * 100)
    assert big.error is not None and "too many pixels" in big.error
    out, seconds = decode_batch([(0, "a", jpeg_bytes(0)), (1, "b", b"")], (64,), 10**6)
    assert [d.index for d in out] == [0, 1] and out[1].error is not None and seconds >= 0


def _pixels(n: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([decode_one(i, "", jpeg_bytes(i), (64,), 10**6).pixels[0] for i in range(n)]))


@pytest.fixture(scope="module")
def full(models: dict[str, str]):
    return load(models["full"], device="cpu")


def test_shared_model_runs_the_vit_once_per_image(full, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = Scorer(full, full, CaptionSettings(num_captions=2), 0.5)
    seen: list[int] = []
    forward = full.model.visual_encoder.forward
    monkeypatch.setattr(full.model.visual_encoder, "forward", lambda x: seen.append(x.shape[0]) or forward(x))
    out = scorer.score(["a", "b", "c"], ["a red circle", "x", "two blue squares"], [_pixels(3)])
    assert seen == [3]
    assert [len(s.synthetic) for s in out] == [2, 2, 2]
    assert all(s.error is None and s.web is not None and len(s.synthetic_scores) == 2 for s in out)


def test_scores_are_the_match_task_s(full) -> None:
    """Each text is scored against its own image as `match` scores the pair (ITM prob, ITC cosine)."""
    scorer = Scorer(full, None, CaptionSettings(), 0.5)
    texts = ["a red circle", "two blue squares"]
    out = scorer.score(["a", "b"], texts, [_pixels(2)])
    ref = match_images_texts(full.model, full.tokenizer, _pixels(2), texts)
    for b in range(2):
        assert out[b].synthetic == () and out[b].web is not None
        assert out[b].web.itm == pytest.approx(float(ref.itm[b, b]), abs=1e-5)
        assert out[b].web.itc == pytest.approx(float(ref.itc[b, b]), abs=1e-5)
        assert out[b].web.kept == (out[b].web.itm > 0.5)


def test_captions_follow_the_key_not_the_batch(full) -> None:
    scorer = Scorer(full, full, CaptionSettings(num_captions=2, seed=3), 0.5)
    keys, texts, pixels = ["k0", "k1", "k2"], ["a", "b", "c"], _pixels(3)
    together = [s.synthetic for s in scorer.score(keys, texts, [pixels])]
    alone = [scorer.score([keys[i]], [texts[i]], [pixels[i : i + 1]])[0].synthetic for i in range(3)]
    reversed_ = [s.synthetic for s in scorer.score(keys[::-1], texts[::-1], [pixels.flip(0)])][::-1]
    assert together == alone == reversed_
    other_keys = [s.synthetic for s in scorer.score(["x0", "x1", "x2"], texts, [pixels])]
    assert other_keys != together


def test_separate_models_and_beams(models: dict[str, str], full) -> None:
    cap, itm = load(models["caption"], device="cpu"), load(models["retrieval"], device="cpu")
    scorer = Scorer(itm, cap, CaptionSettings(num_captions=2, num_beams=3), 0.5)
    first = scorer.score(["a", "b"], ["x", "y"], [_pixels(2)])
    again = scorer.score(["q", "r"], ["x", "y"], [_pixels(2)])
    assert [s.synthetic for s in first] == [s.synthetic for s in again]  # beam search: no randomness
    assert all(len(s.synthetic) == 2 for s in first)


def test_a_model_failure_is_narrowed_to_the_sample(full, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = Scorer(full, None, CaptionSettings(), 0.5)
    real = scorer._score

    def flaky(keys, texts, pixels, given):  # type: ignore[no-untyped-def]
        if "bad" in keys:
            raise RuntimeError("kernel exploded\nmore detail")
        return real(keys, texts, pixels, given)

    monkeypatch.setattr(scorer, "_score", flaky)
    out = scorer.score(["a", "bad", "c"], ["x", "y", "z"], [_pixels(3)])
    assert [s.error for s in out] == [None, "model failed on this sample: kernel exploded", None]


def test_decode_in_a_path_is_what_the_api_loads(full, tmp_path: Path) -> None:
    """The decode stage's pixels are the API's preprocessing of the same image."""
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(4))
    ours = decode_one(0, "a", jpeg_bytes(4), (full.image_size,), 10**6).pixels[0]
    assert torch.equal(torch.from_numpy(ours), full.pixels([str(tmp_path / "a.jpg")])[0])
