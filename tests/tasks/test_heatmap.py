from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from openblip.tasks.explain import WordMap, explain_loaded
from openblip.tasks.heatmap import data_url, display_size, heatmap_png, jet, overlay, render, upsample, word_strip


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    arr = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)  # 90 wide, 60 high
    return Image.fromarray(arr)


def _corner_map() -> np.ndarray:
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0  # top-left patch
    return heat


def test_jet_runs_blue_to_red() -> None:
    np.testing.assert_allclose(jet(np.array([0.0, 0.5, 1.0])), [[0, 0, 0.5], [0.5, 1, 0.5], [0.5, 0, 0]], atol=1e-6)


def test_upsample_is_scaled_to_one_and_keeps_where_the_heat_is() -> None:
    big = upsample(_corner_map(), (80, 40))
    assert big.shape == (40, 80) and big.max() == pytest.approx(1.0) and big.min() >= 0
    assert big[:10, :20].mean() > 5 * big[20:, 40:].mean()
    assert not upsample(np.zeros((4, 4), np.float32), (8, 8)).any()


def test_overlay_colours_the_hot_corner_and_leaves_cold_parts(photo) -> None:
    out = overlay(photo, _corner_map(), longest=180)
    assert out.size == (180, 120) == display_size(photo.size, 180)
    shown = np.asarray(out, dtype=np.int32)
    plain = np.asarray(photo.resize((180, 120), Image.Resampling.BICUBIC), dtype=np.int32)
    assert np.abs(shown[:15, :20] - plain[:15, :20]).mean() > 40  # red over the top-left corner
    assert np.abs(shown[80:, 120:] - plain[80:, 120:]).mean() < 3  # the far corner is the photo
    assert np.array_equal(np.asarray(overlay(photo, np.zeros((4, 4)), 180)), plain)  # nothing to show


def test_word_strip_has_a_labelled_tile_per_word(photo) -> None:
    words = [WordMap(f"w{i}", _corner_map(), (5, 5), 0.125) for i in range(8)]
    strip = word_strip(photo, words, tile=60, per_row=6)
    assert strip.size == (6 * 60, 2 * (40 + 22))
    labels = np.asarray(strip.convert("L"))[40:62, :60]
    assert labels.min() < 100, "the label is drawn"
    with pytest.raises(ValueError, match="no words"):
        word_strip(photo, [])


def test_word_tiles_share_one_colour_scale(photo) -> None:
    """A word whose map is a millionth of another's is drawn cold, not as hot as the other."""
    words = [WordMap("red", _corner_map(), (5, 5), 1.0), WordMap("a", _corner_map() * 1e-6, (5, 5), 0.0)]
    strip = np.asarray(word_strip(photo, words, tile=60), dtype=np.int32)
    plain = np.asarray(photo.resize((60, 40), Image.Resampling.BICUBIC), dtype=np.int32)
    assert np.abs(strip[:10, :15] - plain[:10, :15]).mean() > 40  # "red": its corner is hot
    assert np.abs(strip[:40, 60:120] - plain).max() <= 2  # "a": the photo


def test_heatmap_png_and_data_url(full_model, tokenizer, photo) -> None:
    """The one-call picture for reports and web pages: a PNG of the photo with the map over it."""
    png = heatmap_png(full_model, tokenizer, photo, "a red circle", longest=150)
    shown = Image.open(io.BytesIO(png))
    assert shown.format == "PNG" and shown.size == (150, 100)
    assert data_url(png).startswith("data:image/png;base64,iVBOR")
    (explained,) = explain_loaded(full_model, tokenizer, [photo], ["a red circle"])[0]
    pictures = render(photo, explained)
    assert pictures.whole.size == (512, 341) and pictures.words.size[0] == 3 * 192
