"""Image captioning with the image-grounded decoder (original `BLIP_Decoder.generate`).

The decoder continues a text prompt: "a picture of " by default, as the original, which
tokenizes it, puts [DEC] first and drops the trailing [SEP] -> [30522, 1037, 3861, 1997].
The prompt is removed from the returned text as the original removes it: the whole sequence is
decoded and its first `len(prompt)` characters are cut (nothing stripped). So when the first
generated piece continues the prompt's last word ("a picture of " + "##x" decodes to "a picture
ofx", 13 characters) the caption is "", as the original's; a prompt without its trailing space
leaves a leading space. An empty prompt starts from [DEC] alone.

Each caption also carries how sure the decoder was of it, from the generation's own log-probs
(no second pass): `words`, the probability of each generated word (its word pieces' probabilities
multiplied), and `mean_logprob`, the mean log-probability of the generated tokens, [SEP]
included (beam search and greedy: after the repetition penalty and min-length processors;
sampling: before the top-k/top-p/temperature warp, i.e. under the decoder, not the sampler).

`max_length`/`min_length` count [DEC] and the prompt tokens (the original's HF 4.15
semantics): with the default prompt, max_length 20 allows at most 16 new tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.model.generate import BeamRules, GenerationConfig, generate
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
    beam_rules: BeamRules = BeamRules.ORIGINAL,
) -> GenerationConfig:
    """Generation settings for captioning. Defaults are the original's: beam 3, max 20, min 5
    (lengths count [DEC] and the prompt), transformers 4.15's beam rules (BeamRules.TRANSFORMERS
    for today's transformers'); sampling is its nucleus setting (top_p 0.9, top_k 50,
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
        beam_rules=beam_rules,
    )


@dataclass(frozen=True)
class WordProb:
    word: str  # a generated word, its word pieces merged ("##" removed)
    prob: float  # the product of its pieces' probabilities


@dataclass(frozen=True)
class Caption:
    text: str  # decoded, prompt removed
    score: float  # beam search: length-penalised log-prob; greedy/sampling: summed log-prob
    ids: tuple[int, ...]  # [DEC], prompt, generated ids up to and including [SEP]
    words: tuple[WordProb, ...] = ()  # the generated words in order ([SEP] not a word)
    mean_logprob: float = 0.0  # mean log-prob of the generated tokens, [SEP] included


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> torch.Tensor:
    """(P,) decoder prompt: [DEC] then the prompt's word pieces (no [SEP])."""
    if not prompt.strip():
        return torch.tensor([tokenizer.dec_id])
    ids = tokenizer.encode([prompt]).ids[0].clone()
    ids[0] = tokenizer.dec_id
    return ids[:-1]  # drop [SEP]: the decoder continues the prompt


def decode_caption(tokenizer: Tokenizer, ids: torch.Tensor, prompt: str) -> str:
    """Text of one generated sequence without its prompt, as the original: decode everything
    (special tokens dropped; transformers 4.x spacing, e.g. "dog's"), cut len(prompt) characters."""
    return tokenizer.decode(ids, clean_up_tokenization_spaces=True)[len(prompt) :]


def word_probs(tokenizer: Tokenizer, ids: Sequence[int], logprobs: Sequence[float], eos: int) -> tuple[WordProb, ...]:
    """Merge generated word pieces into words: a piece starting with "##" continues the word before
    it (a first piece that does, continuing the prompt, starts a word of its own)."""
    words: list[tuple[str, float]] = []
    for token_id, logp in zip(ids, logprobs, strict=True):
        if token_id == eos:
            continue
        piece = tokenizer.id_to_token(token_id) or ""
        if piece.startswith("##") and words:
            word, total = words[-1]
            words[-1] = (word + piece[2:], total + logp)
        else:
            words.append((piece.removeprefix("##"), logp))
    return tuple(WordProb(word, math.exp(total)) for word, total in words)


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
    token_logprobs = out.token_logprobs.cpu().tolist()
    result: list[list[Caption]] = []
    for b in range(pixels.shape[0]):
        caps = []
        for r in range(group):
            row = b * group + r
            ids = _trim(out.sequences[row].cpu(), cfg.eos_token_id)
            text = decode_caption(tokenizer, torch.tensor(ids), prompt)
            generated = token_logprobs[row][plen : len(ids)]
            words = word_probs(tokenizer, ids[plen:], generated, cfg.eos_token_id)
            mean = sum(generated) / len(generated) if generated else 0.0
            caps.append(Caption(text, float(out.scores[row]), ids, words, mean))
        result.append(caps)
    return result
