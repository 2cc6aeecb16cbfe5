"""report.html (bootstrap/report.py) and the stats it shows (bootstrap/stats.py)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from openblip.bootstrap.atomic import write_json
from openblip.bootstrap.inputs import InputShard, ShardKind
from openblip.bootstrap.pictures import (
    HEATMAP_MAX_BYTES,
    HEATMAP_SIZE,
    THUMB_MAX_BYTES,
    THUMB_SIZE,
    b64_len,
    heatmap_jpeg,
    thumbnail_jpeg,
)
from openblip.bootstrap.report import (
    ERROR_CHARS,
    GRID_SIZE,
    LABEL_CHARS,
    MAX_PAGE_BYTES,
    SYNTHETIC_SHOWN,
    TABLE_ROWS,
    TEXT_CHARS,
    histogram_svg,
    merge_examples,
    render,
    write_report,
)
from openblip.bootstrap.shard import EXAMPLES_PER_SHARD, GRIDS, HIST_BINS, output_paths
from openblip.bootstrap.stats import noise_scores
from openblip.tasks import heatmap

from .conftest import jpeg_bytes


def test_noise_scores_arithmetic() -> None:
    got = noise_scores(
        {
            "clean": {"count": 10, "dropped": 2},
            "generic": {"count": 4, "dropped": 4},
            "truncated": {"count": 6, "dropped": 2},
        }
    )
    assert got is not None
    assert got["precision"] == pytest.approx(6 / 8) and got["recall"] == pytest.approx(6 / 10)
    assert got["by_type"]["truncated"]["dropped_share"] == pytest.approx(1 / 3)
    assert noise_scores({}) is None


def _example(key: str, itm: float, shard: str = "s") -> dict[str, Any]:
    return {
        "key": key,
        "shard": shard,
        "thumb": base64.b64encode(jpeg_bytes(int(key[1:]), size=32)).decode(),
        "web_text": f"text <b>{key}</b>",
        "web_itm": itm,
        "web_kept": itm > 0.5,
        "synthetic_texts": ["a synthetic caption"],
        "synthetic_itm": [0.9],
        "synthetic_kept": [True],
        "noise": "generic",
    }


def test_merge_keeps_the_lowest_and_a_bounded_sample() -> None:
    records = [
        {
            "examples": {
                "lowest_web": [_example(f"k{s * 100 + i}", (s * 100 + i) / 1000) for i in range(40)],
                "replaced": [_example(f"k{s * 100 + i}", 0.1) for i in range(40)],
            }
        }
        for s in range(3)
    ]
    merged = merge_examples(records)
    assert [e["web_itm"] for e in merged["lowest_web"]] == sorted(e["web_itm"] for e in merged["lowest_web"])
    assert len(merged["lowest_web"]) == GRID_SIZE and merged["lowest_web"][0]["key"] == "k0"
    assert len(merged["replaced"]) == GRID_SIZE and merged["synthetic_dropped"] == []
    assert merge_examples(reversed(records)) == merged  # independent of the shards' order


def test_histogram_marks_the_threshold() -> None:
    svg = histogram_svg([0, 3, 1, 0], 0.5, "web texts", "#000")
    assert svg.count("<rect") == 4 and "threshold 0.5" in svg and "(n=4)" in svg


def _stats() -> dict[str, Any]:
    return {
        "samples": 1234,
        "samples_used": 1200,
        "errors": {"total": 34, "by_reason": {"corrupt image": 30, "missing text": 4}},
        "shards": {
            "total": 3,
            "done": 2,
            "cut_by_limit": 0,
            "failed": [{"shard": "c", "path": "c.tar", "error": "unreadable tar"}],
        },
        "threshold": 0.5,
        "web": {"kept": 800, "dropped": 400},
        "synthetic": {"kept": 900, "dropped": 300},
        "kept_pairs": 1700,
        "noise": noise_scores({"clean": {"count": 900, "dropped": 100}, "generic": {"count": 300, "dropped": 270}}),
        "histograms": {"bins": 4, "range": [0, 1], "web": [100, 300, 500, 300], "synthetic": [50, 250, 400, 500]},
    }


def test_report_renders_in_a_browser(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stats = _stats()
    examples = {"lowest_web": [_example(f"k{i}", i / 10) for i in range(5)], "replaced": [_example("k7", 0.2)]}
    page = render(stats, examples)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    html_path = tmp_path / "report.html"
    html_path.write_text(page)
    shot = browser.render(html_path, tmp_path / "shot.png", width=1200, height=1400)
    dom = shot.dom
    assert 'data-count="samples in">1234<' in dom and 'data-count="web texts kept">800<' in dom
    assert 'id="precision">0.730<' in dom and "unreadable tar" in dom
    assert "text &lt;b&gt;k3&lt;/b&gt;" in dom  # texts escaped
    assert dom.count("data:image/jpeg;base64,") == 6
    pixels = np.asarray(Image.open(shot.screenshot).convert("RGB")).astype(int)
    assert pixels.std() > 10  # not a blank page
    # the thumbnails were decoded and painted: the random-noise JPEGs give many distinct colours
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_a_dropped_example_opens_its_heat_map(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photo = Image.open(io.BytesIO(jpeg_bytes(3, size=48))).convert("RGB")
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[1, 2] = 1.0
    jpeg = base64.b64encode(heatmap_jpeg(heatmap.overlay(photo, heat, longest=HEATMAP_SIZE))).decode()
    dropped = _example("k4", 0.1)  # web text dropped
    dropped["heatmaps"] = {"web": {"text": dropped["web_text"], "jpeg": jpeg}}
    page = render(_stats(), {"lowest_web": [dropped, _example("k5", 0.9)]})
    assert page.count('<details class="hm"') == 1 and page.count(f"base64,{jpeg}") == 1
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # still self-contained
    # The page has no script; the test adds one to a copy that opens the heat map and reports it.
    probe = tmp_path / "probe.html"
    script = (
        "<script>addEventListener('load',()=>{const d=document.querySelector('details.hm');d.open=true;"
        "const i=d.querySelector('img');document.body.dataset.shown=i.complete&&i.naturalWidth>0?i.naturalWidth:0;"
        "document.body.dataset.drawn=i.getBoundingClientRect().width;"
        "document.body.dataset.inside=d.closest('.ex').querySelector('.dropped')?1:0;});</script>"
    )
    probe.write_text(page.replace("</body>", script + "</body>"))
    dom = browser.render(probe, tmp_path / "shot.png", width=1200, height=1400).dom
    got = re.search(r'data-shown="(\d+)" data-drawn="([\d.]+)" data-inside="(\d)"', dom)
    assert got, dom[:500]
    assert int(got.group(1)) == HEATMAP_SIZE and float(got.group(2)) == HEATMAP_SIZE and got.group(3) == "1"
    assert "heat map: web text" in dom


# ---- the page's size bound (report.py's docstring) -----------------------------------------------
def _worst(shard: str, i: int, thumb: str, heat: str) -> dict[str, Any]:
    """An example as large as a run can make one: texts of quotes (6 bytes each once escaped),
    more synthetic texts than are shown, pictures of pure noise, heat maps of both texts."""
    text, label = '"' * (3 * TEXT_CHARS), '"' * (3 * LABEL_CHARS)
    n = SYNTHETIC_SHOWN + 3
    return {
        "key": f"{i:04d}{label}",
        "shard": f"{shard}{label}",
        "thumb": thumb,
        "web_text": text,
        "web_itm": 0.123456789,
        "web_kept": False,
        "synthetic_texts": [text] * n,
        "synthetic_itm": [0.987654321] * n,
        "synthetic_kept": [False] * n,
        "noise": label,
        "heatmaps": {w: {"text": text, "jpeg": heat} for w in ("web", "synthetic")},
    }


def _worst_stats() -> dict[str, Any]:
    """Stats whose tables overflow: more failed shards, error reasons and noise types than shown."""
    rows, big = 3 * TABLE_ROWS, 10**14
    label, error = '"' * (3 * LABEL_CHARS), '"' * (3 * ERROR_CHARS)
    noise = noise_scores({f"{i}{label}": {"count": big, "dropped": big - i} for i in range(rows)})
    return {
        "samples": big,
        "samples_used": big,
        "errors": {"total": big, "by_reason": {f"{i}{label}": big for i in range(rows)}},
        "shards": {
            "total": big,
            "done": big,
            "cut_by_limit": 0,
            "failed": [{"shard": f"{i}{label}", "path": label, "error": error} for i in range(rows)],
        },
        "threshold": 0.123456789,
        "web": {"kept": big, "dropped": big},
        "synthetic": {"kept": big, "dropped": big},
        "kept_pairs": big,
        "noise": noise,
        "histograms": {"bins": HIST_BINS, "range": [0, 1], "web": [big] * HIST_BINS, "synthetic": [big] * HIST_BINS},
    }


def test_a_report_at_the_caps_stays_under_its_stated_bound(tmp_path: Path) -> None:
    """Many shards full of the largest examples a run can make: the page holds GRID_SIZE of them
    per grid, each with its thumbnail and heat map, and stays under MAX_PAGE_BYTES; the bound is
    close (the caps are what makes the page large, not slack in the arithmetic)."""
    rng = np.random.default_rng(0)

    def noise_jpeg(side: int, encode: Any) -> str:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        return base64.b64encode(encode(Image.fromarray(pixels))).decode()

    thumbs = [noise_jpeg(THUMB_SIZE, thumbnail_jpeg) for _ in range(4)]
    heats = [noise_jpeg(HEATMAP_SIZE, heatmap_jpeg) for _ in range(4)]
    out, shards = tmp_path / "out", []
    for s in range(6):  # 6 x EXAMPLES_PER_SHARD candidates per grid, more than GRID_SIZE
        name = f"{s:05d}"
        shards.append(InputShard(name, f"{name}.tar", ShardKind.TAR))
        grid = [_worst(name, i, thumbs[i % 4], heats[i % 4]) for i in range(EXAMPLES_PER_SHARD)]
        record = {"shard": name, "examples": {g: grid for g in GRIDS}}
        path = output_paths(out, name)["done"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, record)
    page_path = write_report(out, shards, _worst_stats())
    page, size = page_path.read_text(encoding="utf-8"), page_path.stat().st_size
    assert page.count('<div class="ex">') == page.count('<details class="hm"') == len(GRIDS) * GRID_SIZE
    assert page.count("data:image/jpeg;base64,") == 2 * len(GRIDS) * GRID_SIZE
    assert page.count("more synthetic texts") == len(GRIDS) * GRID_SIZE
    assert page.count(f"and {2 * TABLE_ROWS} more") == 3  # errors by reason, failed shards, noise types
    assert size <= MAX_PAGE_BYTES, (size, MAX_PAGE_BYTES)
    assert size >= 0.85 * MAX_PAGE_BYTES, (size, MAX_PAGE_BYTES)
    assert MAX_PAGE_BYTES == 7_954_760  # what the docstring states


def test_each_grid_shows_its_own_heat_map_and_the_caps_cut() -> None:
    heat = base64.b64encode(heatmap_jpeg(Image.new("RGB", (8, 8), "red"))).decode()
    other = base64.b64encode(heatmap_jpeg(Image.new("RGB", (8, 8), "blue"))).decode()
    ex = _example("k1", 0.1)
    ex["web_text"] = "w" * (TEXT_CHARS + 50)
    ex["synthetic_texts"], ex["synthetic_itm"], ex["synthetic_kept"] = ["s"] * 9, [0.1] * 9, [False] * 9
    ex["heatmaps"] = {"web": {"text": "web", "jpeg": heat}, "synthetic": {"text": "syn", "jpeg": other}}
    too_big = _example("k2", 0.2)
    too_big["thumb"] = "A" * (b64_len(THUMB_MAX_BYTES) + 4)  # e.g. a record written by something else
    too_big["heatmaps"] = {"web": {"text": "web", "jpeg": "A" * (b64_len(HEATMAP_MAX_BYTES) + 4)}}
    not_b64 = _example("k3", 0.3)
    not_b64["thumb"] = '"><script>x</script>'
    page = render(_stats(), {"lowest_web": [ex, too_big, not_b64], "synthetic_dropped": [ex]})
    assert "<script>" not in page and 'alt="k3"' not in page
    lowest, dropped = page.split('id="grid-lowest_web"')[1].split('id="grid-synthetic_dropped"')
    assert f"base64,{heat}" in lowest and f"base64,{other}" not in lowest  # the web text's map
    assert f"base64,{other}" in dropped and f"base64,{heat}" not in dropped  # the dropped synthetic text's
    assert "w" * (TEXT_CHARS - 1) + "\u2026" in page and "w" * TEXT_CHARS not in page
    assert "and 5 more synthetic texts" in page and lowest.count("0.100: s<") == SYNTHETIC_SHOWN
    assert "A" * 200 not in page and 'alt="k2"' not in page  # oversized pictures are left out, the example stays
    assert "s / k2 · noise" in lowest
