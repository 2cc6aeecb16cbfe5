from __future__ import annotations

import pytest
import torch

from openblip.tasks.inputs import embed_images, embed_texts
from openblip.tasks.match import match_images_texts, match_pairs
from openblip.text_cleaning import pre_caption

TEXTS = ["A dog running on the beach!", "two cats", "a red car parked near a very tall building at night"]


def test_scores_equal_direct_model_calls(full_model, tokenizer, pixels) -> None:
    """Every pair scored alone, unpadded, equals the grouped, padded batch computation."""
    s = match_images_texts(full_model, tokenizer, pixels, TEXTS)
    assert s.itm.shape == s.itc.shape == s.itm_logit.shape == (3, 3)
    with torch.inference_mode():
        tokens = full_model.encode_image(pixels)
        for b in range(3):
            for t, text in enumerate(TEXTS):
                ids, mask = tokenizer.encode([pre_caption(text, 30)], max_length=35)
                logits = full_model.itm_logits(ids, mask, tokens[b : b + 1])
                assert s.itm[b, t].item() == pytest.approx(logits.softmax(-1)[0, 1].item(), abs=1e-5)
                assert s.itm_logit[b, t].item() == pytest.approx(logits[0, 1].item(), abs=1e-4)
                itc = full_model.image_embed(tokens[b : b + 1]) @ full_model.text_embed(ids, mask).t()
                assert s.itc[b, t].item() == pytest.approx(itc.item(), abs=1e-5)
    assert ((s.itm > 0) & (s.itm < 1)).all()
    assert s.itc.abs().max() <= 1.0 + 1e-5
    assert s.itm.std() > 1e-3, "pairs should score differently"


def test_itc_equals_embedding_products(full_model, tokenizer, pixels) -> None:
    s = match_images_texts(full_model, tokenizer, pixels, TEXTS)
    img = embed_images(full_model, pixels, batch_size=2)
    txt = embed_texts(full_model, tokenizer, TEXTS, batch_size=2)
    assert torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(s.itc, img @ txt.t(), atol=1e-5)


def test_texts_are_cleaned_and_truncated(full_model, tokenizer, pixels) -> None:
    a = match_images_texts(full_model, tokenizer, pixels, ["A Dog!!", "a dog"])
    assert torch.allclose(a.itm[:, 0], a.itm[:, 1]) and torch.allclose(a.itc[:, 0], a.itc[:, 1])
    long = " ".join(["word"] * 500)
    cut = " ".join(["word"] * 30)  # pre_caption keeps 30 words, then 35 tokens at most
    s = match_images_texts(full_model, tokenizer, pixels, [long, cut])
    assert torch.allclose(s.itm[:, 0], s.itm[:, 1]) and torch.allclose(s.itc[:, 0], s.itc[:, 1])
    raw = match_images_texts(full_model, tokenizer, pixels, [long], clean=False)  # 500 words: 35 tokens, no crash
    assert raw.itm.shape == (3, 1)


def test_errors(caption_model, full_model, tokenizer, pixels) -> None:
    with pytest.raises(ValueError, match="ITC/ITM heads"):
        match_images_texts(caption_model, tokenizer, pixels, TEXTS)
    with pytest.raises(ValueError, match="no texts"):
        match_images_texts(full_model, tokenizer, pixels, [])
    assert match_images_texts(full_model, tokenizer, pixels[:0], TEXTS).itm.shape == (0, 3)


def test_a_text_with_nothing_left_is_refused_by_position(full_model, tokenizer, pixels) -> None:
    with pytest.raises(ValueError, match=r"text 1 is empty \('!!!' after cleaning\)"):
        match_images_texts(full_model, tokenizer, pixels, ["a dog", "!!!"])
    with pytest.raises(ValueError, match=r"text 0 is empty \('  '\)"):
        match_images_texts(full_model, tokenizer, pixels, ["  "], clean=False)


def test_match_pairs_is_the_diagonal_of_the_grid(full_model, tokenizer, pixels) -> None:
    """Pair b (image b, text b) scores as the grid's cell (b, b), and the features are
    embed_images'."""
    grid = match_images_texts(full_model, tokenizer, pixels, TEXTS)
    pairs = match_pairs(full_model, tokenizer, pixels, TEXTS)
    for b in range(3):
        assert pairs.itm[b].item() == pytest.approx(grid.itm[b, b].item(), abs=1e-5)
    assert torch.allclose(pairs.image_embeds, embed_images(full_model, pixels), atol=1e-6)
    with pytest.raises(ValueError, match="2 texts for 3 images"):
        match_pairs(full_model, tokenizer, pixels, TEXTS[:2])
    with pytest.raises(ValueError, match="text 1 is empty"):
        match_pairs(full_model, tokenizer, pixels, ["a dog", "!!!", "a cat"])
