"""Where in the image each word of a text is grounded: Grad-CAM on ITM cross-attention.

The semantics are LAVIS's `compute_gradcam` for BLIP ITM (salesforce/LAVIS
lavis/models/blip_models/blip_image_text_matching.py), the only widely used definition:

1. run the image-grounded encoder on (image, [ENC] text) and keep the attention probabilities
   P (B, H, L, 1+N) of one cross-attention layer;
2. back-propagate the ITM *match logit* (logits[:, 1], not the probability) to P;
3. cam = relu(dlogit/dP) * P, averaged over the heads, per text token; the image's [CLS]
   column is dropped, leaving the N = grid x grid patches; padding tokens are zeroed;
4. the whole-text map is the mean over the text's tokens ([ENC] and [SEP] excluded).

Layer: LAVIS's `compute_gradcam` defaults to block_num=6 (0-based) and its text-localization
demo (the Streamlit app's "Layer number" 7, 1-based, minus one) uses the same: the 7th of the 12
cross-attention layers of BLIP-base and -large, the middle of the stack (its example notebook
passes block_num=7). LAVIS states no reason; the one we can give is structural: the text
tokens' probabilities reach the [ENC] state that the ITM head reads only through the
self-attention of the layers after them, so the last layer's maps are zero
(tests/tasks/test_explain.py) and late layers see little of that mixing, while the first
layers' text states have read little of the image yet. On the small trained model of
tests/tasks/test_explain_planted.py the colour word's map puts 93% of its mass on a planted
object at the middle of 3 layers, 0.07% at the first. We default to the middle layer of any
depth (depth // 2, never the last: check_layer).

Subword pieces of one written word are merged into that word by their mean (a word's map on
the scale of a token's).

Nothing here changes how inference runs: the ViT runs as in every task (no_grad); the text
side runs layer by layer from the encoder's own modules with autograd on (so plain torch ops,
never the CPU inference kernels), and the chosen layer's cross-attention is computed here from
that module's weights with its probabilities kept.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from openblip.image import preprocess
from openblip.model.blip import ENC_TOKEN_ID, Blip, with_first_token
from openblip.model.layers import merge_heads, padding_bias, split_heads
from openblip.model.text import TextLayer
from openblip.tasks.inputs import (
    RETRIEVAL_MAX_TOKENS,
    check_text,
    clean_texts,
    encode_images,
    require_heads,
    token_limit,
    tokenize,
)
from openblip.text_cleaning import pre_caption
from openblip.tokenizer import Tokenizer

_ROWS = 64  # (image, text) pairs through the text side at once: the graph holds them all
_PUNCTUATION = string.punctuation  # shown words drop it around them ("dog," -> "dog"); maps keep its pieces
# A written word: a run of non-whitespace, where the control characters that Python counts as
# whitespace but BERT's normaliser deletes (so that "a\x0bb" is one piece "ab") join, not split.
_WORD = re.compile(r"(?:\S|[\x0b\x0c\x1c-\x1f\x85])+")


def default_layer(depth: int) -> int:
    """The middle cross-attention layer (0-based) of a `depth`-layer encoder: 6 of 12, as LAVIS
    for BLIP-base/-large, and never the last (see check_layer)."""
    return min(depth // 2, depth - 2)


def check_request(model: Blip, texts: Sequence[str], layer: int | None) -> int:
    """What explaining needs before any image is read: an ITM-capable model, texts with
    something left after cleaning (ValueError naming the first that has not), a layer that can
    be explained (check_layer). Returns the layer."""
    require_heads(model, "explaining image-text matching")
    clean_texts(texts, True)  # type checks
    if not texts:
        raise ValueError("no texts to explain")
    for i, t in enumerate(texts):
        check_text(t, i)
    return check_layer(model, layer)


def check_layer(model: Blip, layer: int | None) -> int:
    """`layer` (0-based; None: default_layer), refused unless 0 <= layer <= depth - 2. The last
    layer's maps are zero by construction: only feed-forward, token by token, follows its
    cross-attention, so no text token but [ENC] reaches the state the ITM head reads (LAVIS's
    demo likewise offers layers 1-11 of 12, 1-based)."""
    depth = model.cfg.text.depth
    chosen = default_layer(depth) if layer is None else layer
    if not 0 <= chosen <= depth - 2:
        raise ValueError(
            f"layer {chosen} cannot be explained: the text encoder has {depth} layers, and only 0..{depth - 2} "
            "pass their text tokens on to the ITM head (the last one's maps are zero)"
        )
    return chosen


# ---- Grad-CAM over token maps ---------------------------------------------------------------
@dataclass(frozen=True)
class TokenCams:
    itm_score: torch.Tensor  # (R,) probability of match (softmax of the ITM logits)
    cams: torch.Tensor  # (R, L, gh, gw) per text token, float32 on the CPU; padding rows are 0


def token_cams(model: Blip, ids: torch.Tensor, mask: torch.Tensor, image_tokens: torch.Tensor, layer: int) -> TokenCams:
    """Grad-CAM of every text ids/mask (R, L) against the image tokens (Bc, 1+N, Dv) it is
    grouped with (rows r*G..r*G+G-1 read image r, R = Bc * G, as TextTransformer groups them)."""
    require_heads(model, "explaining image-text matching")
    if model.training:
        raise ValueError("explain needs the model in eval mode (dropout would make the maps random): model.eval()")
    encoder, itm_head = model.text_encoder, model.itm_head
    assert encoder is not None and itm_head is not None
    n = image_tokens.shape[1] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise ValueError(f"{n} image patches do not form a square grid")
    blocks = encoder.blocks
    with torch.no_grad():
        kv = encoder.cross_kv(image_tokens)  # every layer's (Bc, H, 1+N, hd), no graph
    with torch.enable_grad():
        x = encoder.embeddings(with_first_token(ids, ENC_TOKEN_ID))
        bias = padding_bias(mask, x.dtype)
        for i in range(layer):
            x = _layer(blocks[i], x, bias, (kv.k[i], kv.v[i]))
        chosen = blocks[layer]
        x = chosen.self_attn(x, bias)
        x, probs = _kept_cross_attention(chosen, x, kv.k[layer], kv.v[layer])
        x = chosen.ffn(x)
        for i in range(layer + 1, len(blocks)):
            x = _layer(blocks[i], x, bias, (kv.k[i], kv.v[i]))
        logits = itm_head(x[:, 0]).float()  # (R, 2)
        (grad,) = torch.autograd.grad(logits[:, 1].sum(), probs)
    cam = (grad.float().clamp(min=0) * probs.detach().float()).mean(1)  # (R, L, 1+N), heads averaged
    cam = cam[..., 1:] * mask[:, :, None].to(cam.dtype)  # image [CLS] dropped, padding zeroed
    return TokenCams(
        logits.detach().softmax(-1)[:, 1].cpu(),
        cam.reshape(cam.shape[0], cam.shape[1], grid, grid).cpu(),
    )


def _layer(
    block: TextLayer, x: torch.Tensor, bias: torch.Tensor | None, kv: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    assert block.cross_attn is not None
    return block.ffn(block.cross_attn(block.self_attn(x, bias), None, kv=kv))


def _kept_cross_attention(
    block: TextLayer, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's cross-attention (same function as ResidualAttention.forward with kv=(k, v))
    written out so that its probabilities (R, H, L, 1+N) are a leaf that autograd reaches.
    x (R, L, D); k, v (Bc, H, 1+N, hd) with R = Bc * G."""
    attn = block.cross_attn
    assert attn is not None
    q = split_heads(attn.query(x), attn.heads)  # (R, H, L, hd)
    r, h, length, hd = q.shape
    q = q.view(k.shape[0], r // k.shape[0], h, length, hd)  # (Bc, G, H, L, hd)
    with torch.no_grad():
        scores = torch.einsum("bghld,bhnd->bghln", q, k) * hd**-0.5
        probs = scores.softmax(-1).reshape(r, h, length, -1)  # (R, H, L, 1+N)
    probs.requires_grad_(True)
    mixed = torch.einsum("bghln,bhnd->bghld", probs.view(k.shape[0], -1, h, length, probs.shape[-1]), v)
    y = attn.out(merge_heads(mixed.reshape(r, h, length, hd)))
    return attn.norm(x + y), probs


# ---- word pieces -> written words -------------------------------------------------------------
@dataclass(frozen=True)
class WordSpan:
    word: str  # as written in the text, without punctuation around it
    tokens: range  # its pieces' positions in the encoded text ([ENC] at 0)


def word_spans(tokenizer: Tokenizer, text: str, ids: Sequence[int]) -> list[WordSpan]:
    """The written words of `text` (whitespace-separated) that the model read, each with the
    positions of its word pieces in `ids` ([CLS/ENC] pieces [SEP], no padding: the encoding of
    pre_caption(text) truncated to the token limit).

    BLIP's cleaning (pre_caption) works character by character, and WordPiece never joins
    characters across whitespace, so the pieces of the whole text are those of its written
    words, one after another, cut where the text was truncated. A word with no pieces ("...")
    has no map and is left out; one cut by truncation keeps the pieces the model read."""
    written = _WORD.findall(text)
    if not written:
        return []
    enc = tokenizer.encode([pre_caption(w, max_words=len(w) + 1) for w in written])
    end = len(ids) - 1  # [SEP]
    position, spans = 1, []
    for word, row, count in zip(written, enc.ids.tolist(), (enc.mask.sum(1) - 2).tolist()):
        take = min(count, end - position)
        if take <= 0:
            if count == 0:
                continue
            break
        if list(ids[position : position + take]) != row[1 : 1 + take]:
            break
        spans.append(WordSpan(word.strip(_PUNCTUATION) or word, range(position, position + take)))
        position += take
    if position != end:
        raise ValueError(f"cannot align the word pieces of {text!r} with its words")
    return spans


# ---- explanations ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WordMap:
    word: str  # as written (see word_spans)
    map: np.ndarray  # (gh, gw) float32: the mean of its pieces' maps
    peak: tuple[int, int] | None  # (x, y) in the original image's pixels; None when the map is 0
    mass: float  # its share of the whole-text map's mass (the shares of a text's words sum to 1)


@dataclass(frozen=True, eq=False)
class Explanation:
    text: str  # as given
    itm_score: float  # probability of match, as `match` reports it
    map: np.ndarray  # (gh, gw) float32: whole-text map, the mean over the text's pieces
    words: tuple[WordMap, ...]
    layer: int  # the cross-attention layer (0-based)


def explain_images_texts(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
    texts: Sequence[str],
    *,
    layer: int | None = None,
    max_tokens: int = RETRIEVAL_MAX_TOKENS,
) -> list[list[Explanation]]:
    """The Grad-CAM maps of every image of pixels (B, 3, S, S), whose original sizes (width,
    height) are `sizes`, with every text: out[b][t]. Texts are cleaned and truncated as `match`
    does (pre_caption(text, 30), 35 tokens); one with nothing left is a ValueError naming it."""
    chosen = check_request(model, texts, layer)
    if len(sizes) != pixels.shape[0]:
        raise ValueError(f"{len(sizes)} sizes for {pixels.shape[0]} images")
    cleaned = [check_text(t, i) for i, t in enumerate(texts)]
    ids, mask = tokenize(tokenizer, cleaned, token_limit(model, max_tokens), model.device)
    lengths = mask.sum(1).tolist()
    spans = [word_spans(tokenizer, t, ids[j, : lengths[j]].tolist()) for j, t in enumerate(texts)]
    out: list[list[Explanation]] = []
    per = max(1, _ROWS // max(len(texts), 1))  # images per pass
    for lo in range(0, pixels.shape[0], per):
        with torch.no_grad():  # not inference_mode: autograd reads these tensors below
            tokens = encode_images(model, pixels[lo : lo + per])
        b, t = tokens.shape[0], len(texts)
        cams = token_cams(model, ids.repeat(b, 1), mask.repeat(b, 1), tokens, chosen)
        for i in range(b):
            out.append([])
            for j, text in enumerate(texts):
                r = i * t + j
                maps = cams.cams[r, : lengths[j]].numpy()
                explained = _explain(text, spans[j], maps, float(cams.itm_score[r]), sizes[lo + i], chosen)
                out[-1].append(explained)
    return out


def _explain(
    text: str, spans: list[WordSpan], maps: np.ndarray, score: float, size: tuple[int, int], layer: int
) -> Explanation:
    """maps (n, gh, gw): one per encoded token, [ENC] first and [SEP] last."""
    pieces = maps[1:-1]
    whole = pieces.mean(0) if len(pieces) else np.zeros(maps.shape[1:], np.float32)
    total = float(pieces.sum(dtype=np.float64))
    words = []
    for span in spans:
        own = maps[span.tokens.start : span.tokens.stop]
        word_map = own.mean(0)
        mass = float(own.sum(dtype=np.float64)) / total if total > 0 else 0.0
        words.append(WordMap(span.word, word_map, peak_pixel(word_map, size), mass))
    return Explanation(text, score, whole, tuple(words), layer)


def peak_pixel(heat: np.ndarray, size: tuple[int, int]) -> tuple[int, int] | None:
    """The centre of the map's hottest patch, in pixels (x, y) of an image of `size` (width,
    height): BLIP resizes the whole image to a square, so patch (i, j) covers rows i/gh..(i+1)/gh
    and columns j/gw..(j+1)/gw of it. None for a map of zeros (no positive evidence anywhere)."""
    if not heat.size or float(heat.max()) <= 0.0:
        return None
    i, j = np.unravel_index(int(heat.argmax()), heat.shape)
    gh, gw = heat.shape
    return int((j + 0.5) * size[0] / gw), int((i + 0.5) * size[1] / gh)


def explain_loaded(
    model: Blip, tokenizer: Tokenizer, images: Sequence[Image.Image], texts: Sequence[str], *, layer: int | None = None
) -> list[list[Explanation]]:
    """explain_images_texts for loaded RGB images (openblip.image.load_image), preprocessed at
    the model's input size."""
    pixels = preprocess(images, model.cfg.vision.image_size)
    return explain_images_texts(model, tokenizer, pixels, [im.size for im in images], texts, layer=layer)
