"""What `openblip eval` reports, said once: the name, unit and meaning of every metric
(`openblip eval --help` and the README print METRICS), the JSON's numbers rounded for people, and
the short human summary written to stderr after a run.

Units differ by family, as in the papers each follows: recall and VQA accuracy are percentages
(BLIP's `itm_eval`, the VQA challenge), BLEU / ROUGE-L / CIDEr-D are pycocoevalcap's fractions
(papers print them x100: "CIDEr 133.3" is 1.333 here), the scene attribute scores are fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # "%", "fraction" or "count"
    meaning: str


def _recall(direction: str, query: str, target: str) -> list[Metric]:
    return [
        Metric(
            f"{direction}_r{k}",
            "%",
            f"{query}s whose {target} is among the {k} best-scored (ITC top k_test re-ranked by ITM + ITC)",
        )
        for k in (1, 5, 10)
    ]


METRICS: tuple[Metric, ...] = (
    # retrieval (evaluate/retrieval.py)
    *_recall("txt", "image", "own caption (any of them)"),
    *_recall("img", "caption", "image"),
    Metric("txt_r_mean", "%", "mean of txt_r1, txt_r5, txt_r10 (image -> text)"),
    Metric("img_r_mean", "%", "mean of img_r1, img_r5, img_r10 (text -> image)"),
    Metric("r_mean", "%", "mean of txt_r_mean and img_r_mean (BLIP selects checkpoints on it)"),
    Metric("itc_txt_r1", "%", "txt_r1 from the ITC cosine alone, before ITM re-ranking (also _r5, _r10)"),
    Metric("itc_img_r1", "%", "img_r1 from the ITC cosine alone, before ITM re-ranking (also _r5, _r10)"),
    Metric("images", "count", "images evaluated"),
    Metric("texts", "count", "captions evaluated (every reference of every image)"),
    Metric("chance_r1", "%", "img_r1 of a random ranking: 100 / images"),
    # captions (evaluate/caption_metrics.py)
    Metric("BLEU-1", "fraction", "corpus BLEU over 1-grams against the references (pycocoevalcap; also BLEU-2, -3)"),
    Metric("BLEU-4", "fraction", "corpus BLEU over 1- to 4-grams (pycocoevalcap scale; papers print x100)"),
    Metric("ROUGE-L", "fraction", "longest-common-subsequence F-measure (beta 1.2), mean over images"),
    Metric("CIDEr", "fraction", "CIDEr-D, TF-IDF n-gram consensus with the references x10 (papers print x100)"),
    Metric("attribute_precision", "fraction", "synthetic scenes: caption facts (colour, shape, place) that hold"),
    Metric("attribute_recall", "fraction", "synthetic scenes: the scene's core facts the caption states"),
    Metric("attribute_f1", "fraction", "synthetic scenes: F1 of attribute_precision and attribute_recall"),
    Metric(
        "shuffled_f1",
        "fraction",
        "attribute_f1 of each caption against the next image's scene: what a caption blind to its image scores",
    ),
    # VQA (evaluate/vqa.py)
    Metric("vqa_accuracy", "%", "official VQA accuracy, min(1, humans who gave the answer / 3), mean over questions"),
    Metric("exact_match", "%", "questions whose normalised answer equals one of the given answers"),
    Metric("questions", "count", "questions asked"),
)
METRIC_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
# The names covered by a METRICS line that says "also ...".
_ALSO: dict[str, str] = {
    **{f"itc_{d}_r{k}": f"itc_{d}_r1" for d in ("txt", "img") for k in (5, 10)},
    "BLEU-2": "BLEU-1",
    "BLEU-3": "BLEU-1",
}


def metric(name: str) -> Metric:
    """The documentation of a metric name (KeyError for one that is not documented)."""
    return METRIC_BY_NAME[_ALSO.get(name, name)]


def metrics_help() -> str:
    """Every metric, one line each: the text of `openblip eval --help`'s epilog."""
    width = max(len(m.name) for m in METRICS)
    lines = ["metrics (JSON field: unit, meaning):"]
    lines += [f"  {m.name:<{width}}  {m.unit:<8}  {m.meaning}" for m in METRICS]
    return "\n".join(lines)


def rounded(metrics: Mapping[str, float]) -> dict[str, float | int]:
    """The metrics for the JSON output: counts as integers, scores rounded to 4 decimals, enough
    for any comparison and free of float noise such as 18.599999999999998."""
    out: dict[str, float | int] = {}
    for name, value in metrics.items():
        try:
            unit = metric(name).unit
        except KeyError:  # a metric not documented here is still written, rounded
            unit = ""
        out[name] = int(value) if unit == "count" else round(float(value), 4)
    return out


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _frac(value: float) -> str:
    return f"{value:.3f}"


def _recall_line(m: Mapping[str, float], d: str) -> str:
    text = "  ".join(f"R@{k} {_pct(m[f'{d}_r{k}'])}" for k in (1, 5, 10))
    if f"itc_{d}_r1" in m:
        text += f"   (ITC alone, before re-ranking: R@1 {_pct(m[f'itc_{d}_r1'])})"
    return text


def retrieval_summary(m: Mapping[str, float], refs_per_image: float) -> list[str]:
    images, texts = int(m["images"]), int(m["texts"])
    chance_i2t = min(100.0, 100.0 * refs_per_image / max(texts, 1))
    return [
        f"retrieval on {images} images and {texts} captions",
        f"  image -> text: {_recall_line(m, 'txt')}",
        f"  text -> image: {_recall_line(m, 'img')}",
        f"  chance R@1: {_pct(chance_i2t)} image -> text, {_pct(m['chance_r1'])} text -> image;"
        f" mean recall r_mean {_pct(m['r_mean'])}",
    ]


def caption_summary(m: Mapping[str, float], images: int, references: int, decoding: str) -> list[str]:
    lines = [f"captions for {images} images ({decoding}), scored against {references} reference captions"]
    if "CIDEr" in m:
        lines.append(
            f"  BLEU-4 {_frac(m['BLEU-4'])}  ROUGE-L {_frac(m['ROUGE-L'])}  CIDEr {_frac(m['CIDEr'])}"
            "   (pycocoevalcap scale: papers print x100, e.g. BLIP's COCO CIDEr 133.3 is 1.333 here)"
        )
    if "attribute_f1" in m:
        lines.append(
            f"  scene attributes: F1 {_frac(m['attribute_f1'])} (precision {_frac(m['attribute_precision'])}, "
            f"recall {_frac(m['attribute_recall'])}); baseline, captions of the wrong image: F1 "
            f"{_frac(m['shuffled_f1'])}"
        )
    return lines


def vqa_summary(m: Mapping[str, float], images: int, baseline: tuple[str, float] | None) -> list[str]:
    lines = [
        f"VQA on {int(m['questions'])} questions about {images} images",
        f"  VQA accuracy {_pct(m['vqa_accuracy'])}  exact match {_pct(m['exact_match'])}",
    ]
    if baseline is not None:
        answer, accuracy = baseline
        lines.append(f"  baseline, always answering the commonest answer {answer!r}: VQA accuracy {_pct(accuracy)}")
    return lines


def where_lines(output: str | None, report: str | None) -> list[str]:
    lines = [f"  results: {output}" if output else "  results: JSON on stdout"]
    if report:
        lines.append(f"  report: {report}")
    lines.append("  every metric is explained by `openblip eval --help`")
    return lines
