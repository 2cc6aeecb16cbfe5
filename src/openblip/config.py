"""Typed, frozen model configurations and the named presets.

The defaults are the released BLIP-base values (salesforce/BLIP `configs/med_config.json`,
`models/vit.py`); every field that differs between the original and the transformers port is
read from the checkpoint's own config when one is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VisionConfig:
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    image_size: int = 384  # size the position embeddings are stored at; other sizes resize them
    layer_norm_eps: float = 1e-6  # the original ViT; transformers' configs say 1e-5
    drop_path: float = 0.0  # stochastic depth, linearly increasing over the blocks (timm rule)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 30524  # bert-base-uncased 30522 + [DEC] + [ENC]
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    max_positions: int = 512
    layer_norm_eps: float = 1e-12
    dropout: float = 0.0  # hidden and attention dropout; the original trained with 0.1
    pad_token_id: int = 0


@dataclass(frozen=True)
class BlipConfig:
    """Which parts a BLIP model has, and their sizes.

    The released checkpoints differ only in which components they hold:
    caption = vision + decoder; retrieval/ITM = vision + encoder + heads;
    VQA = vision + encoder + decoder cross-attending to question states (`decoder_over_text`);
    pretrain = everything, with the decoder sharing all but self-attention with the encoder.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    text_encoder: bool = True
    text_decoder: bool = True
    heads: bool = True  # vision_proj, text_proj, itm_head and the ITC temperature
    embed_dim: int = 256  # ITC projection width
    share_encoder_decoder: bool = False  # pretraining arrangement (paper section 3.2)
    decoder_over_text: bool = False  # VQA: the answer decoder cross-attends to question states
    label_smoothing: float = 0.1  # LM loss, as the original (transformers' default is 0.0)

    def __post_init__(self) -> None:
        if self.share_encoder_decoder and not (self.text_encoder and self.text_decoder):
            raise ValueError("share_encoder_decoder needs both a text encoder and a text decoder")
        if self.share_encoder_decoder and self.decoder_over_text:
            raise ValueError("a decoder over question states cannot share cross-attention with the encoder")
        if self.heads and not self.text_encoder:
            raise ValueError("ITC/ITM heads need the text encoder")
        if self.decoder_over_text and not (self.text_encoder and self.text_decoder):
            raise ValueError("decoder_over_text (VQA) needs both a text encoder and a text decoder")
        if self.vision.width % self.vision.heads or self.text.width % self.text.heads:
            raise ValueError("width must be divisible by heads")

    @property
    def decoder_context_width(self) -> int:
        return self.text.width if self.decoder_over_text else self.vision.width

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlipConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown BlipConfig fields: {sorted(unknown)}")
        vision = VisionConfig(**d.pop("vision", {}))
        text = TextConfig(**d.pop("text", {}))
        return cls(vision=vision, text=text, **d)

    def replace(self, **changes: Any) -> BlipConfig:
        return dataclasses.replace(self, **changes)


# Architectures by name. Task layouts (caption, vqa, ...) are chosen with BlipConfig's booleans.
VISION_PRESETS: dict[str, VisionConfig] = {
    "base": VisionConfig(),
    "large": VisionConfig(width=1024, depth=24, heads=16, mlp_dim=4096),
    "tiny": VisionConfig(width=64, depth=2, heads=2, mlp_dim=128, image_size=64),
}
TEXT_PRESETS: dict[str, TextConfig] = {
    "base": TextConfig(),
    "large": TextConfig(),  # BLIP-L keeps a BERT-base text side
    "tiny": TextConfig(width=64, depth=2, heads=2, mlp_dim=128, max_positions=64),
}

# Component layouts of the released checkpoints.
LAYOUTS: dict[str, dict[str, bool]] = {
    "pretrain": dict(text_encoder=True, text_decoder=True, heads=True, share_encoder_decoder=True),
    "caption": dict(text_encoder=False, text_decoder=True, heads=False),
    "retrieval": dict(text_encoder=True, text_decoder=False, heads=True),
    "vqa": dict(text_encoder=True, text_decoder=True, heads=False, decoder_over_text=True),
    "full": dict(text_encoder=True, text_decoder=True, heads=True),
}


def preset(arch: str = "base", layout: str = "full", **overrides: Any) -> BlipConfig:
    """`preset("base", "caption")`: a released architecture in a released component layout."""
    if arch not in VISION_PRESETS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(VISION_PRESETS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {sorted(LAYOUTS)}")
    kw: dict[str, Any] = {**LAYOUTS[layout], **overrides}
    return BlipConfig(vision=VISION_PRESETS[arch], text=TEXT_PRESETS[arch], **kw)
