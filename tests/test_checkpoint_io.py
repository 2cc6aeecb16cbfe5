"""load_model's source handling, tokenizer checks and dtype; layout names; export errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openblip.checkpoint_io import (
    CheckpointError,
    SourceFormat,
    build_model,
    export_hf,
    layout_name,
    load_model,
    save_pretrained,
)
from openblip.config import LAYOUTS, preset
from openblip.model import Blip
from openblip.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def caption_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = Blip(preset("tiny", "caption")).eval()
    return save_pretrained(model, Tokenizer.default(), tmp_path_factory.mktemp("caption"))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_name(layout: str) -> None:
    assert layout_name(preset("tiny", layout)) == layout
    assert layout_name(preset("tiny", "full", heads=False)) is None


def test_directory_that_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(tmp_path)


def test_dtype_and_tokenizer_from_the_directory(caption_dir: Path) -> None:
    loaded = load_model(caption_dir, dtype=torch.bfloat16)
    assert loaded.source.format is SourceFormat.OPENBLIP and loaded.source.path == caption_dir
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert not loaded.model.training
    assert loaded.tokenizer.source.startswith(str(caption_dir))


def test_explicit_tokenizer_is_checked(caption_dir: Path, tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog"]) + "\n")
    with pytest.raises(CheckpointError, match=r"vocab\.txt: tokenizer puts \[DEC\]/\[ENC\] at 7/8"):
        load_model(caption_dir, tokenizer=vocab)
    loaded = load_model(caption_dir, tokenizer=caption_dir / "vocab.txt")
    assert loaded.tokenizer.dec_id == 30522


def test_build_model_is_strict_on_our_names(caption_dir: Path) -> None:
    model = Blip(preset("tiny", "caption"))
    state = model.state_dict()
    del state["text_decoder.head.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: text_decoder\.head\.bias"):
        build_model(model.cfg, state)


def test_export_hf_refuses_pretraining_layout(tmp_path: Path) -> None:
    model = Blip(preset("tiny", "pretrain"))
    with pytest.raises(ValueError, match="transformers has no class"):
        export_hf(model, Tokenizer.default(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [0, 50, 100_000])
def test_image_size_checked_before_resizing(caption_dir: Path, size: int) -> None:
    """A size that is no multiple of the patch, or absurdly large, is refused up front (100000 px
    would otherwise allocate a 39M-position table before failing)."""
    with pytest.raises(ValueError, match=f"image_size {size} must be a positive multiple"):
        load_model(caption_dir, image_size=size)
    assert load_model(caption_dir, image_size=96).model.visual_encoder.pos_embed.shape[1] == 1 + 6 * 6
