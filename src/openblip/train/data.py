"""Training data: a deterministic, resumable stream of batches from shards or a jsonl list.

The global order of an epoch is a pure function of (seed, epoch): the shard order is permuted and
the samples pass through a seeded shuffle buffer; every rank reads that same stream and keeps its
slice of each global batch (rank r: samples [r*B, (r+1)*B) of every B*world chunk), so the
concatenation of the ranks' batches is exactly the single-process global batch. Each sample's
augmentation draws from `random.Random(f"{seed}/{epoch}/{index}")`, so resuming at a global sample
offset replays the same pixels, and DataLoader workers (each building whole batches, taken in
turn) never change the result. The last incomplete global batch of an epoch is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from openblip.data.formats import iter_samples, iter_shards, list_shards
from openblip.data.sample import Sample
from openblip.image import load_image, preprocess, train_transform
from openblip.text_cleaning import pre_caption, pre_question
from openblip.tokenizer import Tokenizer
from openblip.train.batch import Batch, ImageTextBatch, VqaBatch
from openblip.train.config import DataSection

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 10000
VQA_QUESTION_LENGTH = 35  # blip_vqa.py: question padding='longest', max_length=35


@dataclass(frozen=True)
class TextRule:
    """How captions become token ids for an objective."""

    prompt: str = ""  # prepended after cleaning (captioning: "a picture of ")
    vqa: bool = False  # build VqaBatch from question/answers instead of captions


def image_id(sample: Sample) -> int:
    """A stable integer id of the sample's image: meta['image_id'] if given, else a key hash."""
    given = sample.meta.get("image_id")
    if isinstance(given, int):
        return given
    digest = hashlib.blake2b(sample.key.encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def _is_shards(path: Path) -> bool:
    return (path.is_dir() and any(path.glob("*.tar"))) or (path.is_file() and path.suffix == ".tar")


def epoch_samples(source: str, seed: int, epoch: int, shuffle_buffer: int = SHUFFLE_BUFFER) -> Iterator[Sample]:
    """The epoch's global sample order (shards permuted, then a seeded shuffle buffer)."""
    rng = random.Random(f"{seed}/shuffle/{epoch}")
    path = Path(source)
    samples: Iterator[Sample]
    if _is_shards(path):
        shards = list_shards(path)
        rng.shuffle(shards)
        samples = iter_shards(shards)
    else:
        samples = iter_samples(path)
    buffer: list[Sample] = []
    for s in samples:
        if len(buffer) < shuffle_buffer:
            buffer.append(s)
            continue
        j = rng.randrange(len(buffer))
        yield buffer[j]
        buffer[j] = s
    rng.shuffle(buffer)
    yield from buffer


def count_samples(source: str) -> int:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"training data not found: {path}")
    return sum(1 for _ in iter_samples(path))


TrainText = str | tuple[str, list[str]]  # a caption, or a (question, answers) pair


