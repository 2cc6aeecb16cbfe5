"""Loading and saving BLIP weights: one entry point for every source, our own format, and
export to transformers.

    load_model(source)      a transformers directory, a Salesforce .pth, an openblip
                            directory, a shipped demo model name (openblip.demo_models),
                            a hub id or an http(s) URL -> LoadedModel
    save_pretrained(...)    the openblip format (convert/native.py)
    export_hf(...)          a directory transformers' Blip*.from_pretrained and
                            BlipProcessor / AutoProcessor.from_pretrained load
    extract(model, layout)  the captioning or retrieval model inside a pre-training one

Every load is strict (convert/keymap.py); the ViT position embeddings are resized when the
requested image size differs from the checkpoint's, the one adaptation.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from openblip.backends import cpu
from openblip.config import LAYOUTS, BlipConfig
from openblip.convert import fetch, hf, native, salesforce
from openblip.convert.keymap import CheckpointError, KeyMap, ModelKeys, match_shapes, to_ours
from openblip.demo_models import shipped_path
from openblip.files import make_shareable
from openblip.model.blip import DEC_TOKEN_ID, ENC_TOKEN_ID, Blip
from openblip.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "SourceFormat",
    "SourceInfo",
    "build_model",
    "export_hf",
    "extract",
    "layout_name",
    "load_model",
    "save_pretrained",
]


class SourceFormat(enum.Enum):
    OPENBLIP = "openblip"
    TRANSFORMERS = "transformers"
    SALESFORCE = "salesforce"


@dataclass(frozen=True)
class SourceInfo:
    format: SourceFormat
    source: str  # as given (path, hub id or URL)
    path: Path  # the local file or directory read
    notes: tuple[str, ...]  # what was dropped, filled or resized


@dataclass
class LoadedModel:
    model: Blip
    tokenizer: Tokenizer
    config: BlipConfig
    source: SourceInfo


def layout_name(cfg: BlipConfig) -> str | None:
    """The config.LAYOUTS name this config's component flags match, if any."""
    for name, flags in LAYOUTS.items():
        full = {"share_encoder_decoder": False, "decoder_over_text": False, **flags}
        if all(getattr(cfg, k) == v for k, v in full.items()):
            return name
    return None


def _skeleton(cfg: BlipConfig) -> Blip:
    """Blip(cfg) whose weights are about to be replaced: built on the meta device (no memory,
    no random init) where the constructors allow it."""
    try:
        with torch.device("meta"):
            return Blip(cfg)
    except NotImplementedError:  # a constructor that reads tensor values cannot run on meta
        return Blip(cfg)


def build_model(
    cfg: BlipConfig,
    state: dict[str, torch.Tensor],
    *,
    kmap: KeyMap | None = None,
    source: str = "checkpoint",
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[Blip, list[str]]:
    """A Blip for `cfg` holding `state`: foreign names through `kmap`, or our canonical names
    when kmap is None. Strict in keys and shapes; pos_embed is resized to cfg's image size.
    Returns (model in eval mode, notes)."""
    model = _skeleton(cfg)
    keys = ModelKeys.of(model)
    notes: list[str] = []
    if kmap is None:
        ours = match_shapes(state, keys, source, None, notes)
    else:
        ours, notes = to_ours(state, keys, kmap, source)
    full: dict[str, torch.Tensor] = {}
    for name, tensor in ours.items():
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        full[name] = tensor.to(device)
    for alias, canonical in keys.aliases.items():
        full[alias] = full[canonical]
    model.load_state_dict(full, strict=True, assign=True)
    return model.to(device).eval(), notes


# Largest input side accepted: 4096 px is 65,536 patches of 16 px, already far past any use of a
# 384 px model; larger sizes would allocate the resized position table before any error.
MAX_IMAGE_SIZE = 4096


def _with_image_size(cfg: BlipConfig, image_size: int | None) -> BlipConfig:
    if image_size is None or image_size == cfg.vision.image_size:
        return cfg
    if image_size <= 0 or image_size % cfg.vision.patch_size or image_size > MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size {image_size} must be a positive multiple of the patch size {cfg.vision.patch_size}, "
            f"at most {MAX_IMAGE_SIZE}"
        )
    return cfg.replace(vision=dataclasses.replace(cfg.vision, image_size=image_size))


