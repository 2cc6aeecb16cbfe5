"""The transformers layout: `BlipForConditionalGeneration` (caption), `BlipForQuestionAnswering`
(VQA) and `BlipForImageTextRetrieval` (ITM/ITC) directories with `config.json`.

Text names are med.py's (the port kept them); the ViT is renamed (`vision_model.*`, per
transformers' `convert_blip_original_pytorch_to_hf.py`). The config is read field by field:
in particular `text_config.num_attention_heads`, whose class default (8) is wrong for the
released models while their files say 12, and the vision LayerNorm eps (1e-5 on the hub,
1e-6 in the original ViT). See blip_hf_lavis.md sections 0-2.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from openblip.config import LAYOUTS, BlipConfig, TextConfig, VisionConfig
from openblip.convert.bert import DECODER_RULES, ENCODER_RULES, POSITION_IDS, TIED_DECODER
from openblip.convert.keymap import CheckpointError, KeyMap
from openblip.convert.salesforce import safe_torch_load

log = logging.getLogger(__name__)

VISION_RULES: dict[str, str] = {
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.patch_embed.proj": "vision_model.embeddings.patch_embedding",
    "visual_encoder.blocks.{i}.norm1": "vision_model.encoder.layers.{i}.layer_norm1",
    "visual_encoder.blocks.{i}.attn.qkv": "vision_model.encoder.layers.{i}.self_attn.qkv",
    "visual_encoder.blocks.{i}.attn.proj": "vision_model.encoder.layers.{i}.self_attn.projection",
    "visual_encoder.blocks.{i}.norm2": "vision_model.encoder.layers.{i}.layer_norm2",
    "visual_encoder.blocks.{i}.mlp.fc1": "vision_model.encoder.layers.{i}.mlp.fc1",
    "visual_encoder.blocks.{i}.mlp.fc2": "vision_model.encoder.layers.{i}.mlp.fc2",
    "visual_encoder.norm": "vision_model.post_layernorm",
}

# The ITC temperature is trained (clamped to [0.001, 0.5]) but transformers' conversion drops
# it; the retrieval classes score with plain cosine similarity. We keep the initial 0.07.
TEMP_INIT = 0.07

KEYMAP = KeyMap(
    format="transformers",
    renames={
        **VISION_RULES,
        **ENCODER_RULES,
        **DECODER_RULES,
        "vision_proj": "vision_proj",
        "text_proj": "text_proj",
        "itm_head": "itm_head",
    },
    drops={POSITION_IDS: "position_ids buffer (an arange)"},
    tied=TIED_DECODER,
    fills={"temp": TEMP_INIT},
)

# `architectures[0]` -> our layout (config.LAYOUTS). BlipModel (CLIP-style, 512-d bias-free
# projections that no released checkpoint trained) is deliberately not supported.
ARCHITECTURES: dict[str, str] = {
    "BlipForConditionalGeneration": "caption",
    "BlipForQuestionAnswering": "vqa",
    "BlipForImageTextRetrieval": "retrieval",
}

# transformers 5.x class defaults, used for fields a config.json leaves out (that is what
# transformers itself does with the same file).
TEXT_DEFAULTS: dict[str, Any] = dict(
    vocab_size=30524,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=8,
    intermediate_size=3072,
    max_position_embeddings=512,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    label_smoothing=0.0,
)
VISION_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    image_size=384,
    patch_size=16,
    layer_norm_eps=1e-5,
    hidden_act="gelu",
)
ORIGINAL_LABEL_SMOOTHING = 0.1  # models/med.py BertLMHeadModel


def _square(value: Any, field: str, source: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"{source}: vision_config.{field} {value} is not square")
        value = value[0]
    if not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{source}: vision_config.{field} must be a positive integer, got {value!r}")
    return value


def _layout_from_keys(keys: set[str]) -> str:
    if "itm_head.weight" in keys:
        return "retrieval"
    if any(k.startswith("text_encoder.") for k in keys):
        return "vqa"
    return "caption"


def infer_config(config: Mapping[str, Any], source: str = "config.json", keys: set[str] | None = None) -> BlipConfig:
    """BlipConfig from a transformers BLIP `config.json` dict.

    The layout comes from `architectures` (or, when a file lacks it, from the weight names in
    `keys`). Label smoothing: transformers >= 4.38 writes `label_smoothing: 0.0` whether or
    not anyone chose it, and the hub files predate the field, so 0.0 is read as "unset" and
    becomes the original's 0.1 (the value the weights were trained with and the one VQA
    answer ranking uses); a non-zero value in the file is kept.
    """
    if config.get("model_type", "blip") != "blip":
        raise CheckpointError(f"{source}: model_type {config.get('model_type')!r} is not 'blip'")
    archs = config.get("architectures") or []
    if archs:
        layout = ARCHITECTURES.get(archs[0])
        if layout is None:
            raise CheckpointError(
                f"{source}: architecture {archs[0]!r} is not supported; expected one of {sorted(ARCHITECTURES)}"
            )
    elif keys is not None:
        layout = _layout_from_keys(keys)
        log.warning("%s: no `architectures`; layout %r inferred from the weight names", source, layout)
    else:
        raise CheckpointError(f"{source}: no `architectures` entry to choose caption / VQA / retrieval")
    t = {**TEXT_DEFAULTS, **(config.get("text_config") or {})}
    v = {**VISION_DEFAULTS, **(config.get("vision_config") or {})}
    if "num_attention_heads" not in (config.get("text_config") or {}):
        log.warning(
            "%s: text_config has no num_attention_heads; using transformers' default %d "
            "(released BLIP models have 12: check the file)",
            source,
            TEXT_DEFAULTS["num_attention_heads"],
        )
    for part, d in (("text_config", t), ("vision_config", v)):
        if d["hidden_act"] != "gelu":
            raise CheckpointError(
                f"{source}: {part}.hidden_act {d['hidden_act']!r} is not supported (only exact 'gelu')"
            )
    smoothing = float(t["label_smoothing"]) or float(config.get("label_smoothing") or 0.0)
    try:
        vision = VisionConfig(
            width=int(v["hidden_size"]),
            depth=int(v["num_hidden_layers"]),
            heads=int(v["num_attention_heads"]),
            mlp_dim=int(v["intermediate_size"]),
            patch_size=_square(v["patch_size"], "patch_size", source),
            image_size=_square(v["image_size"], "image_size", source),
            layer_norm_eps=float(v["layer_norm_eps"]),
        )
        text = TextConfig(
            vocab_size=int(t["vocab_size"]),
            width=int(t["hidden_size"]),
            depth=int(t["num_hidden_layers"]),
            heads=int(t["num_attention_heads"]),
            mlp_dim=int(t["intermediate_size"]),
            max_positions=int(t["max_position_embeddings"]),
            layer_norm_eps=float(t["layer_norm_eps"]),
            dropout=float(t["hidden_dropout_prob"]),
            pad_token_id=int(t["pad_token_id"] if t["pad_token_id"] is not None else 0),
        )
        cfg = BlipConfig(
            vision=vision,
            text=text,
            embed_dim=int(config.get("image_text_hidden_size", 256)),
            label_smoothing=smoothing or ORIGINAL_LABEL_SMOOTHING,
            **LAYOUTS[layout],
        )
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: unusable BLIP config: {e}") from e
    if layout == "vqa" and vision.width != text.width:
        raise CheckpointError(
            f"{source}: transformers' VQA decoder cross-attends at the vision width {vision.width}, "
            f"but question states have the text width {text.width}"
        )
    return cfg


def architecture(cfg: BlipConfig) -> str:
    """The transformers class for a model's layout; pre-training layouts have none."""
    for arch, layout in ARCHITECTURES.items():
        flags = {"share_encoder_decoder": False, "decoder_over_text": False, **LAYOUTS[layout]}
        if all(getattr(cfg, k) == want for k, want in flags.items()):
            if layout == "vqa" and cfg.vision.width != cfg.text.width:
                break
            return arch
    raise ValueError(
        f"transformers has no class for the layout {layout_flags(cfg)}: only caption, VQA (vision width = "
        "text width) and retrieval models can be exported; export the captioning or the retrieval model it "
        "holds (`openblip convert --task caption|retrieval`), or save it in the openblip format"
    )


