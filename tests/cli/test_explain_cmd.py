from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from openblip.cli.common import Item
from openblip.cli.explain_cmd import _record, _stem
from openblip.tasks.explain import Explanation, WordMap


def _explained() -> Explanation:
    heat = np.zeros((3, 3), np.float32)
    heat[0, 2] = 1.0
    return Explanation("a red star", 0.9, heat, (WordMap("red", heat, (50, 10), 1.0),), 0)


def test_record_fields_and_pictures(tmp_path: Path) -> None:
    item = Item("star.png", Image.new("RGB", (60, 30), "grey"))
    record = _record(item, "a red star", _explained(), tmp_path, "0000_star_t0")
    assert record["words"] == [{"word": "red", "peak": [50, 10], "mass": 1.0}]
    assert Image.open(record["heatmap"]).size == (512, 256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000_star_t0.png", "0000_star_t0_words.png"]


def test_a_picture_that_cannot_be_written_is_the_pairs_error_record(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    item = Item("star.png", Image.new("RGB", (60, 30), "grey"))
    record = _record(item, "a red star", _explained(), not_a_dir, "0000_star_t0")
    assert set(record) == {"image", "text", "error"} and "cannot write its heat map" in record["error"]
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no partial file left behind


def test_stem_is_safe_for_file_names() -> None:
    assert _stem("photos/a b:c.jpg") == "a_b_c"
    assert _stem("-") == "stdin"
