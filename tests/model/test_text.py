"""The text transformer's three uses, its KV cache and the explicit encoder/decoder sharing."""

from __future__ import annotations

import pytest
import torch

from openblip.backends import cpu
from openblip.config import preset
from openblip.model import Blip
from openblip.model.text import lm_loss


@pytest.fixture(scope="module")
def model() -> Blip:
    torch.manual_seed(0)
    return Blip(preset("tiny", "pretrain")).eval()


def _ids(b: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (b, length), generator=g)
    ids[:, 0] = 101
    return ids


def test_pretrain_decoder_shares_all_but_self_attention(model: Blip) -> None:
    enc, dec = model.text_encoder, model.text_decoder
    assert enc is not None and dec is not None
    assert dec.transformer.embeddings is enc.embeddings
    for e, d in zip(enc.blocks, dec.transformer.blocks, strict=True):
        assert d.cross_attn is e.cross_attn and d.ffn is e.ffn
        assert d.self_attn is not e.self_attn
    # a gradient step on the decoder moves the shared encoder weights too
    shared = {id(p) for p in enc.parameters()} & {id(p) for p in dec.parameters()}
    own_self = {id(p) for b in dec.transformer.blocks for p in b.self_attn.parameters()}
    assert shared and not (shared & own_self)


def test_unimodal_encoder_ignores_padding(model: Blip) -> None:
    ids = _ids(2, 8)
    mask = torch.ones_like(ids)
    short = model.text_hidden(ids[:1, :5], mask[:1, :5])
    padded_ids = ids[:1].clone()
    padded_ids[:, 5:] = 0
    padded_mask = mask[:1].clone()
    padded_mask[:, 5:] = 0
    padded = model.text_hidden(padded_ids, padded_mask)
    torch.testing.assert_close(padded[:, :5], short, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal(model: Blip) -> None:
    img = model.encode_image(torch.randn(2, 3, 64, 64))
    ids = _ids(2, 9)
    mask = torch.ones_like(ids)
    full = model.decoder_logits(ids, mask, img)
    changed = ids.clone()
    changed[:, 6:] = 1500
    part = model.decoder_logits(changed, mask, img)
    torch.testing.assert_close(full[:, :6], part[:, :6])
    assert not torch.allclose(full[:, 6:], part[:, 6:])


def test_kv_cache_matches_full_forward(model: Blip) -> None:
    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(2, 3, 64, 64))
    ids = _ids(2, 9)
    ids[:, 0] = 30522
    full = dec(ids, None, img)
    cache = dec.new_cache(2, 12)
    kv = dec.transformer.cross_kv(img)
    steps = [dec(ids[:, :4], None, kv, cache=cache)]
    steps += [dec(ids[:, t : t + 1], None, kv, cache=cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="KV cache"):
        dec(ids[:, :4], None, kv, cache=cache)


def test_grouped_texts_equal_repeated_images(model: Blip) -> None:
    """Three texts per image through shared cross-attention K/V == images repeated three times."""
    img = model.encode_image(torch.randn(2, 3, 64, 64))
    ids = _ids(6, 7)
    mask = torch.ones_like(ids)
    grouped = model.itm_logits(ids, mask, img)
    repeated = model.itm_logits(ids, mask, img.repeat_interleave(3, 0))
    torch.testing.assert_close(grouped, repeated, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="grouped"):
        model.itm_logits(ids[:5], mask[:5], img)


def test_enc_and_dec_tokens_substituted(model: Blip) -> None:
    img = model.encode_image(torch.randn(1, 3, 64, 64))
    ids = _ids(1, 6)
    enc_ids = ids.clone()
    enc_ids[:, 0] = 30523
    mask = torch.ones_like(ids)
    assert model.text_encoder is not None
    torch.testing.assert_close(model.grounded_hidden(ids, mask, img), model.text_encoder(enc_ids, mask, img))


def test_lm_loss_label_smoothing_hand_computed() -> None:
    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2, -100]])
    eps = 0.1
    logp = torch.log_softmax(logits[0, 0], -1)  # only position 0 predicts a kept label (2)
    expected = -((1 - eps) * logp[2] + eps * logp.mean())
    torch.testing.assert_close(lm_loss(logits, labels, eps), expected)
    torch.testing.assert_close(lm_loss(logits, labels, eps, per_sequence=True), expected[None])


def test_text_too_long_is_a_clear_error(model: Blip) -> None:
    ids = _ids(1, 80)  # tiny preset has 64 positions
    with pytest.raises(ValueError, match="exceeds the 64 positions"):
        model.text_hidden(ids, torch.ones_like(ids))


