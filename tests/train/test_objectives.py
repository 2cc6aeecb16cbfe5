"""The objectives on a tiny model: each loss recomputed independently from the model's stages."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from openblip.config import preset
from openblip.model.blip import Blip
from openblip.model.text import lm_loss
from openblip.tokenizer import Tokenizer
from openblip.train.batch import ImageTextBatch, VqaBatch
from openblip.train.build import prompt_length
from openblip.train.momentum import FeatureQueue, MomentumEncoders
from openblip.train.objectives import (
    CaptionObjective,
    PretrainObjective,
    RetrievalObjective,
    StepInfo,
    VqaObjective,
    alpha_at,
)


def _batch(b: int = 4, length: int = 7, seed: int = 0, ids: list[int] | None = None) -> ImageTextBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1000, 3000, (b, length), generator=g)
    tokens[:, 0] = 101
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 5:] = 0
    tokens[1, 5:] = 0
    image_ids = torch.tensor(ids if ids is not None else list(range(b)))
    return ImageTextBatch(torch.randn(b, 3, 64, 64, generator=g), tokens, mask, image_ids)


def _model(layout: str) -> Blip:
    torch.manual_seed(0)
    return Blip(preset("tiny", layout))


def _contrastive(cls: type, layout: str, queue: int = 8, b: int = 4) -> PretrainObjective:
    return cls(
        _model(layout),
        queue_size=queue,
        momentum=0.995,
        alpha=0.4,
        alpha_ramp_epochs=2.0,
        negatives_seed=0,
        global_batch=b,
    )


def test_alpha_ramp() -> None:
    assert alpha_at(0.4, 2.0, 0.0) == 0.0
    assert alpha_at(0.4, 2.0, 1.0) == pytest.approx(0.2)
    assert alpha_at(0.4, 2.0, 5.0) == pytest.approx(0.4)
    assert alpha_at(0.4, 0.0, 0.0) == 0.4


def test_momentum_update_is_the_ema() -> None:
    model = _model("pretrain")
    mom = MomentumEncoders(model, 0.9)
    assert all(not p.requires_grad for p in mom.parameters())
    before = mom.vision_proj.weight.clone()
    with torch.no_grad():
        model.vision_proj.weight.add_(1.0)
    mom.update(model)
    expected = 0.9 * before + 0.1 * model.vision_proj.weight
    assert torch.allclose(mom.vision_proj.weight, expected, atol=1e-7)
    # momentum modules are copies, not the model's own
    assert mom.text_encoder.embeddings.word.weight is not model.text_encoder.embeddings.word.weight  # type: ignore[union-attr]


def test_queue_fills_in_order_and_wraps() -> None:
    q = FeatureQueue(6, 2)
    for step in range(4):
        feats = torch.full((2, 2), float(step))
        q.enqueue(feats, -feats, torch.tensor([step, step]))
    # 4 batches of 2 into 6 rows: rows 0-1 were overwritten by step 3
    assert q.ids.tolist() == [3, 3, 1, 1, 2, 2]
    assert q.image[:, 0].tolist() == [3, 3, 1, 1, 2, 2]
    assert int(q.ptr) == 2
    with pytest.raises(ValueError, match="multiple of the global batch 4"):
        q.check_batch(4)


def test_queue_size_not_multiple_of_global_batch_is_rejected() -> None:
    with pytest.raises(ValueError, match="queue_size 10 must be a multiple of the global batch 4"):
        _contrastive(PretrainObjective, "pretrain", queue=10)


def _expected_itc(model: Blip, batch: ImageTextBatch, queue: FeatureQueue, alpha: float, id_aware: bool) -> float:
    """ITC of the first step, where the momentum encoders still equal the model (after an EMA of
    identical weights): momentum features = the model's own features."""
    with torch.no_grad():
        tokens = model.encode_image(batch.pixels)
        img = model.image_embed(tokens)
        txt = model.text_embed(batch.ids, batch.mask)
        temp = float(model.temp)  # type: ignore[arg-type]
    b = img.shape[0]
    text_cols = torch.cat([txt, queue.text])
    image_cols = torch.cat([img, queue.image])
    if id_aware:
        cols = torch.cat([batch.image_ids, queue.ids])
        pos = (batch.image_ids[:, None] == cols[None, :]).float()
        pos = pos / pos.sum(1, keepdim=True)
    else:
        pos = torch.zeros(b, b + queue.size)
        pos[range(b), range(b)] = 1.0
    total = 0.0
    for feats, cols_ in ((img, text_cols), (txt, image_cols)):
        sim = feats @ cols_.t() / temp
        log_p = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        targets = alpha * log_p.exp() + (1 - alpha) * pos
        total += float(-(targets * log_p).sum(1).mean()) / 2
    return total


@pytest.mark.parametrize(
    ("cls", "layout", "id_aware"), [(PretrainObjective, "pretrain", False), (RetrievalObjective, "retrieval", True)]
)
def test_itc_matches_independent_computation(cls: type, layout: str, id_aware: bool) -> None:
    obj = _contrastive(cls, layout)
    batch = _batch(ids=[5, 6, 5, 7] if id_aware else None)
    queue = copy.deepcopy(obj.queue)
    expected = _expected_itc(obj.model, batch, queue, alpha_at(0.4, 2.0, 1.0), id_aware)
    out = obj(batch, StepInfo(epoch_progress=1.0))
    assert out["itc"].item() == pytest.approx(expected, rel=1e-5)
    # the momentum features of this batch were enqueued
    assert obj.queue.ids[:4].tolist() == batch.image_ids.tolist()
    assert int(obj.queue.ptr) == 4


