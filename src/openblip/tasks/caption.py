"""Image captioning with the image-grounded decoder (original `BLIP_Decoder.generate`).

The decoder continues a text prompt: "a picture of " by default, as the original, which
tokenizes it, puts [DEC] first and drops the trailing [SEP] -> [30522, 1037, 3861, 1997].
The prompt is removed from the returned text (the original cuts `len(prompt)` characters from
the decoded string; we cut the decoded prompt, which is the same for every lowercase prompt
and also right for prompts the tokenizer normalises). An empty prompt starts from [DEC] alone.

`max_length`/`min_length` count [DEC] and the prompt tokens (the original's HF 4.15
semantics): with the default prompt, max_length 20 allows at most 16 new tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.model.generate import GenerationConfig, generate
from openblip.tasks.inputs import encode_images, require_caption_decoder
from openblip.tokenizer import Tokenizer

DEFAULT_PROMPT = "a picture of "

# The original's captioning config (configs/caption_coco.yaml, demo.ipynb, predict.py): beam 3,
# max 20, min 5; length penalty 1 and repetition penalty 1 (HF defaults).
BEAM_DEFAULTS = GenerationConfig(max_length=20, min_length=5, num_beams=3)
# The original's nucleus sampling (`sample=True`): top_p 0.9, transformers' default top_k 50
# still active, repetition_penalty 1.1 hard-coded.
NUCLEUS_DEFAULTS = GenerationConfig(
    max_length=20, min_length=5, do_sample=True, top_p=0.9, top_k=50, repetition_penalty=1.1
)


def caption_config(
    *,
    sample: bool = False,
    num_beams: int = 3,
    max_length: int = 20,
    min_length: int = 5,
    top_p: float = 0.9,
    top_k: int = 50,
    temperature: float = 1.0,
    repetition_penalty: float | None = None,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    num_captions: int = 1,
    seed: int | None = None,
) -> GenerationConfig:
    """Generation settings for captioning. Defaults are the original's: beam 3, max 20, min 5
    (lengths count [DEC] and the prompt); sampling is its nucleus setting (top_p 0.9, top_k 50,
    repetition_penalty 1.1). More captions than beams raise the beam count to the captions."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if sample:
        return GenerationConfig(
            max_length=max_length,
            min_length=min_length,
            do_sample=True,
            top_p=top_p,
            top_k=top_k,
            temperature=temperature,
            repetition_penalty=1.1 if repetition_penalty is None else repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            num_return_sequences=num_captions,
            seed=seed,
        )
    return GenerationConfig(
        max_length=max_length,
        min_length=min_length,
        num_beams=max(num_beams, num_captions),
        repetition_penalty=1.0 if repetition_penalty is None else repetition_penalty,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        num_return_sequences=num_captions,
    )


@dataclass(frozen=True)
class Caption:
    text: str  # decoded, prompt removed
    score: float  # beam search: length-penalised log-prob; greedy/sampling: summed log-prob
    ids: tuple[int, ...]  # [DEC], prompt, generated ids up to and including [SEP]


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> torch.Tensor:
    """(P,) decoder prompt: [DEC] then the prompt's word pieces (no [SEP])."""
    if not prompt.strip():
        return torch.tensor([tokenizer.dec_id])
    ids = tokenizer.encode([prompt]).ids[0].clone()
    ids[0] = tokenizer.dec_id
    return ids[:-1]  # drop [SEP]: the decoder continues the prompt


def decode_caption(tokenizer: Tokenizer, ids: torch.Tensor, prompt_len: int) -> str:
    """Text of one generated sequence without its prompt (special tokens dropped; the original's
    transformers 4.x spacing, e.g. "dog's")."""
    full = tokenizer.decode(ids, clean_up_tokenization_spaces=True)
    head = tokenizer.decode(ids[:prompt_len], clean_up_tokenization_spaces=True)
    if head and full.startswith(head):
        return full[len(head) :].strip()
    return tokenizer.decode(ids[prompt_len:], clean_up_tokenization_spaces=True).strip()


def _trim(seq: torch.Tensor, eos: int) -> tuple[int, ...]:
    ids = seq.tolist()
    return tuple(ids[: ids.index(eos) + 1]) if eos in ids else tuple(ids)


@torch.inference_mode()
def caption_images(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    cfg: GenerationConfig = BEAM_DEFAULTS,
    prompt: str = DEFAULT_PROMPT,
    sample_keys: Sequence[int] | None = None,
) -> list[list[Caption]]:
    """Captions for each image of pixels (B, 3, S, S): B lists of cfg.num_return_sequences.

    The ViT runs once for the batch and the decoder's cross-attention keys/values are computed
    once per image, shared by its beams or samples (model/generate.py). sample_keys: each
    image's sampling stream (model/sampling.py; default its position in this batch): pass each
    image's position in the whole input so that seeded samples do not depend on the batching.
    """
    require_caption_decoder(model)
    assert model.text_decoder is not None
    if cfg.max_length > model.cfg.text.max_positions:
        raise ValueError(f"max_length {cfg.max_length} exceeds the model's {model.cfg.text.max_positions} positions")
    prompt_t = prompt_ids(tokenizer, prompt)
    if prompt_t.numel() >= cfg.max_length:
        raise ValueError(
            f"the prompt takes {prompt_t.numel()} tokens ([DEC] included): max_length {cfg.max_length} "
            "leaves nothing to generate"
        )
    if pixels.shape[0] == 0:
        return []
    tokens = encode_images(model, pixels)  # (B, 1+N, Dv)
    out = generate(model.text_decoder, tokens, prompt_t, cfg, sample_keys=sample_keys)
    group = cfg.num_return_sequences
    plen = prompt_t.numel()
    result: list[list[Caption]] = []
    for b in range(pixels.shape[0]):
        caps = []
        for r in range(group):
            row = b * group + r
            ids = _trim(out.sequences[row].cpu(), cfg.eos_token_id)
            text = decode_caption(tokenizer, torch.tensor(ids), plen)
            caps.append(Caption(text, float(out.scores[row]), ids))
        result.append(caps)
    return result