def test_grad_checkpointing_same_gradients() -> None:
    torch.manual_seed(1)
    m = Blip(preset("tiny", "pretrain")).train()
    px = torch.randn(2, 3, 64, 64)
    ids = _ids(2, 6)
    mask = torch.ones_like(ids)

    def grads() -> list[torch.Tensor]:
        m.zero_grad()
        img = m.encode_image(px)
        (m.decoder_logits(ids, mask, img).square().mean() + m.itm_logits(ids, mask, img).sum()).backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    plain = grads()
    m.set_grad_checkpointing(True)
    ckpt = grads()
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs(dtype: torch.dtype) -> None:
    m = Blip(preset("tiny", "full")).eval().to(dtype)
    img = m.encode_image(torch.randn(1, 3, 64, 64))
    ids = _ids(1, 5)
    mask = torch.ones_like(ids)
    assert img.dtype == dtype
    assert torch.isfinite(m.itm_logits(ids, mask, img)).all()
    assert torch.isfinite(m.decoder_logits(ids, mask, img)).all()


def test_image_tokens_projected_layer_by_layer() -> None:
    """Given image tokens (not a CrossKV), each layer projects its own keys/values when it runs,
    so one layer's keys/values are alive at a time (transformers' peak memory, not 12x it)."""
    from openblip.config import preset
    from openblip.model import Blip

    torch.manual_seed(0)
    model = Blip(preset("tiny", "retrieval")).eval()
    encoder = model.text_encoder
    order: list[str] = []
    for i, layer in enumerate(encoder.blocks):
        assert layer.cross_attn is not None
        layer.self_attn.query.register_forward_hook(lambda *_, i=i: order.append(f"self{i}"))
        layer.cross_attn.key.register_forward_hook(lambda *_, i=i: order.append(f"cross{i}"))
    ids = torch.randint(1000, 2000, (3, 30))  # 90 queries on one image: too many to fold
    ids[:, 0] = 30523
    tokens = model.encode_image(torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        assert not encoder.folding_pays(90, tokens)
        lazy = encoder(ids, torch.ones_like(ids), tokens)
    assert order == [f"{kind}{i}" for i in range(len(encoder.blocks)) for kind in ("self", "cross")]
    with torch.no_grad():
        eager = encoder(ids, torch.ones_like(ids), encoder.cross_kv(tokens))
    torch.testing.assert_close(lazy, eager, rtol=0, atol=0)


def _kernels_on() -> cpu.CpuKernels:
    try:
        return cpu.choose("on", torch.device("cpu"), torch.float32)
    except cpu.KernelsUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("inference", [True, False], ids=["kernels", "bmm"])
def test_folded_cross_attention_equals_projected(inference: bool) -> None:
    """Folding the key/value projections into queries and outputs is the same function (the key
    bias cancels in the softmax, the value bias passes through), padded context included, with
    several query rows grouped per context."""
    from openblip.model.text import ResidualAttention

    cfg = preset("tiny", "caption").text
    torch.manual_seed(0)
    attn = ResidualAttention(cfg, context_width=48).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)  # biases too: they must cancel / pass through
    tokens = torch.randn(3, 9, 48)
    x = torch.randn(6, 2, cfg.width)  # 3 contexts x 2 rows, 2 positions each
    mask = torch.ones(3, 9)
    mask[1, 5:] = 0
    from openblip.model.layers import padding_bias

    bias = padding_bias(mask, torch.float32)
    if inference:
        attn.cpu_kernels = _kernels_on()
    with torch.inference_mode() if inference else torch.no_grad():
        want = attn(x, bias, kv=attn.project_kv(tokens))
        got = attn.attend_folded(x, tokens, bias)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_decoder_reads_a_folded_context_like_precomputed_keys(model: Blip) -> None:
    from openblip.model.cache import FoldedContext

    dec = model.text_decoder
    assert dec is not None
    ids = _ids(4, 5)
    ids[:, 0] = 30522
    img = model.encode_image(torch.randn(2, 3, 64, 64))
    with torch.inference_mode():
        want = dec(ids, None, dec.transformer.cross_kv(img))
        got = dec(ids, None, FoldedContext(img, None))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_grounded_encoder_folds_short_texts_in_inference() -> None:
    """ITM / VQA question encoding on the CPU: a few text tokens per image read the image tokens
    through folded projections (no keys/values computed), with the same result as projecting."""
    torch.manual_seed(0)
    model = Blip(preset("tiny", "retrieval")).eval()
    model.set_cpu_kernels(_kernels_on())  # folding is taken only with the kernels
    encoder = model.text_encoder
    projected: list[int] = []
    for layer in encoder.blocks:
        assert layer.cross_attn is not None
        layer.cross_attn.key.register_forward_hook(lambda *_: projected.append(1))
    ids = torch.randint(1000, 2000, (4, 12))  # 2 texts per image, 24 queries per image
    ids[:, 0] = 30523
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    tokens = model.encode_image(torch.randn(2, 3, 64, 64)).detach()
    with torch.inference_mode():
        assert encoder.folding_pays(24, tokens)
        folded = encoder(ids, mask, tokens)
    assert not projected
    with torch.no_grad():
        want = encoder(ids, mask, encoder.cross_kv(tokens))
    torch.testing.assert_close(folded, want, atol=1e-4, rtol=1e-5)
    with torch.enable_grad():
        assert not encoder.folding_pays(24, tokens)  # training keeps the plain path
