"""Checkpoint interop: declarative key maps for foreign formats (hf.py: transformers,
salesforce.py: the original `.pth`), our own format (native.py), and fetching released
weights (fetch.py). `openblip.checkpoint_io.load_model` is the entry point."""

from openblip.convert.keymap import CheckpointError, KeyMap, ModelKeys

__all__ = ["CheckpointError", "KeyMap", "ModelKeys"]
