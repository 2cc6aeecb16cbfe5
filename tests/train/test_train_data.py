"""The training stream: deterministic per (seed, epoch), split over ranks like the single-process
global batch, resumable at a sample offset, independent of the number of loader workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openblip.data.sample import Sample
from openblip.tokenizer import Tokenizer
from openblip.train.batch import ImageTextBatch, VqaBatch
from openblip.train.config import DataSection
from openblip.train.data import BatchBuilder, EpochBatches, TextRule, epoch_loader, epoch_samples, image_id, vqa_pair


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.default()


def _batches(
    source: Path,
    tok: Tokenizer,
    *,
    batch: int,
    rank: int = 0,
    world: int = 1,
    epoch: int = 0,
    offset: int = 0,
    n: int = 2,
    workers: int = 0,
    rule: TextRule | None = None,
) -> list[ImageTextBatch]:
    cfg = DataSection(batch_size=batch, augment=True, min_scale=0.5, random_reference=True, max_length=20)
    builder = BatchBuilder(cfg, 32, tok, rule or TextRule(), seed=1)
    return list(epoch_loader(EpochBatches(str(source), builder, epoch, offset, n, rank, world), workers))  # type: ignore[arg-type]


def _equal(a: ImageTextBatch, b: ImageTextBatch) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("pixels", "ids", "mask", "image_ids"))


def test_same_epoch_same_batches_other_epoch_other_order(tiny_scenes: Path, tokenizer: Tokenizer) -> None:
    train = tiny_scenes / "train"
    a = _batches(train, tokenizer, batch=4)
    b = _batches(train, tokenizer, batch=4)
    c = _batches(train, tokenizer, batch=4, epoch=1)
    assert len(a) == 2 and all(_equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0].image_ids, c[0].image_ids)
    keys = [s.key for s in epoch_samples(str(train), seed=1, epoch=0)]
    assert sorted(keys) == sorted({s.key for s in epoch_samples(str(train), seed=1, epoch=1)}) and len(keys) == 16


def test_ranks_split_the_global_batch(tiny_scenes: Path, tokenizer: Tokenizer) -> None:
    train = tiny_scenes / "train"
    whole = _batches(train, tokenizer, batch=4, n=2)
    r0 = _batches(train, tokenizer, batch=2, rank=0, world=2, n=2)
    r1 = _batches(train, tokenizer, batch=2, rank=1, world=2, n=2)
    for step in range(2):
        assert torch.equal(torch.cat([r0[step].pixels, r1[step].pixels]), whole[step].pixels)
        assert torch.equal(torch.cat([r0[step].image_ids, r1[step].image_ids]), whole[step].image_ids)


def test_resume_offset_replays_the_rest_of_the_epoch(tiny_scenes: Path, tokenizer: Tokenizer) -> None:
    train = tiny_scenes / "train"
    whole = _batches(train, tokenizer, batch=4, n=4)
    tail = _batches(train, tokenizer, batch=4, offset=8, n=2)
    assert _equal(tail[0], whole[2]) and _equal(tail[1], whole[3])


def test_workers_do_not_change_the_stream(tiny_scenes: Path, tokenizer: Tokenizer) -> None:
    train = tiny_scenes / "train"
    a = _batches(train, tokenizer, batch=4, n=4)
    b = _batches(train, tokenizer, batch=4, n=4, workers=2)
    assert len(b) == 4 and all(_equal(x, y) for x, y in zip(a, b))


def test_caption_prompt_is_prepended(tiny_scenes: Path, tokenizer: Tokenizer) -> None:
    batch = _batches(tiny_scenes / "train", tokenizer, batch=2, n=1, rule=TextRule(prompt="a picture of "))[0]
    assert batch.ids[:, 1:4].tolist() == [[1037, 3861, 1997]] * 2


def test_vqa_batches_weight_each_distinct_answer(tokenizer: Tokenizer) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buf, format="PNG")
    samples = [
        Sample("a", buf.getvalue(), None, {"question": "What colour?", "answers": ["red", "red", "blue", "red"]}),
        Sample("b", buf.getvalue(), None, {"qa": [{"question": "is it red?", "answer": "yes", "type": "exists"}]}),
    ]
    cfg = DataSection(batch_size=2, augment=False)
    batch = BatchBuilder(cfg, 32, tokenizer, TextRule(vqa=True), seed=0).build(samples, 0, 0)
    assert isinstance(batch, VqaBatch)
    assert batch.answer_question.tolist() == [0, 0, 1]
    assert batch.answer_weights.tolist() == pytest.approx([0.75, 0.25, 1.0])
    assert tokenizer.decode(batch.answer_ids[1]) == "blue"
    with pytest.raises(ValueError, match="'c' has no question"):
        vqa_pair(Sample("c", b"x", "t", {}), __import__("random").Random(0))


def test_image_id_is_stable_and_prefers_metadata() -> None:
    s = Sample("000012", b"", None, {})
    assert image_id(s) == image_id(Sample("000012", b"", "other", {}))
    assert image_id(s) != image_id(Sample("000013", b"", None, {}))
    assert image_id(Sample("k", b"", None, {"image_id": 77})) == 77


def _png(colour: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_unusable_samples_are_logged_and_replaced(tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture) -> None:
    good = [Sample(k, _png(c), f"a {c} square", {}) for k, c in (("red", "red"), ("blue", "blue"))]
    bad = [
        Sample("truncated", _png("green")[:60], "a green square", {}),
        Sample("garbage", b"not an image", "text", {}),
        Sample("no_caption", _png("white"), None, {}),
    ]
    builder = BatchBuilder(DataSection(batch_size=5, augment=False), 32, tokenizer, TextRule(), seed=0)
    with caplog.at_level("WARNING"):
        batch = builder.build([good[0], *bad, good[1]], 0, 0)
    assert isinstance(batch, ImageTextBatch) and batch.pixels.shape[0] == 5
    # each bad sample's place is taken by the next usable one: blue
    assert batch.image_ids.tolist() == [image_id(good[0])] + [image_id(good[1])] * 4
    assert torch.equal(batch.pixels[1], batch.pixels[4]) and torch.equal(batch.ids[1], batch.ids[4])
    for key in ("truncated", "garbage", "no_caption"):
        assert f"skipping training sample '{key}'" in caplog.text
    vqa = BatchBuilder(DataSection(batch_size=2, augment=False), 32, tokenizer, TextRule(vqa=True), seed=0)
    qa = Sample("q", _png("red"), None, {"question": "what colour?", "answer": "red"})
    assert vqa.build([Sample("no_question", _png("red"), "t", {}), qa], 0, 0).pixels.shape[0] == 2
    with pytest.raises(ValueError, match=r"no usable sample.*'garbage'.*'no_caption'"):
        builder.build(bad, 0, 0)