def layout_flags(cfg: BlipConfig) -> str:
    return (
        f"text_encoder={cfg.text_encoder}, text_decoder={cfg.text_decoder}, heads={cfg.heads}, "
        f"share_encoder_decoder={cfg.share_encoder_decoder}, decoder_over_text={cfg.decoder_over_text}, "
        f"vision width {cfg.vision.width}, text width {cfg.text.width}"
    )


def to_hf_config(cfg: BlipConfig) -> dict[str, Any]:
    """A config.json that transformers' BlipConfig reads back into this architecture."""
    t, v = cfg.text, cfg.vision
    return {
        "architectures": [architecture(cfg)],
        "model_type": "blip",
        "image_text_hidden_size": cfg.embed_dim,
        "label_smoothing": cfg.label_smoothing,
        "projection_dim": 512,
        "logit_scale_init_value": 2.6592,
        "tie_word_embeddings": True,
        "text_config": {
            "model_type": "blip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.width,
            "encoder_hidden_size": v.width,
            "num_hidden_layers": t.depth,
            "num_attention_heads": t.heads,
            "intermediate_size": t.mlp_dim,
            "max_position_embeddings": t.max_positions,
            "layer_norm_eps": t.layer_norm_eps,
            "hidden_act": "gelu",
            "hidden_dropout_prob": t.dropout,
            "attention_probs_dropout_prob": t.dropout,
            "pad_token_id": t.pad_token_id,
            "bos_token_id": 30522,
            "sep_token_id": 102,
            "label_smoothing": cfg.label_smoothing,
            "tie_word_embeddings": True,
        },
        "vision_config": {
            "model_type": "blip_vision_model",
            "hidden_size": v.width,
            "num_hidden_layers": v.depth,
            "num_attention_heads": v.heads,
            "intermediate_size": v.mlp_dim,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": "gelu",
        },
    }


