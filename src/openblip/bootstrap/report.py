"""DIR/report.html: one self-contained page a curator reads (no network: pictures are inline
JPEG data URIs, histograms inline SVG).

It shows counts in / kept / dropped / errored, the ITM histograms of web and synthetic texts
with the threshold marked, the filter's precision / recall on noise-labelled inputs, and three
example grids: the lowest-scoring web texts, web texts replaced by synthetic ones, synthetic
texts dropped. Each grid holds at most GRID_SIZE examples, merged from the shards' candidates
(shard.py). An example whose shard drew heat maps (bootstrap/heatmaps.py) opens the one its grid
is about in a <details> block: the web text's in the first two grids, the dropped synthetic
text's in the third.

Size. The page has a bound that does not grow with the run: MAX_PAGE_BYTES = 7,954,760 bytes
(under 8 MB), approached only by pictures of pure noise and texts made of quotes. Ordinary
pictures are well under their caps: on the synthetic web split's 384 px scenes a thumbnail takes
~2.5 KB and a heat map ~8.6 KB, so a full page of them is about 3 MB.
It is the sum of what the caps below allow, each enforced here whatever the done records hold:
- per shown example (at most len(GRIDS) x GRID_SIZE = 180): a thumbnail of at most
  THUMB_MAX_BYTES and one heat map of at most HEATMAP_MAX_BYTES (pictures.py; base64 adds a
  third, and a larger picture is left out), the web text, SYNTHETIC_SHOWN synthetic texts and the
  heat map's text cut to TEXT_CHARS characters, key (twice), shard and noise label cut to
  LABEL_CHARS, and _EXAMPLE_MARKUP bytes of tags and scores;
- per table row (errors by reason, failed shards, noise types: TABLE_ROWS each, the rest counted
  in one line and listed in stats.json): a label and an error message cut to LABEL_CHARS and
  ERROR_CHARS, and _ROW_MARKUP bytes;
- _PAGE_MARKUP for the rest: style, headings, the counts table, the two HIST_BINS-bar histograms.
A character takes at most _ESCAPED bytes once escaped (`"` becomes `&quot;`; UTF-8 takes <= 4).
Scores are probabilities in [0, 1] and counts below 10**15, as the engines write them.
"""

from __future__ import annotations

import heapq
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from openblip.bootstrap.atomic import publish, temp_path
from openblip.bootstrap.inputs import InputShard
from openblip.bootstrap.pictures import HEATMAP_MAX_BYTES, THUMB_MAX_BYTES, b64_len
from openblip.bootstrap.shard import GRIDS, read_done
from openblip.model.sampling import name_key

