"""The Python API over tiny random checkpoints saved in the openblip format."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import openblip
from openblip.api import BlipPipeline
from openblip.checkpoint_io import save_pretrained
from openblip.device import resolve_device, resolve_dtype
from openblip.image import ImageError
from openblip.model.blip import Blip
from openblip.tasks.index import IndexKind, RetrievalIndexError
from openblip.tasks.match import match_images_texts
from openblip.tasks.retrieval import SearchOptions
from openblip.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    tok = Tokenizer.default()
    return {
        "full": save_pretrained(tiny_blip("full", 0), tok, root / "full"),
        "vqa": save_pretrained(tiny_blip("vqa", 1), tok, root / "vqa"),
    }


@pytest.fixture(scope="module")
def blip(models) -> BlipPipeline:
    return openblip.load(models["full"], device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(3):
        arr = np.random.default_rng(i).integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
        p = root / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def test_load_returns_a_pipeline(blip, models) -> None:
    assert isinstance(blip, BlipPipeline)
    assert blip.device == torch.device("cpu") and blip.dtype == torch.float32
    assert blip.image_size == 64 and str(models["full"]) in repr(blip)


def test_cpu_kernel_choice_is_made_at_load_and_shown(models) -> None:
    from openblip.backends import cpu

    off = openblip.load(models["full"], device="cpu", cpu_kernels="off")
    assert off.model.cpu_kernels == cpu.OFF and "cpu_kernels='off: torch ops only'" in repr(off)
    if cpu.available() is None:
        on = openblip.load(models["full"], device="cpu", cpu_kernels="on")
        assert on.model.cpu_kernels.enabled and "cpu_kernels='on: small_linear" in repr(on)
    with pytest.raises(ValueError, match="cpu_kernels 'fast' is not one of auto, on, off"):
        openblip.load(models["full"], device="cpu", cpu_kernels="fast")


def test_caption_accepts_paths_bytes_and_pil(blip, images) -> None:
    kw = dict(max_length=10, min_length=5)
    by_path = blip.caption(images, **kw)
    data = Path(images[0]).read_bytes()
    by_bytes = blip.caption(data, **kw)
    by_pil = blip.caption([Image.open(images[0])], **kw)
    assert by_path[0].caption == by_bytes[0].caption == by_pil[0].caption
    assert [r.image for r in by_path] == images
    assert by_bytes[0].image == "<bytes #0>" and by_pil[0].image == "<image #0>"
    assert len({r.caption for r in by_path}) > 1
    one_by_one = blip.caption(images, batch_size=1, **kw)
    assert [r.caption for r in one_by_one] == [r.caption for r in by_path]
    several = blip.caption(images[:1], num_captions=3, max_length=10)
    assert len(several[0].captions) == 3 and several[0].caption == several[0].captions[0].text
    sampled = blip.caption(images[:2], sample=True, seed=5, num_captions=2, max_length=10)
    assert sampled == blip.caption(images[:2], sample=True, seed=5, num_captions=2, max_length=10)
    # seeded samples depend on the image's position in the input, not on the batching: the same
    # tokens; the scores (sums of ~10 log-probabilities of magnitude ~4) only up to the summation
    # order another batch shape gives, ~1e-6 relative in fp32, so 1e-4 absolute on sums near -35
    alone = blip.caption(images[:2], sample=True, seed=5, num_captions=2, max_length=10, batch_size=1)
    assert [[(c.text, c.ids) for c in r.captions] for r in alone] == [
        [(c.text, c.ids) for c in r.captions] for r in sampled
    ]
    assert [[c.score for c in r.captions] for r in alone] == [
        pytest.approx([c.score for c in r.captions], rel=0, abs=1e-4) for r in sampled
    ]


def test_batches_keep_order_across_batch_sizes(blip, images) -> None:
    # The numbers may differ in the last bits between batch shapes (another blocking of the same
    # fp32 sums: ~1e-7 relative per product, a few products deep); the order may not. Both scores
    # are bounded (ITM probability in [0, 1], ITC cosine in [-1, 1]) and can be near zero, so the
    # tolerance is absolute: 1e-5, ~100x the float32 epsilon, well above the 5e-7 seen on AVX-512.
    whole = blip.match(images, ["a dog", "two cats"])
    pairs = blip.match(images, ["a dog", "two cats"], batch_size=2)  # batches of 2 and 1
    assert [(r.image, r.text) for r in pairs] == [(i, t) for i in images for t in ("a dog", "two cats")]
    assert [(r.itm_score, r.itc_score) for r in pairs] == [
        pytest.approx((r.itm_score, r.itc_score), rel=0, abs=1e-5) for r in whole
    ]
    # unit vectors: absolute as well
    torch.testing.assert_close(blip.embed_images(images, batch_size=2), blip.embed_images(images), rtol=0, atol=1e-5)
    one_by_one = blip.classify(images, ["dog", "cat", "car"], batch_size=1)
    together = blip.classify(images, ["dog", "cat", "car"])
    assert [r.image for r in one_by_one] == images
    assert [[s.label for s in r.labels] for r in one_by_one] == [[s.label for s in r.labels] for r in together]
    for call in (
        lambda: blip.caption(images, batch_size=0),
        lambda: blip.match(images, "a dog", batch_size=0),
        lambda: blip.classify(images, ["dog", "cat"], batch_size=0),
        lambda: blip.embed_images(images, batch_size=0),
    ):
        with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
            call()


def test_bad_image_raises_naming_it(blip, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        blip.caption([str(bad)], max_length=8)


def test_match_and_embeddings(blip, images) -> None:
    texts = ["a dog on a beach", "a red car"]
    res = blip.match(images, texts)
    assert [(r.image, r.text) for r in res] == [(i, t) for i in images for t in texts]
    s = match_images_texts(blip.model, blip.tokenizer, blip.pixels(images), texts)
    assert [r.itm_score for r in res] == pytest.approx(s.itm.flatten().tolist(), abs=1e-6)
    assert [r.itc_score for r in res] == pytest.approx(s.itc.flatten().tolist(), abs=1e-6)
    img, txt = blip.embed_images(images, batch_size=2), blip.embed_texts(texts)
    assert img.shape == (3, 256) and txt.shape == (2, 256)
    assert torch.allclose(img @ txt.t(), s.itc, atol=1e-5)
    alone = blip.match(images[0], "a dog on a beach")[0]
    assert alone.itm_score == pytest.approx(res[0].itm_score, abs=1e-6)
    assert alone.itc_score == pytest.approx(res[0].itc_score, abs=1e-6)


def test_classify(blip, images) -> None:
    res = blip.classify(images, ["dog", "cat", "car"], top_k=2)
    assert len(res) == 3 and all(len(r.labels) == 2 for r in res)
    assert all(r.label == r.labels[0].label for r in res)
    reranked = blip.classify(images, ["dog", "cat", "car"], top_k=3, rerank=3)
    assert all(sum(x.probability for x in r.labels) == pytest.approx(1.0, abs=1e-5) for r in reranked)


def test_answer(models, images) -> None:
    vqa = openblip.load(models["vqa"], device="cpu")
    gen = vqa.answer(images, "what is in the picture?", max_length=6)
    assert [r.question for r in gen] == ["what is in the picture?"] * 3 and all(r.answer for r in gen)
    ranked = vqa.answer(images, ["is it a dog?", "what color", "how many"], candidates=["yes", "no", "red"])
    assert all(r.answer in ("yes", "no", "red") for r in ranked)
    with pytest.raises(ValueError, match="empty"):
        vqa.answer(images[:1], "  ")
    with pytest.raises(ValueError, match="2 questions for 3 images"):
        vqa.answer(images, ["a", "b"])


def test_index_and_search(blip, images, tmp_path, models) -> None:
    index = blip.open_index(tmp_path / "idx", IndexKind.IMAGES)
    assert blip.index_images(index, images[:2]) == [0, 1]
    assert blip.index_images(index, images) == [0, 1, 2]  # known images keep their rows
    index = blip.open_index(tmp_path / "idx")
    assert index.identity.source == str(Path(models["full"]).resolve())
    hits = blip.search_images(index, ["a dog"], SearchOptions(k=2, rerank=3))[0]
    assert len(hits) == 2 and hits[0].itm is not None and hits[0].score >= hits[1].score
    texts = blip.open_index(tmp_path / "texts", IndexKind.TEXTS)
    assert blip.index_texts(texts, ["a dog", "a cat", "a dog"]) == [0, 1, 0]
    found = blip.search_texts(texts, images[0], SearchOptions(k=2))[0]
    assert {h.entry.text for h in found} == {"a dog", "a cat"}
    vqa = openblip.load(models["vqa"], device="cpu")
    with pytest.raises(RetrievalIndexError, match="another model"):
        vqa.open_index(tmp_path / "idx")


def test_device_and_dtype(models, images, caplog) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("toaster")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("fp8", torch.device("cpu"))
    with caplog.at_level(logging.WARNING):
        assert resolve_dtype("fp16", torch.device("cpu")) == torch.float32
    assert "fp16 is not supported on the CPU" in caplog.text
    bf16 = openblip.load(models["full"], device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16
    assert bf16.match(images[0], "a dog")[0].itm_score > 0
    assert bf16.caption(images[0], max_length=8)[0].caption


def test_image_inputs_as_bytes_io_are_rejected_clearly(blip) -> None:
    with pytest.raises(TypeError, match="BytesIO"):
        blip.caption([io.BytesIO(b"x")], max_length=8)  # type: ignore[list-item]


def test_one_image_as_memoryview_and_bad_bytes_named_by_position(blip, images) -> None:
    data = Path(images[0]).read_bytes()
    (one,) = blip.caption(memoryview(data), max_length=8)
    assert one.image == "<bytes #0>" and one.caption == blip.caption(images[0], max_length=8)[0].caption
    with pytest.raises(ImageError, match=r"^<bytes #2>: not an image"):
        blip.caption([data, data, b"junk"], max_length=8, batch_size=1)


def test_text_inputs_are_checked_before_any_image_is_read(blip, models, tmp_path) -> None:
    missing = str(tmp_path / "missing.png")  # would be an ImageError if it were read first
    with pytest.raises(ValueError, match=r"text 1 is empty \('!!!' after cleaning\)"):
        blip.match(missing, ["a dog", "!!!"])
    with pytest.raises(TypeError, match="not one str"):
        blip.classify(missing, "dog, cat")
    vqa = openblip.load(models["vqa"], device="cpu")
    with pytest.raises(ValueError, match="question 2 is empty"):  # counted over all images, not per batch
        vqa.answer([missing] * 3, ["what?", "why?", "!!"], batch_size=1)
    with pytest.raises(TypeError, match="not one str"):
        vqa.answer(missing, "what?", candidates="yes")
    texts = blip.open_index(tmp_path / "texts", IndexKind.TEXTS)
    with pytest.raises(ValueError, match=r"text 1 is empty"):
        blip.index_texts(texts, ["a dog", ""])
    assert len(texts) == 0


def test_a_pixel_limit_below_one_is_refused_at_load(models) -> None:
    with pytest.raises(ValueError, match="max_pixels must be >= 1, got 0"):
        openblip.load(models["full"], device="cpu", max_pixels=0)


def test_embed_texts_refuses_a_text_with_nothing_left_as_match_does(blip) -> None:
    """embed_texts("!!!") was the embedding of [CLS] [SEP] alone, which says nothing about the text."""
    with pytest.raises(ValueError, match=r"text 1 is empty \('!!!' after cleaning\)"):
        blip.embed_texts(["a dog", "!!!"])
    with pytest.raises(ValueError, match=r"text 0 is empty \(' '\)"):
        blip.embed_texts(" ", clean=False)
    assert blip.embed_texts("!!!", clean=False).shape == (1, 256)  # uncleaned, it has tokens


def test_index_images_refuses_one_path(blip, images, tmp_path) -> None:
    index = blip.open_index(tmp_path / "idx", IndexKind.IMAGES)
    with pytest.raises(TypeError, match="not one path"):  # was: its characters, "/: is a directory"
        blip.index_images(index, images[0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not one path"):
        blip.index_images(index, Path(images[0]))  # type: ignore[arg-type]
    assert len(index) == 0


def test_open_index_takes_a_kind_by_name(blip, tmp_path) -> None:
    index = blip.open_index(tmp_path / "idx", "images")  # was: AttributeError 'str' has no 'value'
    assert index.kind is IndexKind.IMAGES and blip.open_index(tmp_path / "idx", "images").kind is IndexKind.IMAGES
    with pytest.raises(ValueError, match="an index of images, not texts"):
        blip.open_index(tmp_path / "idx", "texts")
    with pytest.raises(ValueError, match="'pictures' is not a valid IndexKind"):
        blip.open_index(tmp_path / "other", "pictures")


def test_an_input_that_is_no_image_is_a_type_error_naming_its_position(blip, images) -> None:
    """Checked before any image is read; an array gets a hint (was: "load_image expects ...,
    got NoneType" with no position, after the batches before it had run; for one None or int:
    "'NoneType' object is not iterable")."""
    with pytest.raises(TypeError, match=r"images\[1\] is NoneType, expected a path, bytes or PIL\.Image\.Image"):
        blip.caption([images[0], None], max_length=8, batch_size=1)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"images\[0\] is ndarray.*Image\.fromarray"):
        blip.embed_images([np.zeros((8, 8, 3), np.uint8)])  # type: ignore[list-item]
    for one in (None, 3, np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(TypeError, match=r"expected a path, bytes or PIL\.Image\.Image, or a sequence of them"):
            blip.match(one, "a dog")  # type: ignore[arg-type]


def test_texts_that_are_neither_str_nor_a_sequence_are_a_clear_type_error(blip, models, images) -> None:
    """Was: "'NoneType' object is not iterable" / "'int' object is not iterable"."""
    with pytest.raises(TypeError, match="texts is NoneType, expected a str or a sequence of them"):
        blip.match(images[0], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="texts is int, expected a str or a sequence of them"):
        blip.embed_texts(5)  # type: ignore[arg-type]
    vqa = openblip.load(models["vqa"], device="cpu")
    with pytest.raises(TypeError, match="question is int, expected a str or a sequence of them"):
        vqa.answer(images[0], 5)  # type: ignore[arg-type]


def test_explain_returns_maps_with_words_and_renders(blip, models, images) -> None:
    from openblip.tasks.heatmap import render

    results = blip.explain(images[:2], ["A dog.", "red circles"])
    assert [(r.image, r.text) for r in results] == [(i, t) for i in images[:2] for t in ("A dog.", "red circles")]
    first = results[0]
    assert first.map.shape == (4, 4) and first.layer == 0 and [w.word for w in first.words] == ["A", "dog"]
    assert first.itm_score == pytest.approx(blip.match(images[0], "A dog.")[0].itm_score, abs=1e-5)
    pictures = render(Image.open(images[0]), first)
    assert pictures.whole.size == (512, 410) and pictures.words.size == (2 * 192, 154 + 22)
    larger = openblip.load(models["full"], device="cpu", image_size=96)  # patch grid from the input size
    assert larger.explain(images[0], "a dog")[0].map.shape == (6, 6)
    with pytest.raises(ValueError, match="text 1 is empty"):
        blip.explain(["missing.png"], ["a dog", "!!!"])  # checked before any image is read
    with pytest.raises(ValueError, match="layer 5 cannot be explained"):
        blip.explain(images[0], "a dog", layer=5)