def test_pretrain_total_and_lm() -> None:
    obj = _contrastive(PretrainObjective, "pretrain")
    batch = _batch()
    with torch.no_grad():
        tokens = obj.model.encode_image(batch.pixels)
        labels = batch.ids.masked_fill(batch.mask == 0, -100)
        lm = lm_loss(obj.model.decoder_logits(batch.ids, batch.mask, tokens), labels, 0.1)
    out = obj(batch, StepInfo(0.5))
    assert out["lm"].item() == pytest.approx(lm.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((out["itc"] + out["itm"] + out["lm"]).item(), rel=1e-6)
    out["loss"].backward()
    grads = [p.grad for p in obj.model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_temperature_is_clamped_in_place() -> None:
    obj = _contrastive(PretrainObjective, "pretrain")
    with torch.no_grad():
        obj.model.temp.fill_(3.0)  # type: ignore[union-attr]
    obj(_batch(), StepInfo(0.0))
    assert obj.model.temp.item() == pytest.approx(0.5)  # type: ignore[union-attr]


def test_itm_pairs_positives_then_negatives_of_other_images() -> None:
    obj = _contrastive(RetrievalObjective, "retrieval")
    batch = _batch(ids=[1, 1, 2, 3])
    seen: dict[str, torch.Tensor] = {}
    real = obj.model.itm_logits

    def spy(ids: torch.Tensor, mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        seen.update(ids=ids, images=images)
        return real(ids, mask, images)

    obj.model.itm_logits = spy  # type: ignore[method-assign]
    obj(batch, StepInfo(0.0))
    with torch.no_grad():
        tokens = obj.model.encode_image(batch.pixels)
    ids, images = seen["ids"], seen["images"]
    assert ids.shape[0] == images.shape[0] == 12
    assert torch.equal(ids[:4], batch.ids) and torch.allclose(images[:4], tokens, atol=1e-6)
    for row in range(4):
        # (text row, negative image): an image of another id
        neg_img = [j for j in range(4) if torch.allclose(images[4 + row], tokens[j], atol=1e-6)]
        assert neg_img and batch.image_ids[neg_img[0]] != batch.image_ids[row]
        # (negative text, image row): a text of another id
        neg_txt = [j for j in range(4) if torch.equal(ids[8 + row], batch.ids[j])]
        assert neg_txt and batch.image_ids[neg_txt[0]] != batch.image_ids[row]


def test_negative_sampling_generator_is_saved_with_the_objective() -> None:
    obj = _contrastive(PretrainObjective, "pretrain")
    obj.generator.manual_seed(123)
    state = obj.state_dict()
    other = _contrastive(PretrainObjective, "pretrain")
    other.load_state_dict(state)
    assert torch.equal(other.generator.get_state(), obj.generator.get_state())


def test_caption_objective_scores_only_the_caption() -> None:
    obj = CaptionObjective(_model("caption"), prompt_length=3)
    batch = _batch()
    with torch.no_grad():
        logits = obj.model.decoder_logits(batch.ids, batch.mask, obj.model.encode_image(batch.pixels))
    labels = batch.ids.masked_fill(batch.mask == 0, -100)
    labels[:, :3] = -100
    expected = lm_loss(logits, labels, 0.1)
    assert obj(batch, StepInfo(0.0))["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_prompt_length_is_four_for_the_default_prompt() -> None:
    assert prompt_length(Tokenizer.default(), "a picture of ") == 4


def test_vqa_objective_repeats_question_states_per_answer() -> None:
    model = _model("vqa")
    obj = VqaObjective(model)
    q = _batch(b=2, length=6)
    answers = torch.tensor([[101, 2003, 102, 0], [101, 2053, 2204, 102], [101, 4542, 102, 0]])
    batch = VqaBatch(
        pixels=q.pixels,
        question_ids=q.ids,
        question_mask=q.mask,
        answer_ids=answers,
        answer_mask=(answers != 0).long(),
        answer_weights=torch.tensor([0.5, 0.5, 1.0]),
        answer_question=torch.tensor([0, 0, 1]),
    )
    with torch.no_grad():
        states = model.grounded_hidden(q.ids, q.mask, model.encode_image(q.pixels))
        total = 0.0
        for a, (qi, w) in enumerate(zip([0, 0, 1], [0.5, 0.5, 1.0])):
            ids = answers[a : a + 1]
            mask = (ids != 0).long()
            logits = model.decoder_logits(ids, mask, states[qi : qi + 1], q.mask[qi : qi + 1])
            labels = ids.masked_fill(mask == 0, -100)
            per = F.cross_entropy(
                logits[0, :-1], labels[0, 1:], ignore_index=-100, label_smoothing=0.1, reduction="sum"
            )
            total += w * float(per)
    got = obj(batch, StepInfo(0.0))["loss"].item()
    assert got == pytest.approx(total / 2, rel=1e-5)
