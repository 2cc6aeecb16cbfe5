"""Shared helpers for the parity tests: random-weight transformers BLIP models, the original
Salesforce key layout built from their state dicts, and fixed inputs.

The Salesforce renaming here is written independently of openblip.convert (it inverts the
substitutions of transformers' `convert_blip_original_pytorch_to_hf.py`), so a mistake in our
key maps cannot cancel out against the same mistake in the fixture.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import BlipConfig as HFBlipConfig

DEC, ENC, CLS, SEP = 30522, 30523, 101, 102
TOL = 1e-4


def hf_config(
    *,
    width: int = 128,
    depth: int = 2,
    image_size: int = 64,
    vision_eps: float = 1e-5,
    base: bool = False,
) -> HFBlipConfig:
    """A transformers BlipConfig with explicit text heads (64-wide, as every released model).
    base=True: the released base sizes (768 wide, 12 layers, 12 heads, 3072 MLP)."""
    if base:
        width, depth = 768, 12
    heads = width // 64
    common = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * width)
    return HFBlipConfig(
        text_config=dict(**common, max_position_embeddings=512 if base else 64),
        vision_config=dict(**common, image_size=image_size, patch_size=16, layer_norm_eps=vision_eps),
    )


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (transformers' own init leaves biases 0, LayerNorms 1 and the
    vision weights at std 1e-10, which would hide mapping mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if re.search(r"(norm|LayerNorm)[^.]*\.weight$", name):
                p.normal_(1.0, 0.1, generator=g)
            else:
                p.normal_(0.0, 0.05, generator=g)
    return model.eval()


def make_hf(cls: type, cfg: HFBlipConfig, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize(cls(cfg), seed)


# transformers' vision names -> the original timm/ViT names (inverse of the conversion script).
_VISION = (
    ("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
    ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
    ("vision_model.embeddings.patch_embedding", "visual_encoder.patch_embed.proj"),
    ("vision_model.post_layernorm", "visual_encoder.norm"),
    ("vision_model.encoder.layers.", "visual_encoder.blocks."),
    (".self_attn.projection", ".attn.proj"),
    (".self_attn.qkv", ".attn.qkv"),
    (".layer_norm1", ".norm1"),
    (".layer_norm2", ".norm2"),
)


def original_name(hf_key: str) -> str:
    if not hf_key.startswith("vision_model."):
        return hf_key  # med.py and transformers share the text names
    for old, new in _VISION:
        hf_key = hf_key.replace(old, new)
    return hf_key


def salesforce_state(
    hf_state: dict[str, torch.Tensor],
    *,
    momentum: bool = False,
    retrieval_queues: bool = False,
    pretrain_queues: bool = False,
    temp: bool = False,
    copy: bool = True,
) -> dict[str, torch.Tensor]:
    """The state dict an original checkpoint would hold for these weights: original names,
    `position_ids` buffers, the LM head's duplicated tied tensors, and optionally the momentum
    encoders, ITC queues and temperature of BLIP_Retrieval / BLIP_Pretrain. copy=False shares
    the tensors with `hf_state` (saves memory at the base size)."""
    sd = {original_name(k): v.clone() if copy else v for k, v in hf_state.items()}
    for prefix in ("text_encoder", "text_decoder.bert"):
        word = f"{prefix}.embeddings.word_embeddings.weight"
        if word in sd:
            positions = sd[f"{prefix}.embeddings.position_embeddings.weight"].shape[0]
            sd[f"{prefix}.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    if "text_decoder.cls.predictions.bias" in sd:
        sd["text_decoder.cls.predictions.decoder.weight"] = sd["text_decoder.bert.embeddings.word_embeddings.weight"]
        sd["text_decoder.cls.predictions.decoder.bias"] = sd["text_decoder.cls.predictions.bias"]
    if momentum:
        for k in list(sd):
            for part in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
                if k.startswith(part + "."):
                    sd[part + "_m" + k[len(part) :]] = sd[k] + 0.01
    embed = sd["vision_proj.weight"].shape[0] if "vision_proj.weight" in sd else 256
    if retrieval_queues or pretrain_queues:
        sd["image_queue"] = torch.nn.functional.normalize(torch.randn(embed, 32), dim=0)
        sd["text_queue"] = torch.nn.functional.normalize(torch.randn(embed, 32), dim=0)
    if retrieval_queues:
        sd["idx_queue"] = torch.full((1, 32), -100)
        sd["ptr_queue"] = torch.zeros(1, dtype=torch.long)
    if pretrain_queues:
        sd["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    if temp:
        sd["temp"] = torch.tensor(0.05)
    return sd


def write_pth(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model": state}, path)
    return path


class Inputs(NamedTuple):
    pixels: torch.Tensor  # (B, 3, S, S)
    cls_ids: torch.Tensor  # [CLS] first (unimodal text encoder)
    enc_ids: torch.Tensor  # [ENC] first (image-grounded encoder, as our grounded_hidden substitutes)
    dec_ids: torch.Tensor  # [DEC] first (decoder)
    mask: torch.Tensor  # (B, L), second row padded


def inputs(image_size: int, seed: int = 0, batch: int = 2) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, image_size, image_size, generator=g)
    words = torch.randint(1000, 29000, (batch, 6), generator=g)
    ids = torch.cat([torch.full((batch, 1), CLS), words, torch.full((batch, 1), SEP)], dim=1)
    mask = torch.ones_like(ids)
    if batch > 1:  # a shorter second text: [CLS] w w w [SEP] pad pad pad
        ids[1, 4] = SEP
        ids[1, 5:] = 0
        mask[1, 5:] = 0
    first = lambda t: torch.cat([torch.full((batch, 1), t), ids[:, 1:]], dim=1)  # noqa: E731
    return Inputs(pixels, ids, first(ENC), first(DEC), mask)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> float:
    """Max |delta|; fails beyond TOL (absolute, or relative for large values)."""
    assert ours.shape == theirs.shape, f"{what}: shapes {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    delta = (ours - theirs).abs().max().item()
    bound = TOL * max(1.0, theirs.abs().max().item())
    assert delta <= bound, f"{what}: max |delta| {delta:.3g} > {bound:.3g}"
    print(f"{what}: max |delta| {delta:.3g} (max |value| {theirs.abs().max().item():.3g})")
    return delta


def check_kernels(ours: torch.nn.Module) -> None:
    """The model took the setting this run asks for (conftest: on, then off), and says so."""
    want = os.environ.get("OPENBLIP_CPU_KERNEL")
    got = ours.cpu_kernels
    assert got.enabled == (want == "on"), f"OPENBLIP_CPU_KERNEL={want} but the model took {got}"
    print(f"CPU kernels {got}")


def hf_vision(hf: torch.nn.Module, pixels: torch.Tensor, interpolate: bool = False) -> torch.Tensor:
    return hf.vision_model(pixels, interpolate_pos_encoding=interpolate).last_hidden_state


@torch.inference_mode()  # inference: where the model's CPU-kernel choice applies
def compare_caption(hf: torch.nn.Module, ours: torch.nn.Module, x: Inputs, tag: str) -> dict[str, float]:
    """Vision tokens and decoder logits ([DEC]-first ids, padded second row)."""
    check_kernels(ours)
    image = ours.encode_image(x.pixels)
    theirs = hf(pixel_values=x.pixels, input_ids=x.dec_ids, attention_mask=x.mask)
    out = {f"{tag} vision": assert_close(image, theirs.last_hidden_state, f"{tag} vision")}
    out[f"{tag} decoder logits"] = assert_close(
        ours.decoder_logits(x.cls_ids, x.mask, image), theirs.logits, f"{tag} decoder logits"
    )
    return out


@torch.inference_mode()  # inference: where the model's CPU-kernel choice applies
def compare_retrieval(hf: torch.nn.Module, ours: torch.nn.Module, x: Inputs, tag: str) -> dict[str, float]:
    """ITC cosine similarities (B_img, B_txt) and ITM logits (B, 2)."""
    check_kernels(ours)
    image = ours.encode_image(x.pixels)
    sim = ours.itc_similarity(ours.image_embed(image), ours.text_embed(x.cls_ids, x.mask))
    their_sim = hf(input_ids=x.cls_ids, pixel_values=x.pixels, attention_mask=x.mask, use_itm_head=False).itm_score
    out = {f"{tag} ITC": assert_close(sim, their_sim, f"{tag} ITC")}
    their_itm = hf(input_ids=x.enc_ids, pixel_values=x.pixels, attention_mask=x.mask, use_itm_head=True)
    out[f"{tag} vision"] = assert_close(image, their_itm.last_hidden_state, f"{tag} vision")
    out[f"{tag} ITM"] = assert_close(ours.itm_logits(x.cls_ids, x.mask, image), their_itm.itm_score, f"{tag} ITM")
    return out


@torch.inference_mode()  # inference: where the model's CPU-kernel choice applies
def compare_vqa(hf: torch.nn.Module, ours: torch.nn.Module, x: Inputs, tag: str) -> dict[str, float]:
    """Question-encoder states ([ENC] first, over the image) and answer-decoder logits over them.

    The answer decoder attends to every question position (all-ones cross-attention mask, as
    the original's and transformers' VQA generate): transformers 5.24 drops the cross-attention
    mask inside BlipTextAttention (see test_hf_parity.test_transformers_ignores_cross_attention_mask),
    so a padded question mask cannot be compared with it."""
    check_kernels(ours)
    image = ours.encode_image(x.pixels)
    their_image = hf_vision(hf, x.pixels)
    out = {f"{tag} vision": assert_close(image, their_image, f"{tag} vision")}
    question = ours.grounded_hidden(x.cls_ids, x.mask, image)
    their_q = hf.text_encoder(
        input_ids=x.enc_ids, attention_mask=x.mask, encoder_hidden_states=their_image
    ).last_hidden_state
    out[f"{tag} question states"] = assert_close(question, their_q, f"{tag} question states")
    answers = x.dec_ids[:, :4]
    answer_mask = x.mask[:, :4]
    logits = ours.decoder_logits(answers, answer_mask, question)
    their_logits = hf.text_decoder(input_ids=answers, attention_mask=answer_mask, encoder_hidden_states=their_q).logits
    out[f"{tag} answer logits"] = assert_close(logits, their_logits, f"{tag} answer logits")
    return out
