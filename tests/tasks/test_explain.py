from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from openblip.config import preset
from openblip.model.blip import Blip
from openblip.tasks.explain import (
    check_layer,
    default_layer,
    explain_images_texts,
    peak_pixel,
    token_cams,
    word_spans,
)
from openblip.tasks.match import match_images_texts
from openblip.text_cleaning import pre_caption

TEXTS = ["A dog running on the beach!", "unbelievably (RED) circles, top-left", "two cats"]
SIZES = [(40, 48), (100, 50), (64, 64)]


def _pairs(rows):
    return [e for row in rows for e in row]


@pytest.fixture(scope="module")
def deep_model() -> Blip:
    """A tiny model with 4 text layers, so that the explained layer has layers before and after it."""
    cfg = preset("tiny", "full")
    cfg = cfg.replace(text=dataclasses.replace(cfg.text, depth=4))
    torch.manual_seed(3)
    model = Blip(cfg).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


class _KeptCrossAttention(nn.Module):
    """The reference: a cross-attention written out in plain torch from a ResidualAttention's
    weights (q/k/v/out projections, scaled dot product, softmax, residual LayerNorm), keeping its
    probabilities for autograd, as LAVIS's med.py `save_attention` does."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.probs: torch.Tensor | None = None

    def project_kv(self, tokens):  # (B, N, Dv) -> keys, values (B, H, N, hd)
        a = self.inner
        b, n, _ = tokens.shape
        k = F.linear(tokens, a.key.weight, a.key.bias)
        v = F.linear(tokens, a.value.weight, a.value.bias)
        return (t.view(b, n, a.heads, -1).transpose(1, 2) for t in (k, v))

    def forward(self, x, bias, *, kv):  # the calls TextTransformer._layer makes
        a = self.inner
        h = a.heads
        b, length, d = x.shape
        q = F.linear(x, a.query.weight, a.query.bias).view(b, length, h, d // h).transpose(1, 2)
        k, v = kv  # from project_kv above (one image per row: no grouping)
        assert bias is None
        probs = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
        probs.retain_grad()
        self.probs = probs
        mixed = (probs @ v).transpose(1, 2).reshape(b, length, d)
        return F.layer_norm(x + F.linear(mixed, a.out.weight, a.out.bias), (d,), a.norm.weight, a.norm.bias, a.norm.eps)


def _reference_maps(model, tokenizer, pixels, texts, layer):
    """LAVIS compute_gradcam, through the model's own forward with the chosen layer swapped for
    the plain re-implementation: per (image, text) the token maps (L, g, g) and the ITM logit."""
    cleaned = [pre_caption(t, 30) for t in texts]
    ids, mask = tokenizer.encode(cleaned, max_length=35)
    with torch.no_grad():
        tokens = model.encode_image(pixels)
    b, t = tokens.shape[0], len(texts)
    rows_tokens = tokens.repeat_interleave(t, 0)  # one image per row: no grouping
    block = model.text_encoder.layers[layer]
    original = block.cross_attn
    kept = _KeptCrossAttention(original)
    block.cross_attn = kept
    try:
        with torch.enable_grad():
            logits = model.itm_logits(ids.repeat(b, 1), mask.repeat(b, 1), rows_tokens)
            logits[:, 1].sum().backward()
    finally:
        block.cross_attn = original
        model.zero_grad(set_to_none=True)
    grid = int((tokens.shape[1] - 1) ** 0.5)
    m = mask.repeat(b, 1).view(b * t, 1, -1, 1, 1)
    cams = kept.probs[:, :, :, 1:].reshape(b * t, -1, ids.shape[1], grid, grid) * m
    grads = kept.probs.grad[:, :, :, 1:].clamp(0).reshape(b * t, -1, ids.shape[1], grid, grid) * m
    return (cams * grads).mean(1).detach(), logits.detach(), mask.sum(1)


@pytest.mark.parametrize("layer", [None, 1, 2])
def test_maps_equal_an_independent_gradcam(deep_model, tokenizer, pixels, layer) -> None:
    """Token, word and whole-text maps equal LAVIS's formula computed through autograd on a plain
    re-implementation of the chosen layer inside the model's own forward (padding included:
    the texts have different lengths)."""
    out = explain_images_texts(deep_model, tokenizer, pixels, SIZES, TEXTS, layer=layer)
    chosen = default_layer(4) if layer is None else layer
    ref, logits, lengths = _reference_maps(deep_model, tokenizer, pixels, TEXTS, chosen)
    assert float(ref.abs().max()) > 1e-3, "the reference maps should not be all zero"
    for b in range(3):
        for j, text in enumerate(TEXTS):
            e = out[b][j]
            tokens = ref[b * 3 + j]  # (L, g, g)
            n = int(lengths[j])
            assert e.layer == chosen and e.map.shape == (4, 4)
            assert e.itm_score == pytest.approx(float(logits[b * 3 + j].softmax(-1)[1]), abs=1e-6)
            whole = tokens[1 : n - 1].sum(0) / (n - 2)  # LAVIS: gradcam[1 : token_length + 1].sum / token_length
            np.testing.assert_allclose(e.map, whole.numpy(), rtol=0, atol=1e-5)
            assert not tokens[n:].any(), "padding rows are zero"
            ids = tokenizer.encode([pre_caption(text, 30)], max_length=35).ids[0].tolist()
            for word, span in zip(e.words, word_spans(tokenizer, text, ids)):
                expect = tokens[span.tokens.start : span.tokens.stop].mean(0)
                np.testing.assert_allclose(word.map, expect.numpy(), rtol=0, atol=1e-5)
                share = float(tokens[span.tokens.start : span.tokens.stop].sum() / tokens[1 : n - 1].sum())
                assert word.mass == pytest.approx(share, abs=1e-5)
            assert sum(w.mass for w in e.words) == pytest.approx(1.0, abs=1e-5)


def test_itm_score_is_the_match_probability(deep_model, tokenizer, pixels) -> None:
    out = explain_images_texts(deep_model, tokenizer, pixels, SIZES, TEXTS)
    scores = match_images_texts(deep_model, tokenizer, pixels, TEXTS).itm
    got = torch.tensor([[e.itm_score for e in row] for row in out])
    assert torch.allclose(got, scores, atol=1e-5)


def test_words_are_as_written_and_subwords_merge(full_model, tokenizer, pixels) -> None:
    (row,) = explain_images_texts(full_model, tokenizer, pixels[:1], SIZES[:1], [TEXTS[1]])
    assert [w.word for w in row[0].words] == ["unbelievably", "RED", "circles", "top-left"]
    ids = tokenizer.encode([pre_caption(TEXTS[1], 30)]).ids[0].tolist()
    spans = word_spans(tokenizer, TEXTS[1], ids)
    assert len(spans[0].tokens) > 1, "'unbelievably' is several word pieces"
    assert len(spans[3].tokens) == 3, "top - left"
    assert [s.tokens.start for s in spans] == [1, 1 + len(spans[0].tokens), spans[1].tokens.stop, spans[2].tokens.stop]
    assert spans[-1].tokens.stop == len(ids) - 1


def test_word_spans_cover_every_piece_of_any_text(tokenizer) -> None:
    """Whatever the text (punctuation inside words, tabs, control characters, accents, CJK,
    emoji, words of punctuation only, more than 30 words, more than 35 tokens), the written
    words' pieces are exactly the text's pieces; truncated words are cut or left out."""
    alphabet = [*"abcXYZ éİß.,!?'-()*#:;~\"/", "\t", "\n", "  ", "\x0b", "\x1c", "\xa0", "\u2028", "猫", "😀"]
    rng = random.Random(0)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))) for _ in range(300)]
    texts += ["word " * 40, "unbelievably " * 20, "a.b.c.d e...f", "... !!! a"]
    for text in texts:
        ids = tokenizer.encode([pre_caption(text, 30)], max_length=35).ids[0].tolist()
        spans = word_spans(tokenizer, text, ids)
        covered = [i for s in spans for i in s.tokens]
        assert covered == list(range(1, len(ids) - 1)), repr(text)
        assert all(s.word and s.word in text for s in spans), repr(text)
    assert len(word_spans(tokenizer, "word " * 40, tokenizer.encode(["word " * 30]).ids[0].tolist())) == 30


def test_default_layer_is_the_middle_and_never_the_last() -> None:
    assert default_layer(12) == 6  # LAVIS compute_gradcam(block_num=6) for BLIP-base and -large
    assert [default_layer(d) for d in (2, 3, 4, 6)] == [0, 1, 2, 3]


def test_the_last_layer_has_zero_maps_and_is_refused(full_model, tokenizer, pixels) -> None:
    """At the last layer only [ENC]'s row reaches the ITM head: every text token's map is zero.
    So that layer (and a 1-layer encoder) is refused."""
    ids, mask = tokenizer.encode(["a red circle", "two dogs"])
    with torch.no_grad():
        tokens = full_model.encode_image(pixels[:1])
    cams = token_cams(full_model, ids, mask, tokens, layer=1)
    assert cams.cams.shape == (2, ids.shape[1], 4, 4)
    assert cams.cams[:, 0].any() and not cams.cams[:, 1:].any()  # [ENC]'s own row, and nothing else
    with pytest.raises(
        ValueError, match="layer 1 cannot be explained: the text encoder has 2 layers, and only 0\\.\\.0"
    ):
        check_layer(full_model, 1)
    with pytest.raises(ValueError, match="layer -1 cannot"):
        explain_images_texts(full_model, tokenizer, pixels[:1], SIZES[:1], TEXTS, layer=-1)
    one = Blip(full_model.cfg.replace(text=dataclasses.replace(full_model.cfg.text, depth=1))).eval()
    with pytest.raises(ValueError, match="layer -1 cannot be explained: the text encoder has 1 layers"):
        check_layer(one, None)


def test_model_and_text_checks(full_model, caption_model, tokenizer, pixels) -> None:
    with pytest.raises(ValueError, match="ITC/ITM heads"):
        explain_images_texts(caption_model, tokenizer, pixels[:1], SIZES[:1], TEXTS)
    with pytest.raises(ValueError, match="text 1 is empty"):
        explain_images_texts(full_model, tokenizer, pixels[:1], SIZES[:1], ["a dog", "!.!"])
    with pytest.raises(ValueError, match="2 sizes for 1 images"):
        explain_images_texts(full_model, tokenizer, pixels[:1], SIZES[:2], TEXTS)


def test_layouts_pretrain_and_retrieval(tiny_blip, tokenizer, pixels) -> None:
    for layout in ("pretrain", "retrieval"):
        out = explain_images_texts(tiny_blip(layout, 4), tokenizer, pixels[:2], SIZES[:2], TEXTS[:2])
        assert len(out) == 2 and all(e.map.any() for row in out for e in row)


def test_rows_per_pass_do_not_change_the_maps(deep_model, tokenizer, pixels, monkeypatch) -> None:
    whole = explain_images_texts(deep_model, tokenizer, pixels, SIZES, TEXTS)
    monkeypatch.setattr("openblip.tasks.explain._ROWS", 1)  # one image per pass
    alone = explain_images_texts(deep_model, tokenizer, pixels, SIZES, TEXTS)
    for a, b in zip(_pairs(whole), _pairs(alone)):
        np.testing.assert_allclose(a.map, b.map, rtol=0, atol=1e-6)


def test_bf16_maps_follow_fp32(deep_model, tokenizer, pixels) -> None:
    """bf16 keeps 8 bits of mantissa: its maps are noisier, but the same maps."""
    fp32 = explain_images_texts(deep_model, tokenizer, pixels, SIZES, TEXTS)
    half = Blip(deep_model.cfg).eval()
    half.load_state_dict(deep_model.state_dict())
    bf16 = explain_images_texts(half.to(torch.bfloat16), tokenizer, pixels, SIZES, TEXTS)
    for a, b in zip(_pairs(fp32), _pairs(bf16)):
        assert b.map.dtype == np.float32
        assert np.corrcoef(a.map.ravel(), b.map.ravel())[0, 1] > 0.9
        assert abs(a.itm_score - b.itm_score) < 0.05


def test_peak_pixel_is_the_hottest_patch_centre_in_original_pixels() -> None:
    heat = np.zeros((4, 4), np.float32)
    heat[0, 3] = 2.0  # top row, right column
    assert peak_pixel(heat, (400, 200)) == (350, 25)
    assert peak_pixel(np.zeros((4, 4), np.float32), (400, 200)) is None
