"""Evaluation items from a split: malformed metadata is a clear error naming the item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from openblip.evaluate.harness import load_eval_items


def _split(tmp_path: Path, *rows: dict[str, object]) -> Path:
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    path = tmp_path / "split.jsonl"
    path.write_text("".join(json.dumps({"image": "a.png", "caption": "a red square", **r}) + "\n" for r in rows))
    return path


def test_questions_and_references_are_read(tmp_path: Path) -> None:
    rows = [
        {"key": "x", "qa": [{"question": "what colour?", "answer": "red"}]},
        {"question": "is it red?", "answer": "yes"},
    ]
    items = load_eval_items(_split(tmp_path, *rows))
    assert items[0].key == "x" and items[0].questions == [("what colour?", ["red"])]
    assert items[1].questions == [("is it red?", ["yes"])] and items[1].references == ["a red square"]


@pytest.mark.parametrize(
    "row",
    [
        {"qa": [{"q": "what colour?"}]},
        {"qa": "what colour?"},
        {"qa": [3]},
        {"scene": {"objects": []}},
    ],
)
def test_malformed_metadata_names_the_item(tmp_path: Path, row: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="'bad'"):
        load_eval_items(_split(tmp_path, {"key": "good"}, {"key": "bad", **row}))
