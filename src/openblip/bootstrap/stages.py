"""The three stages every engine runs on a batch of samples: decode, caption, filter.

decode (worker processes or Ray tasks): image bytes -> validated RGB -> pixels at each model's
input size, a small JPEG thumbnail for the report (bootstrap/pictures.py), and the image's file
extension.
caption + filter (`Scorer`, the model side): the captioner writes N texts per image; the filter
scores the web text and every synthetic text against its own image with ITM (probability of
match) and ITC (cosine), and keeps a text when its ITM is above the threshold. When captioner
and filter are one checkpoint, the ViT runs once per image for both.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from openblip.api import BlipPipeline
from openblip.bootstrap.config import CaptionSettings
from openblip.bootstrap.pictures import thumbnail_jpeg
from openblip.image import ImageError, load_image, preprocess
from openblip.model.generate import GenerationConfig, generate
from openblip.model.sampling import name_key
from openblip.tasks.caption import decode_caption, prompt_ids
from openblip.tasks.inputs import CAPTION_MAX_WORDS, RETRIEVAL_MAX_TOKENS, token_limit, tokenize
from openblip.text_cleaning import pre_caption

log = logging.getLogger(__name__)

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_ITM_ROWS = 512  # (image, text) rows through the grounded encoder at once


# ---- decode ------------------------------------------------------------------------------------
@dataclass
class Decoded:
    index: int
    pixels: tuple[np.ndarray, ...] | None  # one (3, S, S) float32 per model input size; None on error
    thumb: bytes  # JPEG within the report's caps (pictures.thumbnail_jpeg)
    ext: str  # the image's own extension (jpg, png, webp): kept shards keep the bytes as they are
    error: str | None


def decode_one(index: int, key: str, data: bytes, sizes: Sequence[int], max_pixels: int) -> Decoded:
    try:
        image = load_image(data, max_pixels=max_pixels, name=key)
        with Image.open(io.BytesIO(data)) as header:
            ext = _EXTENSIONS.get(header.format or "", "jpg")
    except ImageError as e:
        return Decoded(index, None, b"", "jpg", str(e))
    pixels = tuple(preprocess([image], s)[0].numpy() for s in sizes)
    return Decoded(index, pixels, thumbnail_jpeg(image), ext, None)


def decode_batch(
    items: Sequence[tuple[int, str, bytes]], sizes: Sequence[int], max_pixels: int
) -> tuple[list[Decoded], float]:
    """(index, key, image bytes) -> Decoded per item, and the seconds it took (decode throughput)."""
    start = time.perf_counter()
    out = [decode_one(i, key, data, sizes, max_pixels) for i, key, data in items]
    return out, time.perf_counter() - start


def init_decode_worker() -> None:
    """Decode processes share the CPU with the model: one thread each."""
    torch.set_num_threads(1)


# ---- caption + filter ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TextScore:
    itm: float | None  # probability of match; None for a synthetic text empty after cleaning
    itc: float | None  # cosine of the ITC features
    kept: bool


@dataclass(frozen=True)
class Scored:
    synthetic: tuple[str, ...]
    web: TextScore | None
    synthetic_scores: tuple[TextScore, ...]
    error: str | None = None  # the model failed on this sample even alone


@dataclass
class StageTimes:
    caption: float = 0.0
    filter: float = 0.0


class Scorer:
    """Captioner and filter on one device. `score` takes a batch of samples (keys, web texts and
    their pixels per input size, as `sizes` orders them) and returns one Scored per sample."""

    def __init__(
        self, filter: BlipPipeline, captioner: BlipPipeline | None, caption: CaptionSettings, threshold: float
    ) -> None:
        self.filter = filter
        self.captioner = captioner
        self.shared = captioner is filter
        self.generation = caption.generation()
        self.prompt = caption.prompt
        self.threshold = threshold
        self.times = StageTimes()
        sizes = [filter.image_size] + ([captioner.image_size] if captioner is not None else [])
        self.sizes: tuple[int, ...] = tuple(dict.fromkeys(sizes))

    @torch.inference_mode()
    def score(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        pixels: Sequence[torch.Tensor],
        synthetic: Sequence[tuple[str, ...]] | None = None,
    ) -> list[Scored]:
        """pixels: per size of `self.sizes`, (B, 3, S, S). synthetic: captions written elsewhere (a
        separate captioner pool) to score instead of captioning here. A RuntimeError (out of
        memory, a kernel error) on the batch is retried one sample at a time; a sample failing
        alone gets `error`."""
        if not keys:
            return []
        try:
            return self._score(keys, texts, pixels, synthetic)
        except RuntimeError as e:
            if len(keys) == 1:
                return [_failed(e)]
            log.warning("the model failed on a batch of %d (%s); retrying one sample at a time", len(keys), e)
        out = []
        for b in range(len(keys)):
            try:
                one = None if synthetic is None else synthetic[b : b + 1]
                out.extend(self._score(keys[b : b + 1], texts[b : b + 1], [p[b : b + 1] for p in pixels], one))
            except RuntimeError as e:
                out.append(_failed(e))
        return out

    def _score(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        pixels: Sequence[torch.Tensor],
        given: Sequence[tuple[str, ...]] | None,
    ) -> list[Scored]:
        fmodel = self.filter.model
        by_size = dict(zip(self.sizes, pixels))
        start = time.perf_counter()
        tokens = fmodel.encode_image(by_size[self.filter.image_size].to(fmodel.device))  # (B, 1+N, Dv)
        synthetic: list[tuple[str, ...]] = [() for _ in keys] if given is None else list(given)
        if self.captioner is not None and given is None:
            cap_tokens = tokens
            if not self.shared:
                cmodel = self.captioner.model
                cap_tokens = cmodel.encode_image(by_size[self.captioner.image_size].to(cmodel.device))
            synthetic = self._caption(cap_tokens, keys)
        mid = time.perf_counter()
        scores = self._filter(tokens, texts, synthetic)
        end = time.perf_counter()
        self.times.caption += mid - start  # the shared ViT counts as captioning
        self.times.filter += end - mid
        return [Scored(syn, row[0], tuple(row[1:])) for syn, row in zip(synthetic, scores)]

    def _caption(self, tokens: torch.Tensor, keys: Sequence[str]) -> list[tuple[str, ...]]:
        assert self.captioner is not None
        return caption_tokens(self.captioner, self.generation, self.prompt, tokens, keys)

    def _filter(
        self, tokens: torch.Tensor, web: Sequence[str], synthetic: Sequence[tuple[str, ...]]
    ) -> list[list[TextScore]]:
        """Per image: the scores of [web text, synthetic texts...] against that image only."""
        model, tokenizer = self.filter.model, self.filter.tokenizer
        per = 1 + len(synthetic[0])
        cleaned = [pre_caption(t, CAPTION_MAX_WORDS) for b in range(len(web)) for t in (web[b], *synthetic[b])]
        usable = [bool(t.strip()) for t in cleaned]
        ids, mask = tokenize(tokenizer, cleaned, token_limit(model, RETRIEVAL_MAX_TOKENS), model.device)
        images = model.image_embed(tokens).float()  # (B, E)
        texts = model.text_embed(ids, mask).float().view(len(web), per, -1)  # (B, T, E)
        itc = (texts * images[:, None]).sum(-1)  # (B, T)
        chunk = max(1, _ITM_ROWS // per)
        logits = torch.cat(
            [
                model.itm_logits(
                    ids[lo * per : (lo + chunk) * per], mask[lo * per : (lo + chunk) * per], tokens[lo : lo + chunk]
                )
                for lo in range(0, len(web), chunk)
            ]
        ).float()
        itm = logits.softmax(-1)[:, 1].view(len(web), per)
        itm_l, itc_l = itm.cpu().tolist(), itc.cpu().tolist()
        out = []
        for b in range(len(web)):
            row = []
            for t in range(per):
                if usable[b * per + t]:
                    p = float(itm_l[b][t])
                    row.append(TextScore(p, float(itc_l[b][t]), p > self.threshold))
                else:  # nothing left to score: [CLS] [SEP] alone says nothing about the image
                    row.append(TextScore(None, None, False))
            out.append(row)
        return out


def caption_tokens(
    captioner: BlipPipeline, generation: GenerationConfig, prompt: str, tokens: torch.Tensor, keys: Sequence[str]
) -> list[tuple[str, ...]]:
    """The synthetic captions of each image tokens (B, 1+N, Dv), sampled from the stream of its key."""
    decoder = captioner.model.text_decoder
    assert decoder is not None
    prompt_t = prompt_ids(captioner.tokenizer, prompt)
    out = generate(decoder, tokens, prompt_t, generation, sample_keys=[name_key(k) for k in keys])
    group, eos = generation.num_return_sequences, generation.eos_token_id
    texts = []
    for b in range(len(keys)):
        row = []
        for r in range(group):
            ids = out.sequences[b * group + r].cpu().tolist()
            ids = ids[: ids.index(eos) + 1] if eos in ids else ids  # up to and including [SEP]
            row.append(decode_caption(captioner.tokenizer, torch.tensor(ids), prompt))
        texts.append(tuple(row))
    return texts


def _failed(e: RuntimeError) -> Scored:
    lines = str(e).strip().splitlines()
    return Scored((), None, (), f"model failed on this sample: {(lines[0] if lines else type(e).__name__)[:300]}")


def web_text_problem(text: str) -> str | None:
    """Why a web text cannot be scored (None when it can): nothing left after BLIP's cleaning."""
    if not pre_caption(text, CAPTION_MAX_WORDS).strip():
        return f"web text is empty after cleaning ({text[:80]!r})"
    return None
