"""BLIP's caption and question cleaning (original ``data/utils.py``), reproduced exactly.

The quirks are deliberate, because the checkpoints were trained on text cleaned this way:

* only ``.!"()*#:;~`` are touched; commas, apostrophes, ``?``, ``-`` and ``/`` are kept;
* captions collapse runs of **two or more** whitespace characters into one space, so a
  single tab or newline inside a caption survives (and is not a word boundary);
* word truncation splits on the single space character, not on any whitespace;
* questions *delete* the punctuation (``"what's up?!"`` -> ``"what's up?"``), do not collapse
  whitespace and only strip spaces on the right.
"""

from __future__ import annotations

import re

__all__ = ["pre_caption", "pre_question"]

_PUNCTUATION = re.compile(r'[.!"()*#:;~]')
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 50) -> str:
    """Lowercase; punctuation -> space; collapse 2+ whitespace; trim; keep ``max_words`` words.

    BLIP callers use ``max_words=30`` (pretraining, COCO/Flickr captions, retrieval) and 40
    (NLVR).
    """
    text = _PUNCTUATION.sub(" ", caption.lower())
    text = _WHITESPACE_RUN.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    return _truncate_words(text, max_words)


def pre_question(question: str, max_words: int = 50) -> str:
    """Lowercase; delete punctuation; strip trailing spaces; keep ``max_words`` words."""
    text = _PUNCTUATION.sub("", question.lower()).rstrip(" ")
    return _truncate_words(text, max_words)


def _truncate_words(text: str, max_words: int) -> str:
    if max_words < 0:
        raise ValueError(f"max_words must be >= 0, got {max_words}")
    # Split on " " exactly as the original: consecutive spaces yield empty "words" that count.
    words = text.split(" ")
    if len(words) > max_words:
        return " ".join(words[:max_words])
    return text
