"""DIR/report.html: one self-contained page a curator reads (no network: thumbnails are inline
JPEG data URIs, histograms inline SVG).

It shows counts in / kept / dropped / errored, the ITM histograms of web and synthetic texts
with the threshold marked, the filter's precision / recall on noise-labelled inputs, and three
example grids: the lowest-scoring web texts, web texts replaced by synthetic ones, synthetic
texts dropped. Each grid holds at most GRID_SIZE examples, merged from the shards' candidates
(shard.py), so the page stays small for any run size. An example whose shard drew heat maps
(bootstrap/heatmaps.py: the filter's Grad-CAM of its web text, or of its first dropped synthetic
text) opens them in a <details> block: small inline PNGs, shown only when asked for.
"""

from __future__ import annotations

import heapq
import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from openblip.bootstrap.atomic import publish, temp_path
from openblip.bootstrap.inputs import InputShard
from openblip.bootstrap.shard import GRIDS, read_done
from openblip.model.sampling import name_key

GRID_SIZE = 60
GRID_TITLES = {
    "lowest_web": "Lowest-scoring web texts",
    "replaced": "Web texts replaced by synthetic ones",
    "synthetic_dropped": "Synthetic texts dropped",
}
# A link from an example to a per-example explanation (e.g. a Grad-CAM heat map page), or None.
HeatmapLink = Callable[[Mapping[str, Any]], str | None]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.ex{width:230px;border:1px solid #ddd;border-radius:6px;padding:6px;font-size:12px}
.ex img{display:block;width:96px;height:auto;margin-bottom:4px}
.kept{color:#137333}.dropped{color:#b3261e}.key{color:#777}
.plots{display:flex;gap:24px;flex-wrap:wrap}
details.hm summary{cursor:pointer;color:#1a57b5}details.hm img{width:192px;height:auto}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


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
    errors = "".join(
        f'<tr><td class="l">{_esc(k)}</td><td>{v}</td></tr>' for k, v in stats["errors"]["by_reason"].items()
    )
    extra = f"<h3>Errors by reason</h3><table>{errors}</table>" if errors else ""
    failed = "".join(
        f'<tr><td class="l">{_esc(f["shard"])}</td><td class="l">{_esc(f["error"])}</td></tr>'
        for f in stats["shards"]["failed"]
    )
    extra += f"<h3>Failed shards</h3><table>{failed}</table>" if failed else ""
    return f'<table id="counts">{body}</table>{extra}'


def _noise_table(noise: Mapping[str, Any] | None) -> str:
    if not noise:
        return "<p>No noise labels in the input: precision and recall need a <code>noise</code> field.</p>"
    head = (
        f'<p>Finding noisy web texts (dropped = found): precision <b id="precision">{_score(noise["precision"])}</b>, '
        f'recall <b id="recall">{_score(noise["recall"])}</b> over {noise["noisy"]} noisy and '
        f"{noise['clean']} clean texts.</p>"
    )
    rows = "".join(
        f'<tr><td class="l">{_esc(k)}</td><td>{v["count"]}</td><td>{v["dropped"]}</td>'
        f"<td>{_score(v['dropped_share'])}</td></tr>"
        for k, v in noise["by_type"].items()
    )
    header = '<tr><th class="l">noise</th><th>texts</th><th>dropped</th><th>share dropped</th></tr>'
    return head + f'<table id="noise">{header}{rows}</table>'


def _example(ex: Mapping[str, Any], heatmap: HeatmapLink | None) -> str:
    def mark(kept: bool | None) -> str:
        return '<span class="kept">kept</span>' if kept else '<span class="dropped">dropped</span>'

    syn = "".join(
        f"<div>{mark(k)} {_score(p)}: {_esc(t)}</div>"
        for t, p, k in zip(ex["synthetic_texts"], ex["synthetic_itm"], ex["synthetic_kept"])
    )
    link = heatmap(ex) if heatmap is not None else None
    more = f' <a href="{_esc(link)}">heat map</a>' if link else ""
    noise = f" · noise: {_esc(ex['noise'])}" if ex.get("noise") else ""
    return (
        f'<div class="ex"><img alt="{_esc(ex["key"])}" src="data:image/jpeg;base64,{ex["thumb"]}">'
        f'<div class="key">{_esc(ex["shard"])} / {_esc(ex["key"])}{noise}{more}</div>'
        f"<div>web {mark(ex['web_kept'])} {_score(ex['web_itm'])}: {_esc(ex['web_text'])}</div>{syn}"
        f"{_heatmaps(ex)}</div>"
    )


def _heatmaps(ex: Mapping[str, Any]) -> str:
    """The example's Grad-CAM pictures (web / synthetic text), folded until opened."""
    out = ""
    for which, hm in sorted(ex.get("heatmaps", {}).items(), reverse=True):  # web first
        if hm.get("png"):
            out += (
                f'<details class="hm" data-heatmap="{_esc(which)}"><summary>heat map: {_esc(which)} text</summary>'
                f'<img alt="Grad-CAM of {_esc(hm["text"])}" src="data:image/png;base64,{hm["png"]}">'
                f"<div>{_esc(hm['text'])}</div></details>"
            )
    return out


def render(
    stats: Mapping[str, Any], examples: Mapping[str, list[dict[str, Any]]], heatmap: HeatmapLink | None = None
) -> str:
    threshold = float(stats["threshold"])
    plots = histogram_svg(stats["histograms"]["web"], threshold, "web texts", "#4a78c2")
    if sum(stats["histograms"]["synthetic"]):
        plots += histogram_svg(stats["histograms"]["synthetic"], threshold, "synthetic texts", "#d08a2c")
    grids = "".join(
        f'<h2>{GRID_TITLES[g]} ({len(examples.get(g, []))})</h2><div class="grid" id="grid-{g}">'
        + "".join(_example(ex, heatmap) for ex in examples.get(g, []))
        + "</div>"
        for g in GRIDS
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>openblip bootstrap report</title>'
        f"<style>{_CSS}</style></head><body><h1>CapFilt report</h1>"
        f"<p>Filter threshold: ITM probability above {threshold:g}.</p>"
        f"<h2>Counts</h2>{_counts_table(stats)}"
        f'<h2>ITM scores</h2><div class="plots">{plots}</div>'
        f"<h2>Filter precision and recall</h2>{_noise_table(stats['noise'])}"
        f"{grids}</body></html>\n"
    )


def write_report(
    out: Path, shards: Sequence[InputShard], stats: Mapping[str, Any], heatmap: HeatmapLink | None = None
) -> Path:
    records = (r for r in (read_done(out, s.name) for s in shards) if r is not None)
    page = render(stats, merge_examples(records), heatmap)
    final = out / "report.html"
    tmp = temp_path(final)
    tmp.write_text(page, encoding="utf-8")
    publish(tmp, final)
    return final
