"""BLIP's training objectives, one class each, all with the same call:

    losses = objective(batch, StepInfo(...))   # {"loss": total, "itc": ..., ...}

Each objective is an nn.Module that owns the model (and, for ITC, the momentum encoders and
queues), so the loop can wrap it in DistributedDataParallel and checkpoint it as a whole.

Cross-rank behaviour (a deliberate, documented difference from the original): the ITC columns are
the *global* batch's momentum features (then the queue) and ITM hard negatives are drawn from the
global batch with a generator seeded identically on every rank, each rank keeping its own rows.
The loss and gradients therefore do not depend on how the global batch is split over processes
(the original uses the local batch for ITC columns and, for pretraining, local negatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openblip.model.blip import DEC_TOKEN_ID, Blip, with_first_token
from openblip.train import distributed, losses
from openblip.train.batch import ImageTextBatch, VqaBatch
from openblip.train.momentum import FeatureQueue, MomentumEncoders

TEMP_MIN, TEMP_MAX = 0.001, 0.5  # blip_pretrain.py: temp.clamp_(0.001, 0.5) at each forward


@dataclass(frozen=True)
class StepInfo:
    """Where the run is: `epoch_progress` = optimizer steps so far / steps per epoch (drives the
    distillation ramp); `new_step` is true for the first micro-batch of an optimizer step (the
    momentum encoders move once per parameter update)."""

    epoch_progress: float
    new_step: bool = True


def alpha_at(alpha: float, ramp_epochs: float, epoch_progress: float) -> float:
    """Distillation weight: alpha * min(1, progress / ramp) (pretrain.py ramps over 2 epochs,
    train_retrieval.py over the first epoch)."""
    if ramp_epochs <= 0:
        return alpha
    return alpha * min(1.0, epoch_progress / ramp_epochs)


def decoder_lm_loss(
    model: Blip, ids: torch.Tensor, mask: torch.Tensor, context: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean label-smoothed LM loss of the [DEC] decoder, equal to `lm_loss(model.decoder_logits(...))`
    but with the vocabulary projection run only at scored positions: padding and prompt tokens
    never reach the (tokens x 30524) LM head, the largest matrix of a training step."""
    decoder = model.text_decoder
    if decoder is None:
        raise ValueError("the LM objective needs a model with a text decoder")
    hidden = decoder.transformer(with_first_token(ids, DEC_TOKEN_ID), mask, context)  # (B, L, D)
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = targets != losses.IGNORE
    logits = decoder.head(hidden[:, :-1][keep], decoder.transformer.embeddings.word.weight)  # (K, V)
    return F.cross_entropy(logits.float(), targets[keep], label_smoothing=model.cfg.label_smoothing)


class Objective(nn.Module):
    """Base: holds `model`; subclasses implement forward(batch, info) -> dict of scalar losses."""

    model: Blip

    def __init__(self, model: Blip) -> None:
        super().__init__()
        self.model = model


