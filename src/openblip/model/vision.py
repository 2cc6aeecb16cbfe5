"""ViT image encoder (Dosovitskiy et al. 2021) as BLIP uses it: pre-norm blocks, CLS token,
learned absolute positions, all tokens returned. Parameter names follow timm / the original
`models/vit.py` (blocks.N.attn.qkv ...), which is also the Salesforce checkpoint layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from openblip.backends import cpu
from openblip.config import VisionConfig
from openblip.model.layers import Linear, Mlp, drop_path, fused_self_attention


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1+g*g, D) -> (1, 1+grid*grid, D): bicubic over the patch grid, CLS position kept.

    Same rule as the original `interpolate_pos_embed` (align_corners=False) and transformers'
    `interpolate_pos_encoding`; used when a checkpoint was trained at another image size.
    """
    n_old = pos_embed.shape[1] - 1
    old = math.isqrt(n_old)
    if old * old != n_old:
        raise ValueError(f"position embedding with {n_old} patch positions is not a square grid")
    if old == grid:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    d = pos_embed.shape[-1]
    patch_pos = patch_pos.reshape(1, old, old, d).permute(0, 3, 1, 2).float()
    patch_pos = F.interpolate(patch_pos, size=(grid, grid), mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)  # (B, N, D)


class VisionAttention(nn.Module):
    cpu_kernels: cpu.CpuKernels = cpu.OFF  # the model's choice (Blip.use_cpu_kernels)

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = Linear(width, 3 * width)  # [q; k; v] stacked on the output dim
        self.proj = Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(fused_self_attention(self.qkv(x), self.heads, self.cpu_kernels))


class Block(nn.Module):
    def __init__(self, cfg: VisionConfig, drop_path_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = VisionAttention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_dim)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class VisionTransformer(nn.Module):
    """pixels (B, 3, S, S) -> image tokens (B, 1 + (S/patch)^2, width), final LayerNorm applied."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid**2, cfg.width))
        # linear stochastic-depth rule (timm); plain Python so the module can be built on 'meta'
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-1] != pixels.shape[-2] or pixels.shape[-1] % self.cfg.patch_size:
            raise ValueError(
                f"images must be square with a side divisible by {self.cfg.patch_size}, got {tuple(pixels.shape[-2:])}"
            )
        x = self.patch_embed(pixels.to(self.cls_token.dtype))  # (B, N, D)
        pos = resize_pos_embed(self.pos_embed, pixels.shape[-1] // self.cfg.patch_size)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)
