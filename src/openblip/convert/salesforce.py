"""The original salesforce/BLIP checkpoint layout (`.pth` files, `{'model': state_dict}`).

The original names are ours for the ViT (timm) and med.py's BERT names for text. A
checkpoint has no config: the architecture is read from tensor shapes and the layout from
which components it holds (blip_official.md section 3).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from openblip.config import BlipConfig, TextConfig, VisionConfig
from openblip.convert.bert import DECODER_RULES, ENCODER_RULES, POSITION_IDS, TIED_DECODER
from openblip.convert.keymap import CheckpointError, KeyMap

log = logging.getLogger(__name__)

HEAD_DIM = 64  # every released BLIP (ViT-B/L, BERT-base) uses 64-wide attention heads
ORIGINAL_VISION_EPS = 1e-6  # models/vit.py: partial(nn.LayerNorm, eps=1e-6)
ORIGINAL_TEXT_EPS = 1e-12  # configs/med_config.json

VISION_RULES: dict[str, str] = {
    "visual_encoder": "visual_encoder",  # timm names, as ours
}

KEYMAP = KeyMap(
    format="Salesforce BLIP",
    renames={
        **VISION_RULES,
        **ENCODER_RULES,
        **DECODER_RULES,
        "vision_proj": "vision_proj",
        "text_proj": "text_proj",
        "itm_head": "itm_head",
        "temp": "temp",
    },
    drops={
        r"(visual_encoder|vision_proj|text_encoder|text_proj)_m\..*": "momentum encoder copy (training only)",
        r"image_queue|text_queue|idx_queue": "ITC feature queue (training only)",
        r"queue_ptr|ptr_queue": "ITC queue pointer (training only)",
        POSITION_IDS: "position_ids buffer (an arange)",
    },
    tied=TIED_DECODER,
    # The original BLIP_ITM (blip_itm.py) has no temp; inference never uses it. 0.07 is the
    # original's initial value (blip_retrieval.py, blip_pretrain.py: nn.Parameter(0.07 * ones([]))).
    defaults={"temp": (0.07, "the original BLIP_ITM has no temp; inference does not use it")},
)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `.pth`: `torch.load(weights_only=True)`, unwrapping `{'model': ...}`."""
    obj = safe_torch_load(path)
    if isinstance(obj, dict) and {"model", "optimizer", "position", "config"} <= obj.keys():
        raise CheckpointError(
            f"{path}: an openblip training checkpoint (model, optimizer, data position), not released weights; "
            "load the model the run exported (RUN_DIR/model), or resume the run with `openblip train --resume`"
        )
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointError(f"{path}: not a BLIP checkpoint (expected a state dict or {{'model': state_dict}})")
    return obj


