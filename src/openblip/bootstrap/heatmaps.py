"""Grad-CAM heat maps of the report's examples (issue 16 in the CapFilt report): for each
example a shard keeps, the filter's ITM judgement of its web text (and of its first dropped
synthetic text) on the full image, as a small JPEG (bootstrap/pictures.py: HEATMAP_SIZE px, at
most HEATMAP_MAX_BYTES) stored with the example in the shard's done record. They are drawn when
the shard is committed, before the done record is written, so a killed and rerun job draws them
again from the same inputs: no state outside the record.

Only a filter with ITM heads and a text encoder of >= 2 layers can be explained (the last
layer's maps are zero, tasks/explain.py); with any other filter `explainer` returns None and
the report simply has no heat maps.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from openblip.api import BlipPipeline
from openblip.bootstrap.pictures import HEATMAP_SIZE, heatmap_jpeg
from openblip.image import ImageError, load_image
from openblip.model.blip import Blip
from openblip.tasks.explain import explain_loaded
from openblip.tasks.heatmap import overlay
from openblip.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# (image bytes, text, key) -> the heat map as base64 JPEG, or None when it cannot be drawn
Explain = Callable[[bytes, str, str], str | None]


def heatmap_of(model: Blip, tokenizer: Tokenizer, image: bytes, text: str, max_pixels: int, key: str) -> bytes:
    """The report's picture of (image, text): the whole text's ITM Grad-CAM over the photo, as
    tasks/heatmap.py draws it, at HEATMAP_SIZE px, JPEG within HEATMAP_MAX_BYTES."""
    picture = load_image(image, max_pixels=max_pixels, name=key)
    ((explained,),) = explain_loaded(model, tokenizer, [picture], [text])
    return heatmap_jpeg(overlay(picture, explained.map, HEATMAP_SIZE))


def explainer(filter: BlipPipeline, max_pixels: int) -> Explain | None:
    """Heat maps by `filter`'s ITM head, or None when it has no ITM heads or too few layers."""
    model = filter.model
    if not model.cfg.heads or model.cfg.text.depth < 2:
        return None

    def explain(image: bytes, text: str, key: str) -> str | None:
        try:
            jpeg = heatmap_of(model, filter.tokenizer, image, text, max_pixels, key)
        except (ImageError, ValueError, RuntimeError) as e:  # a report picture is never worth failing a shard
            log.warning("no heat map for %s: %s", key, e)
            return None
        return base64.b64encode(jpeg).decode("ascii")

    return explain
