"""The report's Grad-CAM heat maps (bootstrap/heatmaps.py), drawn per shard at commit and stored
with the examples in the done records."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from openblip.api import load
from openblip.bootstrap import BootstrapConfig, bootstrap
from openblip.bootstrap.heatmaps import explainer
from openblip.bootstrap.pictures import HEATMAP_MAX_BYTES, HEATMAP_SIZE, heatmap_jpeg
from openblip.bootstrap.report import GRID_HEATMAP
from openblip.data.webdataset import iter_shards
from openblip.image import load_image
from openblip.tasks.explain import explain_loaded
from openblip.tasks.heatmap import overlay


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str], web_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("heatmaps") / "out"
    cfg = BootstrapConfig(
        out=str(out), filter=models["full"], captioner=models["full"], device="cpu", workers=0, batch_size=4
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (conftest), so that the maps below are drawn alike
    try:
        assert bootstrap(cfg, [str(web_dir)]).exit_code == 0
    finally:
        torch.set_num_threads(threads)
    return out


def examples(out: Path) -> list[dict[str, Any]]:
    records = [json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))]
    return [ex for r in records for grid in r["examples"].values() for ex in grid]


def test_stored_heatmaps_are_the_filters_maps_of_the_pair(run: Path, models: dict[str, str], web_dir: Path) -> None:
    filt = load(models["full"], device="cpu")
    images = {s.key: s.image_bytes for s in iter_shards(web_dir)}
    seen = set()
    for ex in examples(run):
        assert "_image" not in ex  # the full image never reaches the record
        for which, hm in ex["heatmaps"].items():
            if which == "web":
                assert hm["text"] == ex["web_text"]
            else:  # the first synthetic text the filter dropped
                first = next(i for i, k in enumerate(ex["synthetic_kept"]) if not k)
                assert hm["text"] == ex["synthetic_texts"][first]
            if (ex["key"], which) in seen:
                continue
            seen.add((ex["key"], which))
            photo = load_image(images[ex["key"]])
            ((explained,),) = explain_loaded(filt.model, filt.tokenizer, [photo], [hm["text"]])
            want = heatmap_jpeg(overlay(photo, explained.map, HEATMAP_SIZE))
            assert base64.b64decode(hm["jpeg"]) == want, (ex["key"], which)
            assert max(Image.open(io.BytesIO(want)).size) == HEATMAP_SIZE and len(want) <= HEATMAP_MAX_BYTES
    assert {w for _, w in seen} == {"web", "synthetic"}  # both kinds were drawn and checked


def test_report_opens_the_heatmaps(run: Path) -> None:
    """12 samples: every example is shown, each with the heat map its grid is about."""
    page = (run / "report.html").read_text()
    records = [json.loads(p.read_text()) for p in sorted((run / "done").glob("*.json"))]
    want = {
        (grid, ex["key"], ex["heatmaps"][which]["jpeg"])
        for r in records
        for grid, which in GRID_HEATMAP.items()
        for ex in r["examples"][grid]
        if which in ex["heatmaps"]
    }
    assert want and {w for _, _, w in want} == {hm["jpeg"] for ex in examples(run) for hm in ex["heatmaps"].values()}
    for grid, key, jpeg in want:
        section = page.split(f'id="grid-{grid}"')[1].split("<h2>")[0]
        card = next(c for c in section.split('<div class="ex">') if f'alt="{key}"' in c)
        assert f'base64,{jpeg}"' in card, (grid, key)
    assert page.count('<details class="hm"') == len(want)


def test_no_heatmaps_without_itm_heads(models: dict[str, str]) -> None:
    assert explainer(load(models["caption"], device="cpu"), 10**6) is None  # captioning only: no ITM head
    assert explainer(load(models["retrieval"], device="cpu"), 10**6) is not None


def test_the_runs_report_renders_in_a_browser(run: Path, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The report a run wrote, in headless Chromium: its counts, and every thumbnail and heat map
    decoded at its size (the page has no script; the test adds one to a copy, which opens the
    heat maps and reports what the images are)."""
    stats = json.loads((run / "stats.json").read_text())
    script = (
        "<script>for(const d of document.querySelectorAll('details.hm'))d.open=true;"
        "addEventListener('load',()=>{const im=[...document.images];"
        "document.body.dataset.sizes=im.map(i=>(i.complete?i.naturalWidth:0)+'/'+i.closest('details')?.dataset.heatmap)"
        ".join(' ');});</script>"
    )
    probe = tmp_path / "probe.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", script + "</body>"))
    shot = browser.render(probe, tmp_path / "shot.png", width=1200, height=1400)
    assert f'data-count="samples in">{stats["samples"]}<' in shot.dom
    assert f'data-count="web texts kept">{stats["web"]["kept"]}<' in shot.dom
    got = re.search(r'data-sizes="([^"]*)"', shot.dom)
    assert got, shot.dom[:500]
    sizes = [item.split("/") for item in got.group(1).split()]
    thumbs = [int(w) for w, which in sizes if which == "undefined"]
    maps = [int(w) for w, which in sizes if which != "undefined"]
    assert thumbs and all(w == 64 for w in thumbs)  # the 64 px scenes, never scaled up
    assert maps and all(w == HEATMAP_SIZE for w in maps)
    assert len(maps) == (run / "report.html").read_text().count('<details class="hm"')
    pixels = np.asarray(Image.open(shot.screenshot).convert("RGB")).astype(int)
    assert pixels.std() > 10  # not a blank page
