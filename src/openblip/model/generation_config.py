"""What a generation run is asked to do (GenerationConfig) and what it returns (GenerationOutput).

Lengths follow the original (transformers 4.15 `generate` as salesforce/BLIP called it), as
today's transformers also counts them: `max_length` and `min_length` count every token of the
sequence, [DEC] and the prompt included; `min_length` only forbids [SEP] (the eos) before that
length.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch


class BeamRules(enum.Enum):
    """How beam search scores finished hypotheses and decides that an input is done.

    ORIGINAL (the default): transformers 4.15, the version salesforce/BLIP pins, so the released
    checkpoints' captions and the paper's numbers. A hypothesis ending with [SEP] scores its summed
    log-probability ([SEP]'s included) / len ** length_penalty, len counting every token before
    [SEP], [DEC] and the prompt included; hypotheses still running at max_length are added at the
    end with len = max_length. An input is done once it holds num_beams hypotheses and the best
    candidate of the step (ending or not), divided by the length before the step, cannot beat the
    worst of them.

    TRANSFORMERS: today's transformers (its vectorised beam search; checked against 5.x), for
    comparing with a transformers pipeline. A finished hypothesis scores its summed log-probability
    / (generated tokens, [SEP] included, prompt excluded) ** length_penalty; at max_length the
    step's top num_beams candidates finish; an input is done once it holds num_beams hypotheses and
    the best running beam, divided by its generated length, cannot beat the worst of them.
    """

    ORIGINAL = "transformers-4.15"
    TRANSFORMERS = "transformers"


@dataclass(frozen=True)
class GenerationConfig:
    max_length: int = 20  # total tokens, [DEC] and prompt included (original semantics)
    min_length: int = 0  # [SEP] is forbidden while the sequence is shorter than this
    num_beams: int = 1
    do_sample: bool = False
    top_k: int = 50  # sampling only; 0 disables (transformers' default 50 was active in BLIP's nucleus)
    top_p: float = 1.0  # sampling only; BLIP's nucleus captioning uses 0.9
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0  # beam search only
    num_return_sequences: int = 1
    seed: int | None = None  # sampling only (model/sampling.py: one stream per sequence)
    eos_token_id: int = 102
    pad_token_id: int = 0
    # Fixed-shape decoding steps, captured once per call in a CUDA graph and replayed (CUDA only;
    # elsewhere the fixed-shape step runs eagerly). Finished contexts then stay in the batch.
    cuda_graph: bool = False
    # Beam search only: the original's scoring and stopping (transformers 4.15) or today's
    # transformers'; see BeamRules.
    beam_rules: BeamRules = BeamRules.ORIGINAL

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam search with sampling is not supported; choose one")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence; use beams or sampling for more")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) > num_beams ({self.num_beams})")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.top_k < 0 or self.no_repeat_ngram_size < 0 or self.min_length < 0:
            raise ValueError("top_k, no_repeat_ngram_size and min_length must be >= 0")
        if not isinstance(self.beam_rules, BeamRules):
            raise TypeError(f"beam_rules must be a BeamRules, got {self.beam_rules!r}")


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # (B * num_return_sequences, L): [DEC], prompt, generated ids, pads
    scores: torch.Tensor  # (B * num_return_sequences,) beam score, or summed log-prob
    # (B * num_return_sequences, L): log-probability of the token at each position when it was
    # chosen (after the score processors: repetition penalty, n-gram ban, min length; before the
    # sampling warp), 0 at the prompt and padding. Sums to the summed log-prob of the sequence.
    token_logprobs: torch.Tensor