GRID_SIZE = 60
GRID_TITLES = {
    "lowest_web": "Lowest-scoring web texts",
    "replaced": "Web texts replaced by synthetic ones",
    "synthetic_dropped": "Synthetic texts dropped",
}
# The heat map each grid shows: why the web text was dropped, or why the synthetic one was.
GRID_HEATMAP = {"lowest_web": "web", "replaced": "web", "synthetic_dropped": "synthetic"}
TEXT_CHARS = 200  # a text as shown (the scores parquet has it whole)
LABEL_CHARS = 100  # a key, shard name or noise label as shown
ERROR_CHARS = 300  # a failed shard's error as shown
SYNTHETIC_SHOWN = 4  # synthetic texts listed per example (--num-captions may ask for many more)
TABLE_ROWS = 20  # rows per table of the page

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_ESCAPED = 6  # bytes per character at most once escaped and UTF-8 encoded (see above)
_EXAMPLE_MARKUP = 800  # measured ~500 (tests/bootstrap/test_report.py checks the sum)
_ROW_MARKUP = 200  # measured ~100
_PAGE_MARKUP = 20_000  # measured ~14,500 with 50-bin histograms and 15-digit counts
_EXAMPLE_BYTES = (
    b64_len(THUMB_MAX_BYTES)
    + b64_len(HEATMAP_MAX_BYTES)
    + _ESCAPED * ((2 + SYNTHETIC_SHOWN) * TEXT_CHARS + 4 * LABEL_CHARS)
    + _EXAMPLE_MARKUP
)
_ROW_BYTES = _ESCAPED * (LABEL_CHARS + ERROR_CHARS) + _ROW_MARKUP
MAX_PAGE_BYTES = _PAGE_MARKUP + len(GRIDS) * GRID_SIZE * _EXAMPLE_BYTES + 3 * (TABLE_ROWS + 1) * _ROW_BYTES

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.ex{width:230px;border:1px solid #ddd;border-radius:6px;padding:6px;font-size:12px;overflow-wrap:anywhere}
.ex img{display:block;width:96px;height:auto;margin-bottom:4px}
.kept{color:#137333}.dropped{color:#b3261e}.key,.more{color:#777}
.plots{display:flex;gap:24px;flex-wrap:wrap}
details.hm summary{cursor:pointer;color:#1a57b5}details.hm img{width:160px;height:auto}
"""


def _clip(value: Any, chars: int) -> str:
    """str(value) cut to `chars` characters (the last one an ellipsis when cut)."""
    text = "" if value is None else str(value)
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _esc(value: Any, chars: int = LABEL_CHARS) -> str:
    return html.escape(_clip(value, chars))


def _picture(b64: Any, max_bytes: int) -> str | None:
    """A stored base64 JPEG when it is base64 within its cap (pictures.py), else None: the page's
    bound holds, and its markup stays whole, even for done records written by something else."""
    if isinstance(b64, str) and 0 < len(b64) <= b64_len(max_bytes) and _BASE64.fullmatch(b64):
        return b64
    return None


def _score(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def merge_examples(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The run's examples per grid from the shards' candidates: the GRID_SIZE lowest web ITM, and
    for the other grids the GRID_SIZE smallest key hashes (a uniform sample across the run)."""
    heaps: dict[str, list[tuple[float, str, dict[str, Any]]]] = {g: [] for g in GRIDS}
    for record in records:
        for grid in GRIDS:
            for ex in record["examples"].get(grid, []):
                rank = ex["web_itm"] if grid == "lowest_web" else name_key(ex["key"]) / 2.0**64
                item = (-rank, f"{ex['shard']}/{ex['key']}", ex)
                heap = heaps[grid]
                if len(heap) < GRID_SIZE:
                    heapq.heappush(heap, item)
                elif item[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, item)
    return {g: [e for _, _, e in sorted(h, key=lambda x: (-x[0], x[1]))] for g, h in heaps.items()}


def histogram_svg(counts: Sequence[int], threshold: float, title: str, colour: str) -> str:
    """Bars over [0, 1] and a dashed line at the threshold."""
    w, h, pad = 420, 180, 30
    top = max(counts) if counts and max(counts) > 0 else 1
    bw = (w - 2 * pad) / max(len(counts), 1)
    bars = "".join(
        f'<rect x="{pad + i * bw:.1f}" y="{h - pad - (c / top) * (h - 2 * pad):.1f}" width="{max(bw - 1, 1):.1f}" '
        f'height="{(c / top) * (h - 2 * pad):.1f}" fill="{colour}"><title>{i / len(counts):.2f}: {c}</title></rect>'
        for i, c in enumerate(counts)
    )
    tx = pad + threshold * (w - 2 * pad)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{_esc(title)}">'
        f'<text x="{pad}" y="16" font-size="13">{_esc(title)} (n={sum(counts)})</text>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#555"/>{bars}'
        f'<line x1="{tx:.1f}" y1="{pad - 6}" x2="{tx:.1f}" y2="{h - pad}" stroke="#b3261e" stroke-dasharray="4 3"/>'
        f'<text x="{tx + 3:.1f}" y="{pad}" font-size="11" fill="#b3261e">threshold {threshold:g}</text>'
        f'<text x="{pad}" y="{h - 10}" font-size="11">0</text>'
        f'<text x="{w - pad - 6}" y="{h - 10}" font-size="11">1</text>'
        f'<text x="{w / 2 - 40:.0f}" y="{h - 10}" font-size="11">ITM probability</text></svg>'
    )


def _rows(items: Sequence[str], more: str) -> str:
    """At most TABLE_ROWS rows, then one saying how many more (stats.json lists them all)."""
    extra = len(items) - TABLE_ROWS
    tail = f'<tr><td class="l more" colspan="4">and {extra} more {more} (stats.json)</td></tr>' if extra > 0 else ""
    return "".join(items[:TABLE_ROWS]) + tail


def _counts_table(stats: Mapping[str, Any]) -> str:
    rows = [
        ("samples in", stats["samples"]),
        ("samples used", stats["samples_used"]),
        ("samples errored", stats["errors"]["total"]),
        ("web texts kept", stats["web"]["kept"]),
        ("web texts dropped", stats["web"]["dropped"]),
        ("synthetic texts kept", stats["synthetic"]["kept"]),
        ("synthetic texts dropped", stats["synthetic"]["dropped"]),
        ("kept pairs written", stats["kept_pairs"]),
        ("shards done", f"{stats['shards']['done']} of {stats['shards']['total']}"),
        ("shards failed", len(stats["shards"]["failed"])),
    ]
    body = "".join(f'<tr><td class="l">{_esc(k)}</td><td data-count="{_esc(k)}">{_esc(v)}</td></tr>' for k, v in rows)
    by_reason = sorted(stats["errors"]["by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    errors = [f'<tr><td class="l">{_esc(k)}</td><td>{_esc(v)}</td></tr>' for k, v in by_reason]
    extra = f"<h3>Errors by reason</h3><table>{_rows(errors, 'reasons')}</table>" if errors else ""
    failed = [
        f'<tr><td class="l">{_esc(f["shard"])}</td><td class="l">{_esc(f["error"], ERROR_CHARS)}</td></tr>'
        for f in stats["shards"]["failed"]
    ]
    extra += f"<h3>Failed shards</h3><table>{_rows(failed, 'failed shards')}</table>" if failed else ""
    return f'<table id="counts">{body}</table>{extra}'


def _noise_table(noise: Mapping[str, Any] | None) -> str:
    if not noise:
        return "<p>No noise labels in the input: precision and recall need a <code>noise</code> field.</p>"
    head = (
        f'<p>Finding noisy web texts (dropped = found): precision <b id="precision">{_score(noise["precision"])}</b>, '
        f'recall <b id="recall">{_score(noise["recall"])}</b> over {noise["noisy"]} noisy and '
        f"{noise['clean']} clean texts.</p>"
    )
    by_type = sorted(noise["by_type"].items(), key=lambda kv: (-kv[1]["count"], kv[0]))  # the common ones first
    rows = [
        f'<tr><td class="l">{_esc(k)}</td><td>{_esc(v["count"])}</td><td>{_esc(v["dropped"])}</td>'
        f"<td>{_score(v['dropped_share'])}</td></tr>"
        for k, v in by_type
    ]
    header = '<tr><th class="l">noise</th><th>texts</th><th>dropped</th><th>share dropped</th></tr>'
    return head + f'<table id="noise">{header}{_rows(rows, "noise types")}</table>'


def _example(ex: Mapping[str, Any], grid: str) -> str:
    def mark(kept: bool | None) -> str:
        return '<span class="kept">kept</span>' if kept else '<span class="dropped">dropped</span>'

    shown = list(zip(ex["synthetic_texts"], ex["synthetic_itm"], ex["synthetic_kept"]))
    syn = "".join(f"<div>{mark(k)} {_score(p)}: {_esc(t, TEXT_CHARS)}</div>" for t, p, k in shown[:SYNTHETIC_SHOWN])
    if len(shown) > SYNTHETIC_SHOWN:
        syn += f'<div class="more">and {len(shown) - SYNTHETIC_SHOWN} more synthetic texts</div>'
    noise = f" · noise: {_esc(ex['noise'])}" if ex.get("noise") else ""
    thumb = _picture(ex.get("thumb"), THUMB_MAX_BYTES)
    img = f'<img alt="{_esc(ex["key"])}" src="data:image/jpeg;base64,{thumb}">' if thumb else ""
    return (
        f'<div class="ex">{img}<div class="key">{_esc(ex["shard"])} / {_esc(ex["key"])}{noise}</div>'
        f"<div>web {mark(ex['web_kept'])} {_score(ex['web_itm'])}: {_esc(ex['web_text'], TEXT_CHARS)}</div>{syn}"
        f"{_heatmap(ex, GRID_HEATMAP[grid])}</div>"
    )


def _heatmap(ex: Mapping[str, Any], which: str) -> str:
    """The example's Grad-CAM picture of its `which` text (web / synthetic), folded until opened."""
    hm = ex.get("heatmaps", {}).get(which) or {}
    jpeg = _picture(hm.get("jpeg"), HEATMAP_MAX_BYTES)
    if jpeg is None:
        return ""
    return (
        f'<details class="hm" data-heatmap="{which}"><summary>heat map: {which} text</summary>'
        f'<img alt="Grad-CAM heat map" src="data:image/jpeg;base64,{jpeg}">'
        f"<div>{_esc(hm.get('text'), TEXT_CHARS)}</div></details>"
    )


def render(stats: Mapping[str, Any], examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The page, at most MAX_PAGE_BYTES (UTF-8) for any stats and examples (GRID_SIZE per grid shown)."""
    threshold = float(stats["threshold"])
    plots = histogram_svg(stats["histograms"]["web"], threshold, "web texts", "#4a78c2")
    if sum(stats["histograms"]["synthetic"]):
        plots += histogram_svg(stats["histograms"]["synthetic"], threshold, "synthetic texts", "#d08a2c")
    grids = ""
    for g in GRIDS:
        shown = list(examples.get(g, []))[:GRID_SIZE]
        cards = "".join(_example(ex, g) for ex in shown)
        grids += f'<h2>{GRID_TITLES[g]} ({len(shown)})</h2><div class="grid" id="grid-{g}">{cards}</div>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>openblip bootstrap report</title>'
        f"<style>{_CSS}</style></head><body><h1>CapFilt report</h1>"
        f"<p>Filter threshold: ITM probability above {threshold:g}.</p>"
        f"<h2>Counts</h2>{_counts_table(stats)}"
        f'<h2>ITM scores</h2><div class="plots">{plots}</div>'
        f"<h2>Filter precision and recall</h2>{_noise_table(stats['noise'])}"
        f"{grids}</body></html>\n"
    )


def write_report(out: Path, shards: Sequence[InputShard], stats: Mapping[str, Any]) -> Path:
    """DIR/report.html from the shards' done records (published whole, as every output)."""
    records = (r for r in (read_done(out, s.name) for s in shards) if r is not None)
    page = render(stats, merge_examples(records))
    final = out / "report.html"
    tmp = temp_path(final)
    tmp.write_text(page, encoding="utf-8")
    publish(tmp, final)
    return final
