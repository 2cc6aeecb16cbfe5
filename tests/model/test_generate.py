"""Generation engine: processors by hand, decoding invariants. Id parity with transformers is in
tests/parity (it needs a transformers model)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from openblip.config import preset
from openblip.model import Blip
from openblip.model.generate import (
    GenerationConfig,
    apply_min_length,
    apply_no_repeat_ngram,
    apply_repetition_penalty,
    generate,
    warp_for_sampling,
)

PROMPT = torch.tensor([30522, 1037, 3861, 1997])


@pytest.fixture
def kernels_on(model: Blip) -> Iterator[None]:
    """The model with every CPU kernel (folded cross-attention is taken only with them), for one test."""
    from openblip.backends.cpu import KernelsUnavailable

    try:
        model.use_cpu_kernels("on")
    except KernelsUnavailable as e:
        pytest.skip(str(e))
    yield
    model.use_cpu_kernels("off")


@pytest.fixture(scope="module")
def model() -> Blip:
    torch.manual_seed(1)
    m = Blip(preset("tiny", "caption")).eval()
    with torch.no_grad():  # sharper, varied distributions so sequences end at different lengths
        for p in m.parameters():
            if p.dim() >= 2:
                p.mul_(5)
        assert m.text_decoder is not None
        m.text_decoder.head.bias[102] += 2.0
        m.text_decoder.head.bias[:300] += 3.0
    return m


def test_repetition_penalty_hand_computed() -> None:
    scores = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    ids = torch.tensor([[0, 1, 1]])
    out = apply_repetition_penalty(scores, ids, 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 1.0, 0.5]]))


def test_no_repeat_ngram_bans_completing_token() -> None:
    scores = torch.zeros(2, 6)
    ids = torch.tensor([[1, 2, 3, 1, 2], [1, 2, 3, 4, 5]])
    out = apply_no_repeat_ngram(scores, ids, 3)
    # row 0 ends with (1, 2), which was followed by 3 -> 3 banned; row 1: (4, 5) never seen
    assert out[0].isinf().nonzero().flatten().tolist() == [3]
    assert not out[1].isinf().any()
    # bigram: row 0 last token 2 was followed by 3 earlier
    assert apply_no_repeat_ngram(scores, ids, 2)[0].isinf().nonzero().flatten().tolist() == [3]


def test_min_length_blocks_only_eos() -> None:
    cfg = GenerationConfig(min_length=5, eos_token_id=2)
    s = apply_min_length(torch.zeros(1, 4), 4, cfg)
    assert s[0].isinf().nonzero().flatten().tolist() == [2]
    assert not apply_min_length(torch.zeros(1, 4), 5, cfg).isinf().any()


def test_top_k_top_p_warp() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = warp_for_sampling(logits, GenerationConfig(do_sample=True, top_k=0, top_p=0.7)).isfinite()
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.7
    kept = warp_for_sampling(logits, GenerationConfig(do_sample=True, top_k=3, top_p=1.0)).isfinite()
    assert kept.tolist() == [[True, True, True, False]]
    kept = warp_for_sampling(logits, GenerationConfig(do_sample=True, top_k=0, top_p=0.01)).isfinite()
    assert kept.tolist() == [[True, False, False, False]]  # at least one token always survives


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        GenerationConfig(num_return_sequences=2)
    with pytest.raises(ValueError):
        GenerationConfig(num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError):
        GenerationConfig(top_p=0.0, do_sample=True)


def _greedy_reference(model: Blip, img: torch.Tensor, max_length: int) -> list[list[int]]:
    """Greedy decoding by full re-computation, no cache, one image at a time."""
    dec = model.text_decoder
    assert dec is not None
    out = []
    for i in range(img.shape[0]):
        ids = PROMPT[None].clone()
        while ids.shape[1] < max_length:
            nxt = int(dec(ids, None, img[i : i + 1])[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
            if nxt == 102:
                break
        out.append(ids[0].tolist())
    return out


def _trim(seqs: torch.Tensor) -> list[list[int]]:
    rows = []
    for r in seqs.tolist():
        rows.append(r[: r.index(102) + 1] if 102 in r else [t for t in r if t != 0])
    return rows


def test_greedy_equals_uncached_reference(model: Blip) -> None:
    img = model.encode_image(torch.randn(6, 3, 64, 64) * 3)
    out = generate(model.text_decoder, img, PROMPT, GenerationConfig(max_length=16))  # type: ignore[arg-type]
    ref = _greedy_reference(model, img, 16)
    assert _trim(out.sequences) == ref
    assert len({len(r) for r in ref}) > 1, "the fixture should give sequences of several lengths"
    # finished rows are padded, and the output is as long as the longest sequence
    assert out.sequences.shape[1] == max(len(r) for r in ref)


def test_beam_one_context_at_a_time_equals_batched(model: Blip) -> None:
    """Dropping finished contexts from the batch must not change any result."""
    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(5, 3, 64, 64) * 3)
    cfg = GenerationConfig(max_length=14, num_beams=3, num_return_sequences=2)
    batched = _trim(generate(dec, img, PROMPT, cfg).sequences)
    single = [r for i in range(5) for r in _trim(generate(dec, img[i : i + 1], PROMPT, cfg).sequences)]
    assert batched == single


def test_seeded_sampling_of_a_context_does_not_depend_on_its_batch(model: Blip) -> None:
    """Each context samples from its own stream (its key): alone or in any batch, and whether or
    not the others finish first and leave the batch, it draws the same sequences."""
    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(5, 3, 64, 64) * 3)
    cfg = GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=4, num_return_sequences=2)
    batched = _trim(generate(dec, img, PROMPT, cfg).sequences)
    single = [r for i in range(5) for r in _trim(generate(dec, img[i : i + 1], PROMPT, cfg, sample_keys=[i]).sequences)]
    assert batched == single
    assert len({len(r) for r in batched}) > 1  # some rows finished early: the batch was compacted
    assert batched[0] != batched[1]  # a context's return sequences have their own streams
    shifted = _trim(generate(dec, img[3:], PROMPT, cfg, sample_keys=[3, 4]).sequences)
    assert shifted == batched[6:]
    with pytest.raises(ValueError, match="2 sample keys for 5 contexts"):
        generate(dec, img, PROMPT, cfg, sample_keys=[0, 1])


def test_sampling_seeded_and_grouped(model: Blip) -> None:
    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(2, 3, 64, 64))
    cfg = GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=7, num_return_sequences=3)
    a = generate(dec, img, PROMPT, cfg)
    b = generate(dec, img, PROMPT, cfg)
    assert a.sequences.shape[0] == 6
    assert torch.equal(a.sequences, b.sequences)
    assert not torch.equal(
        a.sequences,
        generate(
            dec, img, PROMPT, GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=8, num_return_sequences=3)
        ).sequences,
    )
    assert (a.sequences[:, :4] == PROMPT).all()


def test_prompt_too_long(model: Blip) -> None:
    img = model.encode_image(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="nothing to generate"):
        generate(model.text_decoder, img, PROMPT, GenerationConfig(max_length=4))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cfg",
    [
        GenerationConfig(max_length=16),
        GenerationConfig(max_length=14, num_beams=3, num_return_sequences=2),
        GenerationConfig(max_length=14, num_beams=2, min_length=8, repetition_penalty=1.3),
        GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=3, num_return_sequences=2),
    ],
    ids=["greedy", "beam3", "beam2_penalties", "sample"],
)
def test_fixed_shape_steps_equal_dynamic_ones(model: Blip, cfg: GenerationConfig) -> None:
    """The CUDA-graph path's fixed-shape steps (static cache, masked slots, no compaction), run
    eagerly on the CPU, give the same sequences and scores as the dynamic path."""
    from dataclasses import replace

    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(5, 3, 64, 64) * 3)
    dynamic = generate(dec, img, PROMPT, cfg)
    static = generate(dec, img, PROMPT, replace(cfg, cuda_graph=True))
    assert torch.equal(static.sequences, dynamic.sequences)
    torch.testing.assert_close(static.scores, dynamic.scores, atol=1e-4, rtol=1e-5)
    assert len({len(r) for r in _trim(dynamic.sequences)}) > 1  # some rows finished early


def test_static_cache_reorders_but_never_drops_rows() -> None:
    from openblip.model.cache import KVCache

    cache = KVCache(1, 3, 1, 4, 2, torch.float32, torch.device("cpu"))
    cache.k.copy_(torch.arange(24.0).view(cache.k.shape))
    cache.v.fill_(float("nan"))  # what torch.empty may hold
    cache.length = 2
    cache.make_static()
    # slots not yet written are read (masked) by every step: they must be finite
    assert (cache.k[:, :, :, 2:] == 0).all() and (cache.v[:, :, :, 2:] == 0).all()
    assert cache.k[0, 0, 0, 1].tolist() == [2.0, 3.0]
    storage = cache.k.data_ptr()
    before = cache.k.clone()
    cache.select(torch.tensor([2, 0, 1]))
    assert cache.k.data_ptr() == storage and torch.equal(cache.k[0, 0], before[0, 2])
    with pytest.raises(ValueError, match="reordered, not dropped"):
        cache.select(torch.tensor([0, 1]))
    # the step writes at `positions` and masks only the slots after it
    bias = cache.step_bias(torch.float32)
    assert bias.shape == (1, 1, 1, 4) and bias[0, 0, 0].tolist() == [0.0, 0.0, 0.0, -10000.0]
    cache.write(0, torch.full((3, 1, 1, 2), -1.0), torch.full((3, 1, 1, 2), -2.0))
    assert (cache.k[0, :, :, 2] == -1).all() and (cache.v[0, :, :, 2] == -2).all()
    cache.advance(1)
    assert cache.length == 3 and cache.positions is not None and cache.positions.tolist() == [3]


@pytest.mark.parametrize(
    "cfg",
    [
        GenerationConfig(max_length=16),
        GenerationConfig(max_length=14, num_beams=3, num_return_sequences=2),
        GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=3, num_return_sequences=2),
    ],
    ids=["greedy", "beam3", "sample"],
)
def test_folded_context_generates_as_precomputed_keys(model: Blip, kernels_on: None, cfg: GenerationConfig) -> None:
    """On the CPU few sequences per context read the image tokens through folded projections;
    the sequences equal those from precomputed keys/values (padded contexts included)."""
    from openblip.model.generate import fold_context

    dec = model.text_decoder
    assert dec is not None
    img = model.encode_image(torch.randn(5, 3, 64, 64) * 3)
    with torch.inference_mode():
        assert fold_context(dec, img, len(PROMPT), cfg)
    folded = generate(dec, img, PROMPT, cfg)
    with torch.inference_mode():
        kv = dec.transformer.cross_kv(img)
    assert torch.equal(folded.sequences, generate(dec, kv, PROMPT, cfg).sequences)
    mask = torch.ones(5, img.shape[1], dtype=torch.long)
    mask[2:, 10:] = 0
    folded = generate(dec, img, PROMPT, cfg, context_mask=mask)
    with torch.inference_mode():
        kv = dec.transformer.cross_kv(img, mask)
    assert torch.equal(folded.sequences, generate(dec, kv, PROMPT, cfg).sequences)


def test_fold_context_rule(model: Blip, kernels_on: None) -> None:
    from dataclasses import replace

    from openblip.model.generate import fold_context

    dec = model.text_decoder
    assert dec is not None
    width = dec.transformer.cfg.width
    heads = dec.transformer.cfg.heads
    img = torch.zeros(2, 10, width)
    limit = width * width / (heads * width - width)  # queries x steps below which folding pays
    greedy = GenerationConfig(max_length=1 + int(limit) - 1)
    with torch.inference_mode():
        assert fold_context(dec, img, 1, greedy)
        assert not fold_context(dec, img, 1, replace(greedy, max_length=1 + int(limit) + 1))
        assert not fold_context(dec, img, 1, GenerationConfig(max_length=21, num_beams=5))
        assert not fold_context(dec, img, 1, replace(greedy, cuda_graph=True))  # graphs take CrossKV
        assert not fold_context(dec, img.to("meta"), 1, greedy)  # CPU only
    assert not fold_context(dec, img, 1, greedy)  # autograd on: the plain path
    model.use_cpu_kernels("off")
    with torch.inference_mode():
        assert not fold_context(dec, img, 1, greedy)  # folding is taken only with the CPU kernels
