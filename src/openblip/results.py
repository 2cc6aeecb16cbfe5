"""The result records of the Python API (openblip.load(...).caption / answer / match / classify)."""

from __future__ import annotations

from dataclasses import dataclass

from openblip.tasks.caption import Caption
from openblip.tasks.classify import LabelScore
from openblip.tasks.explain import Explanation


@dataclass(frozen=True)
class CaptionResult:
    image: str  # the path, or "<bytes #i>" / "<image #i>"
    captions: tuple[Caption, ...]  # best first

    @property
    def caption(self) -> str:
        return self.captions[0].text


@dataclass(frozen=True)
class AnswerResult:
    image: str
    question: str  # as given
    answer: str
    score: float  # generation: beam score; ranking: -(label-smoothed summed CE)


@dataclass(frozen=True)
class MatchResult:
    image: str
    text: str
    itm_score: float  # ITM probability of match
    itc_score: float  # ITC cosine similarity


@dataclass(frozen=True)
class ClassifyResult:
    image: str
    labels: tuple[LabelScore, ...]  # best first

    @property
    def label(self) -> str:
        return self.labels[0].label


@dataclass(frozen=True, eq=False)
class ExplainResult(Explanation):
    """Grad-CAM text localization of one (image, text) pair: the whole text's map, each written
    word's map, peak and mass share (openblip/tasks/explain.py, Explanation). Draw it with
    openblip.tasks.heatmap.render(image, result)."""

    image: str  # the path, or "<bytes #i>" / "<image #i>"
