"""The demo models shipped inside the package, trained on the synthetic scenes
(`scripts/train_demo_models.sh`), so that every command works offline out of the box.

    synthetic-caption   captioner  } one pre-training-layout model (ITC + ITM + LM): a single ViT
    synthetic-filter    ITM filter }   pass serves both CapFilt roles
    synthetic-vqa       VQA model fine-tuned from it on the scenes' questions

They are stored in the openblip format (openblip.json + model.safetensors + tokenizer files) in
fp16, which halves the package; `checkpoint_io.load_model` resolves these names here (a local
path of the same name wins) and loads them as float32 unless another dtype is asked for.
They know only the synthetic scenes' world (coloured shapes on a plain background).
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

# name -> directory under this package
SHIPPED: dict[str, str] = {
    "synthetic-caption": "synthetic-pretrain",
    "synthetic-filter": "synthetic-pretrain",
    "synthetic-vqa": "synthetic-vqa",
}


def shipped_path(name: str) -> Path | None:
    """The package directory holding the shipped model `name`, or None if `name` is not one."""
    sub = SHIPPED.get(name)
    return None if sub is None else _HERE / sub