def safe_torch_load(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers: a pickle that would run code
    (or build arbitrary objects) is refused with an error naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # UnpicklingError for refused globals; RuntimeError for corrupt zips
        raise CheckpointError(
            f"{path}: refused or unreadable torch checkpoint ({_reason(e)}); openblip loads tensors only "
            "(weights_only=True) and never runs code from a pickle"
        ) from e


def _reason(err: Exception) -> str:
    """The gist of torch.load's error, without its advice to retry with weights_only=False
    (unsafe, and never what a user of a checkpoint reader should do)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:  # not a pickle of tensors: a PNG, a code-running pickle...
        text = "not a pickle of tensors: " + text.split("WeightsUnpickler error:", 1)[1]
        text = text.split("Check the documentation", 1)[0]
    elif isinstance(err, KeyError):
        text = f"not a torch checkpoint (missing record {err})"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _layer_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if found != set(range(len(found))):
        raise CheckpointError(f"{prefix}: layer indices {sorted(found)} are not 0..N-1")
    return len(found)


def _need(state: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key} (needed to infer the architecture)")
    return state[key]


def infer_config(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> BlipConfig:
    """Architecture from tensor shapes, layout from the components present.

    heads = width // 64 (all released models); vision LayerNorm eps 1e-6 (the original ViT);
    label smoothing 0.1 (the original LM loss). Layouts: visual_encoder + text_decoder =
    caption; text_encoder + heads = retrieval; text_encoder + text_decoder without heads = VQA
    (the decoder must cross-attend at the text width); everything = pre-training, with
    share_encoder_decoder=True when every tensor the original ties (embeddings,
    cross-attention, feed-forward) is equal in both copies, else independent weights ("full").
    """
    cls = _need(state, "visual_encoder.cls_token", source)
    patch = _need(state, "visual_encoder.patch_embed.proj.weight", source)
    pos = _need(state, "visual_encoder.pos_embed", source)
    width = cls.shape[-1]
    grid = math.isqrt(pos.shape[1] - 1)
    if grid * grid != pos.shape[1] - 1:
        raise CheckpointError(f"{source}: visual_encoder.pos_embed: {pos.shape[1] - 1} patch positions is not a square")
    vision = VisionConfig(
        width=width,
        depth=_layer_count(state, "visual_encoder.blocks"),
        heads=max(1, width // HEAD_DIM),
        mlp_dim=_need(state, "visual_encoder.blocks.0.mlp.fc1.weight", source).shape[0],
        patch_size=patch.shape[-1],
        image_size=grid * patch.shape[-1],
        layer_norm_eps=ORIGINAL_VISION_EPS,
    )
    has_enc = any(k.startswith("text_encoder.") for k in state)
    has_dec = any(k.startswith("text_decoder.") for k in state)
    has_heads = "itm_head.weight" in state
    if not (has_enc or has_dec):
        raise CheckpointError(f"{source}: no text_encoder.* or text_decoder.* keys; not a BLIP checkpoint")
    if has_heads and not has_enc:
        raise CheckpointError(f"{source}: has itm_head but no text_encoder")
    text_prefix = "text_encoder" if has_enc else "text_decoder.bert"
    word = _need(state, f"{text_prefix}.embeddings.word_embeddings.weight", source)
    text = TextConfig(
        vocab_size=word.shape[0],
        width=word.shape[1],
        depth=_layer_count(state, f"{text_prefix}.encoder.layer"),
        heads=max(1, word.shape[1] // HEAD_DIM),
        mlp_dim=_need(state, f"{text_prefix}.encoder.layer.0.intermediate.dense.weight", source).shape[0],
        max_positions=_need(state, f"{text_prefix}.embeddings.position_embeddings.weight", source).shape[0],
        layer_norm_eps=ORIGINAL_TEXT_EPS,
    )
    embed_dim = state["vision_proj.weight"].shape[0] if "vision_proj.weight" in state else BlipConfig.embed_dim
    decoder_over_text = False
    share = False
    if has_enc and has_dec and not has_heads:  # BLIP_VQA: the answer decoder reads question states
        key = _need(state, "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight", source)
        if key.shape[1] != text.width:
            raise CheckpointError(
                f"{source}: text encoder and decoder without ITC/ITM heads is read as VQA, but the decoder's "
                f"cross-attention takes width {key.shape[1]}, not the text width {text.width}"
            )
        decoder_over_text = True
    elif has_enc and has_dec:
        share = shares_encoder_decoder(state)
        log.info("%s: pre-training layout, encoder/decoder %s", source, "shared" if share else "independent")
    return BlipConfig(
        vision=vision,
        text=text,
        text_encoder=has_enc,
        text_decoder=has_dec,
        heads=has_heads,
        embed_dim=embed_dim,
        share_encoder_decoder=share,
        decoder_over_text=decoder_over_text,
    )


def shares_encoder_decoder(state: Mapping[str, torch.Tensor]) -> bool:
    """True when every tensor that `tie_encoder_decoder_weights` ties (all but self-attention)
    is equal in text_encoder.* and text_decoder.bert.*."""
    tied = [
        (k, "text_decoder.bert." + k[len("text_encoder.") :])
        for k in state
        if k.startswith("text_encoder.") and ".attention." not in k and not k.endswith("position_ids")
    ]
    return bool(tied) and all(d in state and torch.equal(state[e], state[d]) for e, d in tied)


def to_salesforce(state: Mapping[str, torch.Tensor], cfg: BlipConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> the original names (every shared copy written, as the original
    state_dict has them), for use with the original code; no momentum copies or queues."""
    out = {KEYMAP.theirs(k): v for k, v in state.items()}
    if cfg.text_decoder:
        out["text_decoder.cls.predictions.decoder.weight"] = out["text_decoder.bert.embeddings.word_embeddings.weight"]
        out["text_decoder.cls.predictions.decoder.bias"] = out["text_decoder.cls.predictions.bias"]
    return out


__all__ = ["KEYMAP", "infer_config", "read_checkpoint", "safe_torch_load", "shares_encoder_decoder", "to_salesforce"]
