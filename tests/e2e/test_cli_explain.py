"""`openblip explain` in a subprocess: records, pictures, per-item errors, usage errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TEXTS = ["A red circle, top-left.", "unbelievably small squares"]


def test_explain_writes_records_and_pictures(cli, models, images, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    res = cli("explain", images[0], images[2], *[a for t in TEXTS for a in ("--text", t)], "--model", models["full"],
              "--out", str(out))  # fmt: skip
    assert res.code == 0, res.stderr
    records = res.records
    assert [(r["image"], r["text"]) for r in records] == [(i, t) for i in (images[0], images[2]) for t in TEXTS]
    assert [w["word"] for w in records[0]["words"]] == ["A", "red", "circle", "top-left"]
    assert [w["word"] for w in records[1]["words"]] == ["unbelievably", "small", "squares"]
    for r in records:
        width, height = Image.open(r["image"]).size
        assert 0 < r["itm_score"] < 1
        assert sum(w["mass"] for w in r["words"]) == pytest.approx(1.0, abs=1e-4)
        for w in r["words"]:
            x, y = w["peak"]
            assert 0 <= x < width and 0 <= y < height
        whole, strip = Image.open(r["heatmap"]), Image.open(r["words_heatmap"])
        assert Path(r["heatmap"]).parent == out and whole.format == strip.format == "PNG"
        assert max(whole.size) == 512 and whole.size[0] / whole.size[1] == pytest.approx(width / height, rel=0.01)
        assert strip.size[0] == len(r["words"]) * round(192 * width / max(width, height))
        for picture in (whole, strip):
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
            assert pixels.std() > 20, "not blank"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{k:04d}_{Path(i).stem}_t{j}{s}.png" for k, i in enumerate((images[0], images[2])) for j in (0, 1)
        for s in ("", "_words")
    )  # fmt: skip


def test_bad_images_and_texts_get_error_records(cli, models, bad_dir: Path) -> None:
    res = cli("explain", str(bad_dir / "01_good.png"), str(bad_dir / "03_empty.jpg"), "--text", "a dog",
              "--text", "!!!", "--model", models["full"])  # fmt: skip
    assert res.code == 1, res.stderr
    records = res.records
    assert len(records) == 4
    assert "words" in records[0] and "text 1 is empty" in records[1]["error"]
    assert all("03_empty.jpg" in r["error"] for r in records[2:])


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("full", ["--layer", "1"], "layer 1 cannot be explained: the text encoder has 2 layers"),
        ("vqa", [], "ITC/ITM heads"),
    ],
)
def test_usage_errors(cli, models, images, model: str, extra: list[str], message: str) -> None:
    res = cli("explain", images[0], "--text", "a dog", "--model", models[model], *extra)
    assert res.code == 2 and message in res.stderr and res.stdout == ""
