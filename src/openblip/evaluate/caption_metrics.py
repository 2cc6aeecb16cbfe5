"""Caption metrics as the COCO caption toolkit (pycocoevalcap) computes them: BLEU-1..4, ROUGE-L and
CIDEr-D, in pure Python.

BLIP reports captioning with ``pycocoevalcap`` (``train_caption.py`` -> ``coco_caption_eval``).
Each scorer here reproduces the corresponding pycocoevalcap class on the same inputs, including
the details that move the numbers:

* Tokenization: captions go through :func:`openblip.evaluate.tokenize.coco_tokenize_corpus`, the
  stand-in for pycocoevalcap's Java PTBTokenizer (lowercasing, clitic splitting, punctuation
  removal), references and predictions in two separate batches, as ``COCOEvalCap.evaluate`` does.
* BLEU (``bleu/bleu_scorer.py``): corpus-level, n-gram counts clipped by the maximum count in any
  reference, brevity penalty against the *closest* reference length (ties go to the shorter one),
  and the scorer's smoothing constants (1e-15 added to matches, 1e-9 to totals).
* ROUGE-L (``rouge/rouge.py``): LCS-based F-measure with beta = 1.2, taking the best precision and
  the best recall over the references *separately* (not the best F over references), averaged
  over items.
* CIDEr (``cider/cider_scorer.py``, class ``Cider``): this is the CIDEr-D variant (Vedantam et
  al., 2015): TF-IDF n-gram vectors (n = 1..4) with document frequencies taken from the references
  of the evaluated set, clipping of the candidate's weights by the reference's, a Gaussian length
  penalty with sigma = 6, the mean over n, the mean over references, times 10.  Its length is the
  number of *bigrams* of a sentence (the scorer counts ``n == 1`` of a 0-based index), which only
  differs from the word count for empty captions; that is reproduced.

Scores are on pycocoevalcap's scale (fractions; CIDEr around 1.3 for a good COCO model): multiply
by 100 to get the numbers papers print (BLIP: "CIDEr 133.3").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from openblip.evaluate._checks import check_same_keys, check_strings
from openblip.evaluate.tokenize import coco_tokenize_corpus

__all__ = [
    "METRIC_NAMES",
    "BleuScores",
    "CaptionEvaluation",
    "bleu",
    "caption_scores",
    "cider_d",
    "evaluate_captions",
    "rouge_l",
]

K = TypeVar("K", bound=Hashable)

METRIC_NAMES: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")

# bleu_scorer.py's guards against division by zero; they shift scores by ~1e-9 and are kept so
# that results equal pycocoevalcap's to the last digits.
_BLEU_TINY = 1e-15
_BLEU_SMALL = 1e-9


class BleuScores(NamedTuple):
    """BLEU-1..max_n over the corpus, and the same per item (each item scored on its own)."""

    corpus: tuple[float, ...]
    per_item: list[tuple[float, ...]]


class CaptionEvaluation(NamedTuple):
    """``corpus``: metric name -> score over the whole set; ``per_item``: key -> metric -> score.

    Per-item BLEU is the item scored alone (as pycocoevalcap's per-image list); the corpus BLEU is
    not their mean.  ROUGE-L and CIDEr corpus scores are the means of the per-item scores.
    """

    corpus: dict[str, float]
    per_item: dict[Hashable, dict[str, float]]


def _ngram_counts(words: Sequence[str], max_n: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


def _bleu_from_stats(
    correct: Sequence[float], guess: Sequence[float], test_len: float, ref_len: float
) -> tuple[float, ...]:
    """Geometric mean of clipped precisions times the brevity penalty, in bleu_scorer's order of
    floating-point operations."""
    scores: list[float] = []
    product = 1.0
    for k, (c, g) in enumerate(zip(correct, guess)):
        product *= (c + _BLEU_TINY) / (g + _BLEU_SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + _BLEU_TINY) / (ref_len + _BLEU_SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [s * penalty for s in scores]
    return tuple(scores)


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> BleuScores:
    """BLEU-1..``max_n`` of tokenized candidates (words separated by whitespace) against their
    tokenized references, as pycocoevalcap's ``Bleu(4)`` with ``option='closest'``."""
    _check_parallel(candidates, references)
    total_correct = [0] * max_n
    total_guess = [0] * max_n
    total_test_len = 0
    total_ref_len = 0
    per_item: list[tuple[float, ...]] = []
    for candidate, refs in zip(candidates, references):
        words = candidate.split()
        test_len = len(words)
        max_ref_counts: dict[tuple[str, ...], int] = {}
        ref_lens: list[int] = []
        for ref in refs:
            ref_words = ref.split()
            ref_lens.append(len(ref_words))
            for ngram, count in _ngram_counts(ref_words, max_n).items():
                max_ref_counts[ngram] = max(max_ref_counts.get(ngram, 0), count)
        # The closest reference length; on a tie the shorter reference.
        ref_len = min((abs(length - test_len), length) for length in ref_lens)[1]
        correct = [0] * max_n
        for ngram, count in _ngram_counts(words, max_n).items():
            correct[len(ngram) - 1] += min(max_ref_counts.get(ngram, 0), count)
        guess = [max(0, test_len - k) for k in range(max_n)]
        per_item.append(_bleu_from_stats(correct, guess, test_len, ref_len))
        for k in range(max_n):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
        total_test_len += test_len
        total_ref_len += ref_len
    corpus = _bleu_from_stats(total_correct, total_guess, total_test_len, total_ref_len)
    return BleuScores(corpus=corpus, per_item=per_item)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            current[j] = previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1])
        previous = current
    return previous[-1]


