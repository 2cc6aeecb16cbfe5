"""Evaluation metrics: COCO caption metrics (BLEU, ROUGE-L, CIDEr-D), VQA accuracy, retrieval recall@K.

Each reproduces the reference implementation BLIP reports with (pycocoevalcap, the official VQA
evaluation script, BLIP's ``itm_eval``) in pure Python, without Java.
"""

from __future__ import annotations

from openblip.evaluate.caption_metrics import (
    METRIC_NAMES,
    BleuScores,
    CaptionEvaluation,
    bleu,
    caption_scores,
    cider_d,
    evaluate_captions,
    rouge_l,
)
from openblip.evaluate.retrieval import recall_at_k
from openblip.evaluate.tokenize import COCO_PUNCTUATION, coco_tokenize, coco_tokenize_corpus, ptb_tokenize
from openblip.evaluate.vqa import VqaEvalRules, normalize_answer, vqa_accuracy, vqa_accuracy_simple, vqa_score

__all__ = [
    "COCO_PUNCTUATION",
    "METRIC_NAMES",
    "BleuScores",
    "CaptionEvaluation",
    "VqaEvalRules",
    "bleu",
    "caption_scores",
    "cider_d",
    "coco_tokenize",
    "coco_tokenize_corpus",
    "evaluate_captions",
    "normalize_answer",
    "ptb_tokenize",
    "recall_at_k",
    "rouge_l",
    "vqa_accuracy",
    "vqa_accuracy_simple",
    "vqa_score",
]