def _resolve(source: str | Path) -> tuple[Path, str]:
    """Local path for a source (downloading hub ids and URLs), and the source as a string."""
    text = str(source)
    path = Path(source).expanduser()
    if path.exists():
        return path, text
    shipped = shipped_path(text) if isinstance(source, str) else None
    if shipped is not None:
        if not native.is_native(shipped):
            raise FileNotFoundError(f"{text}: the shipped demo model is missing from this installation ({shipped})")
        return shipped, text
    if isinstance(source, str) and fetch.is_url(source):
        return fetch.download_url(source), text
    if isinstance(source, str) and fetch.is_hub_id(source):
        return fetch.download_hub(source), text
    raise FileNotFoundError(
        f"{text}: no such file or directory (and not a shipped model name, an http(s) URL or a hub id owner/name)"
    )


def _tokenizer(explicit: str | Path | None, directory: Path | None, cfg: BlipConfig) -> Tokenizer:
    if explicit is not None:
        tok = Tokenizer.from_path(explicit)
    elif directory is not None and any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        tok = Tokenizer.from_path(directory)
    else:
        if directory is not None:
            log.warning("%s has no tokenizer files; using bert-base-uncased (the tokenizer of every BLIP)", directory)
        tok = Tokenizer.default()
    if (tok.dec_id, tok.enc_id) != (DEC_TOKEN_ID, ENC_TOKEN_ID):
        raise CheckpointError(
            f"{tok.source}: tokenizer puts [DEC]/[ENC] at {tok.dec_id}/{tok.enc_id}; BLIP models use "
            f"{DEC_TOKEN_ID}/{ENC_TOKEN_ID} (bert-base-uncased + 2)"
        )
    if tok.vocab_size > cfg.text.vocab_size:
        raise CheckpointError(
            f"{tok.source}: tokenizer has {tok.vocab_size} ids but the model's embeddings only {cfg.text.vocab_size}"
        )
    return tok


def load_model(
    source: str | Path,
    *,
    tokenizer: str | Path | None = None,
    image_size: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    cpu_kernels: str | None = None,
) -> LoadedModel:
    """Load BLIP weights from any supported source (see the module docstring).

    tokenizer: a vocab.txt / tokenizer.json / directory; default: the source directory's own
    tokenizer files, else bert-base-uncased (Tokenizer.default()). image_size: the input size
    to run at (position embeddings resized bicubically); default: the checkpoint's.
    dtype: cast floating-point weights (default: as stored). cpu_kernels: "auto" | "on" | "off",
    which of our CPU kernels its fp32 CPU inference takes (Blip.use_cpu_kernels; None: the
    $OPENBLIP_CPU_KERNEL setting, else auto), checked before the weights are read.
    """
    setting = cpu.setting_of(cpu_kernels)
    path, text = _resolve(source)
    if dtype is None and isinstance(source, str) and shipped_path(source) == path:
        dtype = torch.float32  # the shipped models are stored in fp16 only to halve the package
    directory: Path | None
    if path.is_dir() and native.is_native(path):
        fmt, directory = SourceFormat.OPENBLIP, path
        cfg0, state = native.read(path)
        kmap: KeyMap | None = None
    elif path.is_dir() and (path / "config.json").is_file():
        fmt, directory = SourceFormat.TRANSFORMERS, path
        state = hf.read_weights(path)
        cfg0 = hf.infer_config(hf.read_config(path), str(path / "config.json"), set(state))
        kmap = hf.KEYMAP
    elif path.is_file():
        _check_torch_file(path)
        fmt, directory = SourceFormat.SALESFORCE, None
        state = salesforce.read_checkpoint(path)
        cfg0 = salesforce.infer_config(state, str(path))
        kmap = salesforce.KEYMAP
    else:
        raise CheckpointError(
            f"{path}: not a checkpoint (expected an openblip directory with openblip.json, a transformers "
            "directory with config.json, or a Salesforce .pth file)"
        )
    cfg = _with_image_size(cfg0, image_size)
    model, notes = build_model(cfg, state, kmap=kmap, source=str(path), device=device, dtype=dtype)
    model.use_cpu_kernels(setting.value)
    for note in notes:
        log.info("%s: %s", path, note)
    tok = _tokenizer(tokenizer, directory, cfg)
    return LoadedModel(model, tok, cfg, SourceInfo(fmt, text, path, tuple(notes)))