def rouge_l(candidate: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L of one tokenized candidate against its tokenized references, as pycocoevalcap's
    ``Rouge.calc_score``: the best precision and the best recall over the references (taken
    separately) combined into an F-measure weighted by ``beta``.

    Words are split on single spaces as pycocoevalcap does, so an empty caption counts as one empty
    word (length 1), which keeps its precision finite.
    """
    if not references:
        raise ValueError("rouge_l: a candidate needs at least one reference")
    cand_words = candidate.split(" ")
    best_precision = 0.0
    best_recall = 0.0
    for reference in references:
        ref_words = reference.split(" ")
        lcs = _lcs_length(ref_words, cand_words)
        best_precision = max(best_precision, lcs / len(cand_words))
        best_recall = max(best_recall, lcs / len(ref_words))
    if best_precision == 0 or best_recall == 0:
        return 0.0
    return ((1 + beta**2) * best_precision * best_recall) / (best_recall + beta**2 * best_precision)


class _TfIdf(NamedTuple):
    vectors: list[dict[tuple[str, ...], float]]  # one per n-gram order
    norms: list[float]
    length: int  # number of bigrams (see module docstring)


def _tfidf(
    counts: Counter[tuple[str, ...]], doc_freq: Mapping[tuple[str, ...], int], log_num_docs: float, max_n: int
) -> _TfIdf:
    vectors: list[dict[tuple[str, ...], float]] = [{} for _ in range(max_n)]
    squared = [0.0] * max_n
    length = 0
    for ngram, term_freq in counts.items():
        n = len(ngram) - 1
        weight = float(term_freq) * (log_num_docs - math.log(max(1.0, float(doc_freq.get(ngram, 0)))))
        vectors[n][ngram] = weight
        squared[n] += weight**2
        if n == 1:
            length += term_freq
    return _TfIdf(vectors, [math.sqrt(s) for s in squared], length)


def _cider_similarity(hyp: _TfIdf, ref: _TfIdf, max_n: int, sigma: float) -> list[float]:
    delta = float(hyp.length - ref.length)
    # pycocoevalcap writes np.e ** x rather than exp(x); the same expression keeps the last bits.
    penalty = math.e ** (-(delta**2) / (2 * sigma**2))
    values: list[float] = []
    for n in range(max_n):
        ref_vec = ref.vectors[n]
        value = 0.0
        for ngram, weight in hyp.vectors[n].items():
            ref_weight = ref_vec.get(ngram, 0.0)
            value += min(weight, ref_weight) * ref_weight  # clipping, the "-D" in CIDEr-D
        if hyp.norms[n] != 0 and ref.norms[n] != 0:
            value /= hyp.norms[n] * ref.norms[n]
        values.append(value * penalty)
    return values


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4, sigma: float = 6.0
) -> list[float]:
    """Per-item CIDEr-D of tokenized candidates, as pycocoevalcap's ``Cider`` (whose corpus score is
    the mean of this list).  Document frequencies come from ``references``, so the score of an item
    depends on the whole set being evaluated."""
    _check_parallel(candidates, references)
    ref_counts = [[_ngram_counts(ref.split(), max_n) for ref in refs] for refs in references]
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for counts_of_item in ref_counts:
        doc_freq.update({ngram for counts in counts_of_item for ngram in counts})
    log_num_docs = math.log(float(len(references)))
    scores: list[float] = []
    for candidate, counts_of_item in zip(candidates, ref_counts):
        if not counts_of_item:
            raise ValueError("cider_d: every candidate needs at least one reference")
        hyp = _tfidf(_ngram_counts(candidate.split(), max_n), doc_freq, log_num_docs, max_n)
        total = [0.0] * max_n
        for counts in counts_of_item:
            sims = _cider_similarity(hyp, _tfidf(counts, doc_freq, log_num_docs, max_n), max_n, sigma)
            total = [t + s for t, s in zip(total, sims)]
        score = sum(total) / max_n
        scores.append(score / len(counts_of_item) * 10.0)
    return scores


def _check_parallel(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")


def _validated_items(
    predictions: Mapping[K, str], references: Mapping[K, Sequence[str]]
) -> tuple[list[K], list[str], list[list[str]]]:
    check_same_keys(predictions, references, "references")
    keys = list(predictions)
    preds: list[str] = []
    refs: list[list[str]] = []
    for key in keys:
        pred = predictions[key]
        if not isinstance(pred, str):
            raise TypeError(f"prediction for {key!r} must be a str, got {type(pred).__name__}")
        item_refs = check_strings(references[key], f"references for {key!r}")
        preds.append(pred)
        refs.append(list(item_refs))
    return keys, preds, refs


def evaluate_captions(predictions: Mapping[K, str], references: Mapping[K, Sequence[str]]) -> CaptionEvaluation:
    """BLEU-1..4, ROUGE-L and CIDEr(-D) of raw (untokenized) captions, corpus-level and per item.

    ``predictions`` maps an item key (e.g. an image id) to the generated caption, ``references``
    maps the same keys to the human captions.  Items are processed in the order of
    ``predictions``; that order matters only for the tokenizer's rare cross-caption context (see
    :func:`~openblip.evaluate.tokenize.coco_tokenize_corpus`), so build both mappings in the order
    pycocoevalcap would get them to reproduce it bit for bit.
    """
    keys, preds, refs = _validated_items(predictions, references)
    flat_refs = coco_tokenize_corpus([r for item in refs for r in item])
    tok_refs: list[list[str]] = []
    start = 0
    for item in refs:
        tok_refs.append([" ".join(tokens) for tokens in flat_refs[start : start + len(item)]])
        start += len(item)
    tok_preds = [" ".join(tokens) for tokens in coco_tokenize_corpus(preds)]

    bleu_scores = bleu(tok_preds, tok_refs, max_n=4)
    rouge_scores = [rouge_l(p, r) for p, r in zip(tok_preds, tok_refs)]
    cider_scores = cider_d(tok_preds, tok_refs)

    per_item: dict[Hashable, dict[str, float]] = {}
    for i, key in enumerate(keys):
        values = (*bleu_scores.per_item[i], rouge_scores[i], cider_scores[i])
        per_item[key] = dict(zip(METRIC_NAMES, values))
    corpus_values = (*bleu_scores.corpus, _mean(rouge_scores), _mean(cider_scores))
    return CaptionEvaluation(corpus=dict(zip(METRIC_NAMES, corpus_values)), per_item=per_item)


def caption_scores(predictions: Mapping[K, str], references: Mapping[K, Sequence[str]]) -> dict[str, float]:
    """Corpus scores ``{"BLEU-1", ..., "BLEU-4", "ROUGE-L", "CIDEr"}`` of raw captions; see
    :func:`evaluate_captions` for the inputs and for per-item scores."""
    return evaluate_captions(predictions, references).corpus


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)
