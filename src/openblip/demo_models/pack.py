"""Copy a trained model into the package as a shipped demo model: the openblip format with the
floating-point weights in fp16 (half the bytes; `load_model` turns them back into float32) and
the tokenizer as vocab.txt + tokenizer_config.json (tokenizer.json would add 0.7 MB per model
and says nothing more for bert-base-uncased's WordPiece)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from openblip.checkpoint_io import load_model
from openblip.convert import native


def pack(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `model_dir` (anything load_model reads) to `out_dir` in fp16; returns out_dir.
    The weights round-trip through fp16 once: the shipped model is what the quality test measures."""
    loaded = load_model(model_dir)
    state = {
        k: (v.to(torch.float16) if v.is_floating_point() else v)
        for k, v in native.canonical_state(loaded.model).items()
    }
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    native.write(tmp, loaded.config, state)
    loaded.tokenizer.save(tmp)
    (tmp / "tokenizer.json").unlink()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