class BatchBuilder:
    """Decodes, augments and tokenizes the samples of one local batch."""

    def __init__(self, cfg: DataSection, image_size: int, tokenizer: Tokenizer, rule: TextRule, seed: int) -> None:
        self.cfg = cfg
        self.image_size = image_size
        self.tokenizer = tokenizer
        self.rule = rule
        self.seed = seed

    def pixels(self, sample: Sample, rng: random.Random) -> torch.Tensor:
        image = load_image(sample.image_bytes, name=sample.key)
        if self.cfg.augment:
            return train_transform(image, self.image_size, min_scale=self.cfg.min_scale, rng=rng, hflip=self.cfg.hflip)
        return preprocess([image], self.image_size)[0]

    def caption(self, sample: Sample, rng: random.Random) -> str:
        refs = sample.meta.get("references")
        if self.cfg.random_reference and isinstance(refs, list) and refs:
            text = str(refs[rng.randrange(len(refs))])
        elif sample.text is not None:
            text = sample.text
        else:
            raise ValueError(f"sample {sample.key!r} has no caption")
        return self.rule.prompt + pre_caption(text, self.cfg.max_words)

    def build(self, samples: list[Sample], epoch: int, first_index: int) -> Batch:
        """The batch of `samples`. A sample that cannot be used (undecodable or oversized image,
        no caption or question) is logged by key and its place taken by the next usable sample of
        the batch, so the run goes on with the batch size every rank and the queues expect."""
        rngs = [random.Random(f"{self.seed}/{epoch}/{first_index + i}") for i in range(len(samples))]
        made = [self._item(s, r) for s, r in zip(samples, rngs)]
        good = {i: m for i, m in enumerate(made) if not isinstance(m, str)}
        if not good:
            why = "; ".join(f"{s.key!r}: {m}" for s, m in zip(samples, made))
            raise ValueError(f"no usable sample in a training batch ({why})")
        use = [next((g for g in good if g >= i), min(good)) for i in range(len(samples))]
        for i, m in enumerate(made):
            if isinstance(m, str):
                stand_in = samples[use[i]].key
                log.warning("skipping training sample %r (%s); %r takes its place", samples[i].key, m, stand_in)
        items = [good[j] for j in use]
        pixels = torch.stack([p for p, _ in items])
        if self.rule.vqa:
            return self._vqa(pixels, [t for _, t in items if isinstance(t, tuple)])
        texts = [t for _, t in items if isinstance(t, str)]
        enc = self.tokenizer.encode(texts, self.cfg.max_length, pad_to_max=self.cfg.pad_to_max)
        ids = torch.tensor([image_id(samples[j]) for j in use], dtype=torch.long)
        return ImageTextBatch(pixels=pixels, ids=enc.ids, mask=enc.mask, image_ids=ids)

    def _item(self, sample: Sample, rng: random.Random) -> tuple[torch.Tensor, TrainText] | str:
        """(pixels, caption or (question, answers)) of a sample, or why it cannot be used."""
        try:
            pixels = self.pixels(sample, rng)
            return pixels, vqa_pair(sample, rng) if self.rule.vqa else self.caption(sample, rng)
        except ValueError as e:  # ImageError included
            return str(e)

    def _vqa(self, pixels: torch.Tensor, pairs: list[tuple[str, list[str]]]) -> VqaBatch:
        questions: list[str] = []
        answers: list[str] = []
        weights: list[float] = []
        owner: list[int] = []
        for i, (question, given) in enumerate(pairs):
            questions.append(pre_question(question))
            # Each distinct answer weighted by its share of the annotators (vqa_dataset.py).
            for answer, count in Counter(given).items():
                answers.append(answer)
                weights.append(count / len(given))
                owner.append(i)
        q = self.tokenizer.encode(questions, VQA_QUESTION_LENGTH)
        a = self.tokenizer.encode(answers)
        return VqaBatch(
            pixels=pixels,
            question_ids=q.ids,
            question_mask=q.mask,
            answer_ids=a.ids,
            answer_mask=a.mask,
            answer_weights=torch.tensor(weights),
            answer_question=torch.tensor(owner, dtype=torch.long),
        )


def vqa_pair(sample: Sample, rng: random.Random) -> tuple[str, list[str]]:
    """(question, answers) of a sample: meta {question, answers | answer}, or one of meta['qa']
    (the synthetic scenes' question list), chosen with the sample's rng."""
    meta: dict[str, Any] = sample.meta
    if "question" in meta:
        answers = meta.get("answers", [meta["answer"]] if "answer" in meta else None)
        if not isinstance(answers, list) or not answers:
            raise ValueError(f"sample {sample.key!r}: a question needs 'answers' (a non-empty list) or 'answer'")
        return str(meta["question"]), [str(a) for a in answers]
    qa = meta.get("qa")
    if isinstance(qa, list) and qa:
        item = qa[rng.randrange(len(qa))]
        return str(item["question"]), [str(item["answer"])]
    raise ValueError(f"sample {sample.key!r} has no question ('question' or 'qa' in its metadata)")


class EpochBatches(IterableDataset[Batch]):
    """This rank's batches of one epoch, from global sample `offset` on (a multiple of the global
    batch). With DataLoader workers, worker w builds batches w, w+W, ...; the loader takes them in
    turn, so the order is the same for any number of workers."""

    def __init__(
        self,
        source: str,
        builder: BatchBuilder,
        epoch: int,
        offset: int,
        batches: int,
        rank: int,
        world_size: int,
    ) -> None:
        super().__init__()
        self.source = source
        self.builder = builder
        self.epoch = epoch
        self.offset = offset
        self.batches = batches
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        b = self.builder.cfg.batch_size
        g = b * self.world_size
        first = self.offset // g
        stream = epoch_samples(self.source, self.builder.seed, self.epoch)
        chunk: list[Sample] = []
        for index, sample in enumerate(stream):
            batch_no = index // g
            if batch_no >= first + self.batches:
                break
            mine = batch_no >= first and (batch_no - first) % workers == worker
            if mine and self.rank * b <= index % g < (self.rank + 1) * b:
                chunk.append(sample)
                if len(chunk) == b:
                    yield self.builder.build(chunk, self.epoch, batch_no * g + self.rank * b)
                    chunk = []


def epoch_loader(dataset: EpochBatches, num_workers: int) -> DataLoader[Batch]:
    # A private generator: the loader must not draw from the global RNG (that would shift the
    # dropout stream depending on where an epoch's loader was created, e.g. after a resume).
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, generator=torch.Generator().manual_seed(0))
