"""The HTML report: self-contained, escaped, worst and best first."""

from __future__ import annotations

import base64
import io

from PIL import Image

from openblip.evaluate.report import MAX_CARDS, Card, Hit, Section, render, thumbnail


def test_thumbnail_is_a_small_jpeg_data_url() -> None:
    url = thumbnail(Image.new("RGB", (640, 320), (200, 10, 10)))
    assert url.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.size == (160, 80) and image.format == "JPEG"


def test_worst_and_best_by_the_metric_and_text_is_escaped() -> None:
    cards = [Card(key=f"k{i}", score=float(i), output=f"caption {i}", references=["<b>ref</b>"]) for i in range(8)]
    page = render("t <x>", ["line & more"], [Section("captions", "CIDEr", cards)])
    assert "<script" not in page and "t &lt;x&gt;" in page and "line &amp; more" in page
    assert "&lt;b&gt;ref&lt;/b&gt;" in page and "<b>ref</b>" not in page
    worst = page[page.index("worst 5 by CIDEr") : page.index("best 5 by CIDEr")]
    best = page[page.index("best 5 by CIDEr") : page.index("every item")]
    assert [f"caption {i}" in worst for i in range(8)] == [True] * 5 + [False] * 3
    assert [f"caption {i}" in best for i in range(8)] == [False] * 3 + [True] * 5
    # lower is better (a rank): the worst are the highest
    ranks = render("r", [], [Section("image -> text", "rank", cards, higher_is_better=False)])
    worst = ranks[ranks.index("worst 5") : ranks.index("best 5")]
    assert "caption 7" in worst and "caption 0" not in worst


def test_hits_are_marked_and_large_sets_are_cut() -> None:
    hits = [Hit("a dog", 1.5, True), Hit("a car", 0.5, False, image="data:image/jpeg;base64,AA==")]
    page = render("r", [], [Section("s", "rank", [Card(key="q", score=1, query="a dog", hits=hits)], False)])
    assert page.count('class="ok"') == 3 and page.count('class="wrong"') == 3  # worst, best, every item
    many = [Card(key=f"k{i}", score=float(i)) for i in range(MAX_CARDS + 3)]  # the best 5 are the last 5
    page = render("r", [], [Section("s", "m", many)])
    assert f"(first {MAX_CARDS} of {MAX_CARDS + 3})" in page
    assert f">k{MAX_CARDS - 1}<" in page and f">k{MAX_CARDS + 2}<" in page  # the last shown, and the best
    assert page.count(f">k{MAX_CARDS}<") == 1  # among the best 5 only: "every item" stops before it
    assert page.count(f">k{MAX_CARDS - 6}<") == 1  # neither worst nor best: shown once, in every item