class _Contrastive(Objective):
    """Shared ITC (momentum + queue + distillation) and ITM (hard negatives) machinery."""

    def __init__(
        self,
        model: Blip,
        *,
        queue_size: int,
        momentum: float,
        alpha: float,
        alpha_ramp_epochs: float,
        negatives_seed: int,
        global_batch: int,
    ) -> None:
        super().__init__(model)
        if model.temp is None:
            raise ValueError("ITC needs a model with heads (temp, projections)")
        self.momentum = MomentumEncoders(model, momentum)
        self.queue = FeatureQueue(queue_size, model.cfg.embed_dim)
        self.queue.check_batch(global_batch)
        self.alpha = alpha
        self.alpha_ramp_epochs = alpha_ramp_epochs
        self.negatives_seed = negatives_seed
        self.generator = torch.Generator().manual_seed(negatives_seed)

    # The negative-sampling generator is part of the run state: saved with the module.
    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])

    def _temp(self) -> torch.Tensor:
        temp = self.model.temp
        assert temp is not None
        with torch.no_grad():
            temp.clamp_(TEMP_MIN, TEMP_MAX)
        return temp

    def _temp_value(self) -> torch.Tensor:
        """The (already clamped) temperature without gradient."""
        assert self.model.temp is not None
        return self.model.temp.detach()

    def _itc(
        self,
        batch: ImageTextBatch,
        image_feat: torch.Tensor,
        text_feat: torch.Tensor,
        info: StepInfo,
        id_aware: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """ITC loss; returns (loss, global image ids, global momentum image/text features).
        Clamps the temperature in place first: call once per forward, before any other use."""
        temp = self._temp()
        alpha = alpha_at(self.alpha, self.alpha_ramp_epochs, info.epoch_progress)
        b = image_feat.shape[0]
        ids_all = distributed.concat_all_gather(batch.image_ids)  # (G,)
        with torch.no_grad():
            if info.new_step:
                self.momentum.update(self.model)
            image_m, text_m = self.momentum.features(batch.pixels, batch.ids, batch.mask)  # (B, E)
            image_m_all = distributed.concat_all_gather(image_m)  # (G, E)
            text_m_all = distributed.concat_all_gather(text_m)
            image_cols = torch.cat([image_m_all.float(), self.queue.image.clone()])  # (G+Q, E)
            text_cols = torch.cat([text_m_all.float(), self.queue.text.clone()])
            if id_aware:
                col_ids = torch.cat([ids_all, self.queue.ids.clone()])
                positives = losses.id_positives(batch.image_ids, col_ids)
            else:
                positives = losses.diagonal_positives(b, image_cols.shape[0], distributed.rank() * b, image_feat.device)
            t = temp.detach()
            targets_i2t = losses.distill_targets(image_m.float() @ text_cols.t() / t, positives, alpha)
            targets_t2i = losses.distill_targets(text_m.float() @ image_cols.t() / t, positives, alpha)
        sim_i2t = image_feat.float() @ text_cols.t() / temp  # (B, G+Q)
        sim_t2i = text_feat.float() @ image_cols.t() / temp
        loss = losses.itc_loss(sim_i2t, sim_t2i, targets_i2t, targets_t2i)
        return loss, ids_all, image_m_all, text_m_all

    def _itm(
        self,
        batch: ImageTextBatch,
        image_tokens: torch.Tensor,
        sim_t2i: torch.Tensor,
        sim_i2t: torch.Tensor,
        ids_all: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        """ITM over B positives and 2B hard negatives; sim_* are the global (G, G) similarities."""
        b = batch.ids.shape[0]
        lo = distributed.rank() * b
        with torch.no_grad():
            same = ids_all[:, None] == ids_all[None, :]  # the pair itself and same-image pairs
            # Every rank draws all G rows with the same generator state and keeps its own rows.
            neg_image = losses.sample_negatives(losses.negative_weights(sim_t2i, same, eps), self.generator)
            neg_text = losses.sample_negatives(losses.negative_weights(sim_i2t, same, eps), self.generator)
            neg_image = neg_image[lo : lo + b].to(image_tokens.device)
            neg_text = neg_text[lo : lo + b].to(image_tokens.device)
        tokens_all = distributed.all_gather_with_grad(image_tokens)  # (G, 1+N, Dv), gradient to each owner
        ids_world = distributed.concat_all_gather(batch.ids)
        mask_world = distributed.concat_all_gather(batch.mask)
        # Pairs: (text, image) matched; (text, negative image); (negative text, image).
        ids = torch.cat([batch.ids, batch.ids, ids_world[neg_text]])
        mask = torch.cat([batch.mask, batch.mask, mask_world[neg_text]])
        # index_select, not tokens_all[neg_image]: a negative drawn twice makes indexing's backward
        # add two gradients into one row, which the CPU does with racing atomic adds on > 1 thread
        # (index_put_ with accumulate), so runs differed in the last bits; index_select's backward
        # (index_add_) adds them in index order.
        images = torch.cat([image_tokens, tokens_all.index_select(0, neg_image), image_tokens])
        logits = self.model.itm_logits(ids, mask, images)  # (3B, 2)
        return losses.itm_loss(logits, positives=b)


class PretrainObjective(_Contrastive):
    """ITC + ITM + LM with the shared encoder/decoder (blip_pretrain.py BLIP_Pretrain.forward)."""

    def forward(self, batch: ImageTextBatch, info: StepInfo) -> dict[str, torch.Tensor]:
        model = self.model
        image_tokens = model.encode_image(batch.pixels)  # (B, 1+N, Dv)
        image_feat = model.image_embed(image_tokens)  # (B, E)
        text_feat = model.text_embed(batch.ids, batch.mask)  # (B, E)
        itc, ids_all, image_m_all, text_m_all = self._itc(batch, image_feat, text_feat, info, id_aware=False)
        with torch.no_grad():
            # Negatives weighted by online-vs-momentum similarity, + 1e-4 (blip_pretrain.py).
            t = self._temp_value()
            text_all = distributed.concat_all_gather(text_feat.detach()).float()
            image_all = distributed.concat_all_gather(image_feat.detach()).float()
            sim_t2i = text_all @ image_m_all.float().t() / t
            sim_i2t = image_all @ text_m_all.float().t() / t
        itm = self._itm(batch, image_tokens, sim_t2i, sim_i2t, ids_all, eps=1e-4)
        lm = decoder_lm_loss(model, batch.ids, batch.mask, image_tokens, losses.lm_labels(batch.ids, batch.mask))
        self.queue.enqueue(image_m_all, text_m_all, ids_all)
        return {"loss": itc + itm + lm, "itc": itc.detach(), "itm": itm.detach(), "lm": lm.detach()}


class RetrievalObjective(_Contrastive):
    """ITC with image-id-aware positives (incl. the id queue) + ITM with same-image negatives
    excluded (blip_retrieval.py BLIP_Retrieval.forward, negative_all_rank=True)."""

    def forward(self, batch: ImageTextBatch, info: StepInfo) -> dict[str, torch.Tensor]:
        model = self.model
        image_tokens = model.encode_image(batch.pixels)
        image_feat = model.image_embed(image_tokens)
        text_feat = model.text_embed(batch.ids, batch.mask)
        itc, ids_all, image_m_all, text_m_all = self._itc(batch, image_feat, text_feat, info, id_aware=True)
        with torch.no_grad():
            # Negatives weighted by online similarities, no epsilon (blip_retrieval.py).
            t = self._temp_value()
            image_all = distributed.concat_all_gather(image_feat.detach()).float()
            text_all = distributed.concat_all_gather(text_feat.detach()).float()
            sim_i2t = image_all @ text_all.t() / t
            sim_t2i = sim_i2t.t()
        itm = self._itm(batch, image_tokens, sim_t2i, sim_i2t, ids_all, eps=0.0)
        self.queue.enqueue(image_m_all, text_m_all, ids_all)
        return {"loss": itc + itm, "itc": itc.detach(), "itm": itm.detach()}


class CaptionObjective(Objective):
    """LM on prompt + caption with the prompt tokens unscored (blip.py BLIP_Decoder.forward)."""

    def __init__(self, model: Blip, prompt_length: int) -> None:
        super().__init__(model)
        self.prompt_length = prompt_length

    def forward(self, batch: ImageTextBatch, info: StepInfo) -> dict[str, torch.Tensor]:
        model = self.model
        image_tokens = model.encode_image(batch.pixels)
        labels = losses.lm_labels(batch.ids, batch.mask, self.prompt_length)
        lm = decoder_lm_loss(model, batch.ids, batch.mask, image_tokens, labels)
        return {"loss": lm, "lm": lm.detach()}


class VqaObjective(Objective):
    """Question encoder ([ENC], over the image) then the answer decoder over the question states,
    each question's states repeated once per answer; loss = sum(weight * summed CE) / B
    (blip_vqa.py BLIP_VQA.forward, train mode)."""

    def forward(self, batch: VqaBatch, info: StepInfo) -> dict[str, torch.Tensor]:
        model = self.model
        image_tokens = model.encode_image(batch.pixels)
        states = model.grounded_hidden(batch.question_ids, batch.question_mask, image_tokens)  # (B, Lq, D)
        # (A, Lq, D); index_select so the gradients of a question's answers add up in a fixed order
        # (see _Contrastive._itm)
        context = states.index_select(0, batch.answer_question)
        context_mask = batch.question_mask[batch.answer_question]
        logits = model.decoder_logits(batch.answer_ids, batch.answer_mask, context, context_mask)
        labels = losses.lm_labels(batch.answer_ids, batch.answer_mask)
        loss = losses.weighted_answer_loss(
            logits, labels, batch.answer_weights, batch.question_ids.shape[0], model.cfg.label_smoothing
        )
        return {"loss": loss, "vqa": loss.detach()}
