"""Decoding steps replayed from a CUDA graph. The fixed-shape step itself is tested on the CPU
(tests/model/test_generate.py::test_fixed_shape_steps_equal_dynamic_ones); capture needs CUDA."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from openblip.config import preset
from openblip.model import Blip
from openblip.model.cuda_graph import _GraphedStep, decode_step
from openblip.model.generate import GenerationConfig, generate

PROMPT = torch.tensor([30522, 1037, 3861, 1997])


def _model(device: str) -> Blip:
    torch.manual_seed(1)
    m = Blip(preset("tiny", "caption")).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.mul_(5)
    return m.to(device)


def test_no_graph_off_cuda() -> None:
    m = _model("cpu")
    dec = m.text_decoder
    assert dec is not None
    kv = dec.transformer.cross_kv(m.encode_image(torch.randn(2, 3, 64, 64)))
    cache = dec.new_cache(2, 8)
    with torch.inference_mode():
        dec(PROMPT[None].expand(2, -1), None, kv, cache=cache, last_only=True)
        step = decode_step(dec, kv, cache, graph=True)
        assert not isinstance(step, _GraphedStep) and cache.static
        logits = step(torch.tensor([[2003], [2003]]))
    assert logits.shape == (2, dec.head.bias.shape[0]) and cache.length == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize(
    "cfg",
    [
        GenerationConfig(max_length=16),
        GenerationConfig(max_length=14, num_beams=3, num_return_sequences=2),
        GenerationConfig(max_length=12, do_sample=True, top_p=0.9, seed=3),
        GenerationConfig(max_length=5),  # one step only: capture must not write past the cache
    ],
)
def test_graph_replay_equals_eager(cfg: GenerationConfig) -> None:
    m = _model("cuda")
    dec = m.text_decoder
    assert dec is not None
    img = m.encode_image(torch.randn(5, 3, 64, 64, device="cuda") * 3)
    eager = generate(dec, img, PROMPT, cfg)
    graphed = generate(dec, img, PROMPT, replace(cfg, cuda_graph=True))
    assert torch.equal(graphed.sequences, eager.sequences)
    torch.testing.assert_close(graphed.scores, eager.scores, atol=1e-3, rtol=1e-4)
