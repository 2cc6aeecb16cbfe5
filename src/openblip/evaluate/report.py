"""A self-contained HTML page of an evaluation (`openblip eval --report FILE.html`): every image
as an inline thumbnail (a data: URL, so the page can be mailed or archived alone) beside what
the model said and the references, the worst and the best items by the task's metric first,
then every item; for retrieval, the top hits of each query.

Plain data in, one string out: the CLI builds the cards (cli/eval_report.py), this module only
lays them out. No script, no external stylesheet or font.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

THUMBNAIL_SIDE = 160  # pixels, the longer side
MAX_CARDS = 500  # "every item" stops here on a large split; worst and best are always complete
SHOWN = 5  # worst / best items per section


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG data: URL of `image` scaled to fit side x side (aspect kept)."""
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Hit:
    """One retrieved item of a query: a text (image query) or an image (text query)."""

    label: str
    score: float
    correct: bool
    image: str | None = None  # data: URL for image hits


@dataclass(frozen=True)
class Card:
    key: str  # the item's key in the data
    score: float  # the section's metric for this item
    image: str | None = None  # data: URL
    query: str | None = None  # a text query (text -> image retrieval)
    output: str | None = None  # the generated caption or answer
    question: str | None = None
    references: Sequence[str] = ()
    hits: Sequence[Hit] = ()


@dataclass(frozen=True)
class Section:
    title: str
    metric: str  # what Card.score is, e.g. "CIDEr" or "rank of the first correct caption"
    cards: Sequence[Card]
    higher_is_better: bool = True
    notes: Sequence[str] = field(default_factory=tuple)
    label: str = ""  # the score's short name on each card, e.g. "rank"


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; color: #555; }
pre.summary { background: #f4f4f4; padding: 12px; white-space: pre-wrap; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 8px; width: 340px; }
.card img.main { max-width: 160px; max-height: 160px; display: block; margin-bottom: 6px; }
.key { font-family: monospace; color: #666; } .score { float: right; font-weight: bold; }
.output { font-weight: bold; margin: 4px 0; } .refs { margin: 4px 0 0 16px; padding: 0; color: #444; }
.hits { margin: 4px 0 0 0; padding: 0; list-style: none; } .hits li { margin: 2px 0; }
.hits img { width: 56px; height: 56px; object-fit: cover; vertical-align: middle; margin-right: 6px; }
.ok { color: #1a7f37; } .wrong { color: #b42318; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _card(card: Card, section: Section) -> str:
    label = f"{section.label} " if section.label else ""
    parts = [
        '<div class="card">',
        f'<span class="score" title="{_esc(section.metric)}">{_esc(label)}{card.score:.3g}</span>',
        f'<div class="key">{_esc(card.key)}</div>',
    ]
    if card.image is not None:
        parts.append(f'<img class="main" alt="{_esc(card.key)}" src="{card.image}">')
    if card.query is not None:
        parts.append(f'<div class="output">query: {_esc(card.query)}</div>')
    if card.question is not None:
        parts.append(f"<div>Q: {_esc(card.question)}</div>")
    if card.output is not None:
        parts.append(f'<div class="output">{_esc(card.output)}</div>')
    if card.references:
        refs = "".join(f"<li>{_esc(r)}</li>" for r in card.references)
        parts.append(f'<div>references:</div><ul class="refs">{refs}</ul>')
    if card.hits:
        rows = []
        for hit in card.hits:
            mark = '<span class="ok">&#10003;</span>' if hit.correct else '<span class="wrong">&#10007;</span>'
            img = f'<img alt="{_esc(hit.label)}" src="{hit.image}">' if hit.image is not None else ""
            rows.append(f"<li>{mark} {img}{_esc(hit.label)} <small>({hit.score:.3f})</small></li>")
        parts.append(f'<div>top hits:</div><ul class="hits">{"".join(rows)}</ul>')
    parts.append("</div>")
    return "".join(parts)


def _cards(cards: Sequence[Card], section: Section) -> str:
    return '<div class="cards">' + "".join(_card(c, section) for c in cards) + "</div>"


def _section(section: Section) -> str:
    order = sorted(section.cards, key=lambda c: c.score, reverse=not section.higher_is_better)
    worst, best = order[:SHOWN], order[::-1][:SHOWN]
    parts = [f"<h2>{_esc(section.title)}</h2>"]
    parts += [f"<p>{_esc(n)}</p>" for n in section.notes]
    parts.append(f"<h3>worst {len(worst)} by {_esc(section.metric)}</h3>{_cards(worst, section)}")
    parts.append(f"<h3>best {len(best)} by {_esc(section.metric)}</h3>{_cards(best, section)}")
    shown = section.cards[:MAX_CARDS]
    more = f" (first {MAX_CARDS} of {len(section.cards)})" if len(section.cards) > MAX_CARDS else ""
    parts.append(f"<h3>every item, in data order{more}</h3>{_cards(shown, section)}")
    return "".join(parts)


def render(title: str, summary: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page."""
    body = "".join(_section(s) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f'<pre class="summary">{_esc(chr(10).join(summary))}</pre>'
        f"{body}</body></html>\n"
    )
