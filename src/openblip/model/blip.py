"""The composed BLIP model: a ViT, the text transformer in its three uses, and the ITC/ITM heads.

Which parts exist follows BlipConfig (the released checkpoints hold different subsets). The
methods are the named stages of the data flow; tasks and training compose them.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from openblip.backends import cpu
from openblip.config import BlipConfig
from openblip.model.cache import CrossKV
from openblip.model.text import TextDecoder, TextTransformer
from openblip.model.vision import VisionTransformer

log = logging.getLogger(__name__)

# Special token ids of BLIP's tokenizer (bert-base-uncased + two added tokens).
DEC_TOKEN_ID = 30522  # [DEC], bos of the decoder
BERT_INIT_STD = 0.02  # BERT's initializer_range: the normal std of a fresh text side
ENC_TOKEN_ID = 30523  # [ENC], first token of the image-grounded encoder
SEP_TOKEN_ID = 102  # [SEP], eos
PAD_TOKEN_ID = 0


def with_first_token(ids: torch.Tensor, token: int) -> torch.Tensor:
    """Copy of ids (B, L) with position 0 replaced: [CLS] -> [ENC] or [DEC] as the original does."""
    ids = ids.clone()
    ids[:, 0] = token
    return ids


class Blip(nn.Module):
    cpu_kernels: cpu.CpuKernels = cpu.OFF  # torch's ops until a choice is made (use_cpu_kernels)

    def __init__(self, cfg: BlipConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = VisionTransformer(cfg.vision)
        self.text_encoder: TextTransformer | None = None
        self.text_decoder: TextDecoder | None = None
        self.vision_proj: nn.Linear | None = None
        self.text_proj: nn.Linear | None = None
        self.itm_head: nn.Linear | None = None
        self.temp: nn.Parameter | None = None
        if cfg.text_encoder:
            self.text_encoder = TextTransformer(cfg.text, causal=False, context_width=cfg.vision.width)
        if cfg.text_decoder:
            share = self.text_encoder if cfg.share_encoder_decoder else None
            self.text_decoder = TextDecoder(cfg.text, context_width=cfg.decoder_context_width, share_with=share)
        if cfg.heads:
            self.vision_proj = nn.Linear(cfg.vision.width, cfg.embed_dim)
            self.text_proj = nn.Linear(cfg.text.width, cfg.embed_dim)
            self.itm_head = nn.Linear(cfg.text.width, 2)
            self.temp = nn.Parameter(torch.tensor(0.07))
        self.init_text_weights()

    def init_text_weights(self, std: float = BERT_INIT_STD) -> None:
        """BERT init (normal `std`, BERT's initializer_range by default; LayerNorm 1/0); the
        ViT initialises itself."""
        for name, m in self.named_modules():
            if name.startswith("visual_encoder"):
                continue
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ---- parts, with clear errors when a checkpoint lacks them -------------------------------
    def _encoder(self) -> TextTransformer:
        if self.text_encoder is None:
            raise ValueError("this model has no text encoder (a captioning checkpoint?)")
        return self.text_encoder

    def _decoder(self) -> TextDecoder:
        if self.text_decoder is None:
            raise ValueError("this model has no text decoder (a retrieval/ITM checkpoint?)")
        return self.text_decoder

    def _heads(self) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        if self.vision_proj is None or self.text_proj is None or self.itm_head is None:
            raise ValueError("this model has no ITC/ITM heads (use a retrieval or pre-trained checkpoint)")
        return self.vision_proj, self.text_proj, self.itm_head

    @property
    def dtype(self) -> torch.dtype:
        return self.visual_encoder.cls_token.dtype

    @property
    def device(self) -> torch.device:
        return self.visual_encoder.cls_token.device

    def use_cpu_kernels(self, setting: str | None = "auto") -> cpu.CpuKernels:
        """Choose, once, which of our CPU kernels this model's fp32 CPU inference takes:
        "auto" (what was measured fastest on this CPU kind), "on" (all; KernelsUnavailable
        saying why where they cannot run), "off" (torch's ops); None reads $OPENBLIP_CPU_KERNEL.
        Resolved for the model's current device and dtype (choose again after moving it);
        recorded on every module that has kernels, logged at INFO and shown in the repr.
        Training, no_grad passes, autocast and other dtypes run torch's ops whatever the choice."""
        return self.set_cpu_kernels(cpu.choose(setting, self.device, self.dtype))

    def set_cpu_kernels(self, kernels: cpu.CpuKernels) -> cpu.CpuKernels:
        """Record an already resolved choice (use_cpu_kernels resolves one) on every module."""
        for module in self.modules():  # self, and every module with a kernel path (a class attribute)
            if hasattr(module, "cpu_kernels"):
                module.cpu_kernels = kernels  # type: ignore[assignment]  # a plain attribute, not a tensor
        log.info("CPU kernels: %s", kernels)
        return kernels

    def extra_repr(self) -> str:
        return f"cpu_kernels={self.cpu_kernels}"

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.visual_encoder.grad_checkpointing = enabled
        if self.text_encoder is not None:
            self.text_encoder.grad_checkpointing = enabled
        if self.text_decoder is not None:
            self.text_decoder.transformer.grad_checkpointing = enabled

    # ---- stages -------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S) -> image tokens (B, 1+N, Dv)."""
        return self.visual_encoder(pixels)

    def image_embed(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """ITC image feature: normalize(vision_proj(CLS)) (B, E)."""
        vision_proj, _, _ = self._heads()
        return F.normalize(vision_proj(image_tokens[:, 0]), dim=-1)

    def text_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unimodal text encoder ([CLS] first, no cross-attention): (B, L, Dt)."""
        return self._encoder()(ids, mask)

    def text_embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ITC text feature: normalize(text_proj(CLS of the unimodal encoder)) (B, E)."""
        _, text_proj, _ = self._heads()
        return F.normalize(text_proj(self.text_hidden(ids, mask)[:, 0]), dim=-1)

    def grounded_hidden(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        image_tokens: torch.Tensor | CrossKV,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image-grounded encoder (B, L, Dt). The first token becomes [ENC], as the original's
        ITM, retrieval and VQA paths do (transformers keeps [CLS]; see docs/parity.md)."""
        return self._encoder()(with_first_token(ids, ENC_TOKEN_ID), mask, image_tokens, image_mask)

    def itm_logits(self, ids: torch.Tensor, mask: torch.Tensor, image_tokens: torch.Tensor | CrossKV) -> torch.Tensor:
        """ITM logits (B, 2), index 1 = match. Texts are grouped over images as in TextTransformer."""
        _, _, itm_head = self._heads()
        return itm_head(self.grounded_hidden(ids, mask, image_tokens)[:, 0])

    def decoder_logits(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor | CrossKV,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoder logits (B, L, V) over full sequences; the first token becomes [DEC]."""
        return self._decoder()(with_first_token(ids, DEC_TOKEN_ID), mask, context, context_mask)

    def itc_similarity(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Cosine similarities (Bi, Bt), no temperature (as the original retrieval evaluation)."""
        return image_embeds @ text_embeds.t()
