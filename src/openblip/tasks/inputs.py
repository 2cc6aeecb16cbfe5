"""What every task needs before the model runs: BLIP's text cleaning and token limits, the
checks that a checkpoint holds the parts a task uses, and batched image/text embedding.

Token limits follow the original: retrieval and ITM texts are tokenized with
`max_length=35` (salesforce/BLIP `train_retrieval.py`, `models/blip_itm.py`), VQA questions
likewise (`models/blip_vqa.py`). A longer text is truncated (word pieces dropped, [SEP] kept),
never an error. The limit is further capped by the model's position embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from openblip.model.blip import Blip
from openblip.text_cleaning import pre_caption
from openblip.tokenizer import Encoding, Tokenizer

RETRIEVAL_MAX_TOKENS = 35  # original retrieval / ITM texts: max_length=35
QUESTION_MAX_TOKENS = 35  # original BLIP_VQA questions: max_length=35
CAPTION_MAX_WORDS = 30  # pre_caption(text, 30) as the original retrieval data


def token_limit(model: Blip, wanted: int) -> int:
    """`wanted`, capped at the model's position embeddings."""
    return max(2, min(wanted, model.cfg.text.max_positions))


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int, device: torch.device) -> Encoding:
    """[CLS] text [SEP], truncated to max_tokens, padded to the longest, on `device`."""
    enc = tokenizer.encode(list(texts), max_length=max_tokens)
    return Encoding(enc.ids.to(device), enc.mask.to(device))


def clean_texts(texts: Sequence[str], clean: bool) -> list[str]:
    """pre_caption(text, 30) as the original retrieval evaluation does, or the texts as given."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one str")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return [pre_caption(t, CAPTION_MAX_WORDS) for t in texts] if clean else list(texts)


def check_text(text: str, index: int, clean: bool = True) -> str:
    """A query text as the model will read it (pre_caption(text, 30) when `clean`). A text with
    nothing left ("", "  ", "!!!") is a ValueError naming it: the model would still score
    [CLS] [SEP] alone, and that score says nothing about the text."""
    (cleaned,) = clean_texts([text], clean)
    if not cleaned.strip():
        shown = f"{text!r} after cleaning" if clean else repr(text)
        raise ValueError(f"text {index} is empty ({shown})")
    return cleaned


# ---- checkpoint capabilities --------------------------------------------------------------------
def require_heads(model: Blip, task: str) -> None:
    if not model.cfg.heads:
        raise ValueError(
            f"{task} needs the ITC/ITM heads, which this checkpoint lacks; use a retrieval/ITM "
            "or pre-trained BLIP checkpoint"
        )


def require_caption_decoder(model: Blip) -> None:
    if model.text_decoder is None:
        raise ValueError("captioning needs a text decoder, which this checkpoint lacks; use a captioning checkpoint")
    if model.cfg.decoder_over_text:
        raise ValueError("this is a VQA checkpoint (its decoder reads question states, not images); use it for vqa")


def require_vqa(model: Blip) -> None:
    if not model.cfg.decoder_over_text or model.text_decoder is None or model.text_encoder is None:
        raise ValueError("visual question answering needs a VQA checkpoint (question encoder + answer decoder)")


# ---- batched embeddings ---------------------------------------------------------------------------
def encode_images(model: Blip, pixels: torch.Tensor) -> torch.Tensor:
    """pixels (B, 3, S, S) on any device -> image tokens (B, 1+N, Dv) on the model's device."""
    return model.encode_image(pixels.to(model.device))


def unit_float32(features: torch.Tensor) -> torch.Tensor:
    """(N, E) ITC features -> float32 on the CPU, normalised again there: in bf16/fp16 the
    model's own normalisation leaves norms up to ~0.4% off 1."""
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()


@torch.inference_mode()
def embed_images(model: Blip, pixels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """ITC image features (B, E), float32 on the CPU; the ViT runs `batch_size` images at a time."""
    require_heads(model, "image embedding")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = [
        unit_float32(model.image_embed(encode_images(model, pixels[i : i + batch_size])))
        for i in range(0, pixels.shape[0], batch_size)
    ]
    if not out:
        return torch.zeros(0, model.cfg.embed_dim)
    return torch.cat(out)


@torch.inference_mode()
def embed_texts(
    model: Blip,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    clean: bool = True,
    max_tokens: int = RETRIEVAL_MAX_TOKENS,
    batch_size: int = 256,
) -> torch.Tensor:
    """ITC text features (T, E), float32 on the CPU (the unimodal encoder, [CLS] first).

    clean: apply pre_caption(text, 30) first, as the original retrieval evaluation does."""
    require_heads(model, "text embedding")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cleaned = clean_texts(texts, clean)
    limit = token_limit(model, max_tokens)
    out = []
    for i in range(0, len(cleaned), batch_size):
        ids, mask = tokenize(tokenizer, cleaned[i : i + batch_size], limit, model.device)
        out.append(unit_float32(model.text_embed(ids, mask)))
    if not out:
        return torch.zeros(0, model.cfg.embed_dim)
    return torch.cat(out)
