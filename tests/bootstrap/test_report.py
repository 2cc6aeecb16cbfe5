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

from openblip.bootstrap.report import GRID_SIZE, histogram_svg, merge_examples, render
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
    page = render(stats, examples, heatmap=lambda ex: f"explain/{ex['key']}.html")
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    html_path = tmp_path / "report.html"
    html_path.write_text(page)
    shot = browser.render(html_path, tmp_path / "shot.png", width=1200, height=1400)
    dom = shot.dom
    assert 'data-count="samples in">1234<' in dom and 'data-count="web texts kept">800<' in dom
    assert 'id="precision">0.730<' in dom and "unreadable tar" in dom
    assert "text &lt;b&gt;k3&lt;/b&gt;" in dom  # texts escaped
    assert dom.count("data:image/jpeg;base64,") == 6 and dom.count('href="explain/') == 6
    pixels = np.asarray(Image.open(shot.screenshot).convert("RGB")).astype(int)
    assert pixels.std() > 10  # not a blank page
    # the thumbnails were decoded and painted: the random-noise JPEGs give many distinct colours
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_a_dropped_example_opens_its_heat_map(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photo = Image.open(io.BytesIO(jpeg_bytes(3, size=48))).convert("RGB")
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[1, 2] = 1.0
    png = base64.b64encode(heatmap.png(heatmap.overlay(photo, heat, longest=192))).decode()
    dropped = _example("k4", 0.1)  # web text dropped
    dropped["heatmaps"] = {"web": {"text": dropped["web_text"], "png": png}}
    page = render(_stats(), {"lowest_web": [dropped, _example("k5", 0.9)]})
    assert page.count('<details class="hm"') == 1 and page.count(f"base64,{png}") == 1
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
    assert got.group(1) == "192" and float(got.group(2)) == 192.0 and got.group(3) == "1"
    assert "heat map: web text" in dom