# BICUBIC in PIL.Image.Resampling (transformers' image processors take PIL's codes).
PIL_BICUBIC = 3


def processor_files(cfg: BlipConfig, mean: Sequence[float], std: Sequence[float]) -> dict[str, dict[str, Any]]:
    """preprocessor_config.json (BlipImageProcessor) and processor_config.json (BlipProcessor),
    so that AutoProcessor.from_pretrained loads the export: BLIP's eval transform, a bicubic
    resize to the model's square size (no crop), then rescale by 1/255 and normalise, as
    image.preprocess does (and the hub's own Salesforce/blip-* files say)."""
    size = cfg.vision.image_size
    image = {
        "image_processor_type": "BlipImageProcessor",
        "processor_class": "BlipProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": PIL_BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(mean),
        "image_std": list(std),
    }
    return {"preprocessor_config.json": image, "processor_config.json": {"processor_class": "BlipProcessor"}}


def to_hf_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our canonical state dict -> transformers names, without the tied LM-head copies (as
    transformers 5 writes them) and without `temp` (transformers has no ITC temperature)."""
    return {KEYMAP.theirs(k): v for k, v in state.items() if k not in KEYMAP.fills}


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config ({e})") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The weights of a transformers directory: safetensors preferred, pytorch_model.bin
    (torch.load with weights_only=True) otherwise; sharded indexes are followed."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{path}: unreadable shard index ({e})") from e
            files = sorted(set(weight_map.values()))
        else:
            files = [name]
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(_read_file(directory / file))
        return state
    raise CheckpointError(f"{directory}: no weights file (looked for {', '.join(WEIGHT_FILES)})")


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError on corrupt files
            raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from e
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict")
    return obj
