"""The settings of one `openblip bootstrap` run, and which of them must not change on a resume.

Defaults are the paper's CapFilt (BLIP section 3.3): one synthetic caption per image by nucleus
sampling (top-p 0.9, the original's top-k 50 and repetition penalty 1.1), kept when the filter's
ITM probability of match is above 0.5, as the web text is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from openblip.limits import DEFAULT_MAX_PIXELS
from openblip.model.generate import GenerationConfig
from openblip.tasks.caption import DEFAULT_PROMPT, caption_config


@dataclass(frozen=True)
class CaptionSettings:
    num_captions: int = 1
    num_beams: int | None = None  # None: nucleus sampling (the paper's choice for diversity)
    top_p: float = 0.9
    max_length: int = 20  # the original's caption lengths ([DEC] and the prompt count)
    min_length: int = 5
    prompt: str = DEFAULT_PROMPT
    seed: int = 0  # sampling: each sample's stream is keyed by its key (model/sampling.name_key)

    def generation(self) -> GenerationConfig:
        return caption_config(
            sample=self.num_beams is None,
            num_beams=self.num_beams or 1,
            max_length=self.max_length,
            min_length=self.min_length,
            top_p=self.top_p,
            num_captions=self.num_captions,
            seed=self.seed,
        )


@dataclass(frozen=True)
class BootstrapConfig:
    out: str
    filter: str  # model source: openblip / transformers directory, Salesforce .pth, hub id
    captioner: str | None  # None: filter the web texts alone (an audit)
    caption: CaptionSettings = dataclasses.field(default_factory=CaptionSettings)
    threshold: float = 0.5  # a text is kept when its ITM probability is above this
    tokenizer: str | None = None
    image_size: int | None = None  # default: each model's own
    max_pixels: int = DEFAULT_MAX_PIXELS
    # How the run is executed: free to change between a run and its resume.
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "fp32"
    workers: int = 2  # image-decoding processes (0: decode in the main process)
    limit: int | None = None  # stop after this many samples (in shard order)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.caption.num_captions < 1:
            raise ValueError(f"num_captions must be >= 1, got {self.caption.num_captions}")
        if self.caption.num_beams is not None and self.caption.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.caption.num_beams}")
        if self.captioner is not None:
            self.caption.generation()  # its own checks (top_p range, beams vs captions)

    @property
    def shared_model(self) -> bool:
        """Captioner and filter are one checkpoint: loaded once, its ViT run once per image."""
        return self.captioner == self.filter

    def identity(self) -> dict[str, Any]:
        """What decides the outputs: a resume with any of it changed would mix two runs."""
        return {
            "filter": self.filter,
            "captioner": self.captioner,
            "caption": dataclasses.asdict(self.caption) if self.captioner is not None else None,
            "threshold": self.threshold,
            "tokenizer": self.tokenizer,
            "image_size": self.image_size,
            "max_pixels": self.max_pixels,
            "dtype": self.dtype,
        }