MODEL_SOURCES = (
    "a model is an openblip directory (openblip.json + model.safetensors), a transformers directory "
    "(config.json + model.safetensors), a Salesforce .pth file, a hub id such as "
    "Salesforce/blip-image-captioning-base, or an http(s) URL"
)


def _check_torch_file(path: Path) -> None:
    """A file given as a model must be a torch checkpoint (a zip archive, or a legacy pickle):
    say what it is instead, before torch.load's own message ("pop from empty list")."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from e
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    if not head:
        kind = "an empty file"
    elif head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")) or head[8:12] == b"WEBP":
        kind = "an image"
    elif head.lstrip()[:1] in (b"{", b"["):
        kind = "a JSON file"
    else:
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError:
            kind = "a file of another kind"
    raise CheckpointError(f"{path}: {kind}, not a model checkpoint; {MODEL_SOURCES}")


def extract(model: Blip, layout: str) -> Blip:
    """The `layout` model ("caption" or "retrieval", config.LAYOUTS) inside a model holding more:
    the decoder of a pre-training model (with the layers it shares with the encoder) is a
    captioning model, its encoder and ITC/ITM heads a retrieval model. The weights are the same
    tensors, copied into a model of that layout (which transformers can hold)."""
    if layout not in ("caption", "retrieval"):
        raise ValueError(f"only the caption and retrieval models can be extracted, not {layout!r}")
    cfg = model.cfg
    if layout == "caption" and (not cfg.text_decoder or cfg.decoder_over_text):
        raise ValueError("this model has no image-grounded decoder to caption with (a retrieval or VQA model)")
    if layout == "retrieval" and not (cfg.text_encoder and cfg.heads):
        raise ValueError("this model has no text encoder with ITC/ITM heads (a captioning or VQA model)")
    sub_cfg = cfg.replace(share_encoder_decoder=False, decoder_over_text=False, **LAYOUTS[layout])
    full = model.state_dict()  # every name, shared tensors under each of theirs
    wanted = ModelKeys.of(_skeleton(sub_cfg)).shapes
    state = {name: full[name] for name in wanted}
    sub, _ = build_model(sub_cfg, state, source=f"the {layout} part of the model", device=model.device)
    return sub


def save_pretrained(model: Blip, tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write the openblip format (convert/native.py); returns the directory."""
    out = Path(directory)
    native.write(out, model.cfg, native.canonical_state(model))
    tokenizer.save(out)
    return out


def export_hf(model: Blip, tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write a transformers directory (config.json, model.safetensors, tokenizer files, and the
    image processor and processor configs) for BlipForConditionalGeneration /
    BlipForQuestionAnswering / BlipForImageTextRetrieval and BlipProcessor.

    Pre-training layouts (no transformers class) raise ValueError: `extract` the captioning or
    the retrieval model first. The ITC temperature is not
    written (transformers has none); the tied LM-head copies are left out as transformers 5
    does. VQA needs equal vision and text widths (transformers' decoder cross-attends at the
    vision width).
    """
    config = hf.to_hf_config(model.cfg)  # raises for layouts transformers cannot hold
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = hf.to_hf_state(native.canonical_state(model))
    save_file({k: v.to("cpu").contiguous() for k, v in state.items()}, str(out / "model.safetensors"), {"format": "pt"})
    make_shareable(out / "model.safetensors")  # save_file creates it 0600
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    from openblip.image import CLIP_MEAN, CLIP_STD  # here: loading a model must not need PIL (the GPU machine)

    for name, content in hf.processor_files(model.cfg, CLIP_MEAN, CLIP_STD).items():
        (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    tokenizer.save(out)
    return out
