"""`openblip eval --model M --data DIR --task retrieval|caption|vqa`: evaluate a model on a
held-out split.

Prints one JSON object on stdout (or writes it to --output FILE): {"task", "model", "data",
"items", "metrics": {...}}; the metrics are listed below. A short summary for people (what was
measured, on how many items, the key figures, chance or a baseline, where the files are) goes
to stderr, with progress while it runs (a bar on a terminal, a line every few seconds otherwise).
--report FILE.html writes a self-contained page: each image with its generated caption or
answer and its references, the worst and best items, and for retrieval the top hits per query.

The data must hold what the task scores against: reference captions for caption and retrieval
(shards or jsonl with a caption or meta "references"; an image folder with a .txt beside each
image), questions with answers for vqa (meta "qa": [{question, answer}] or "question" +
"answers"). Data without them is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.evaluate.summary import metrics_help
from openblip.files import make_shareable

if TYPE_CHECKING:
    from openblip.evaluate.harness import EvalItem, VqaAnswer

TASKS = ("retrieval", "caption", "vqa")
REPORT_SUFFIXES = (".html", ".htm")


class _DeprecatedBeams(argparse.Action):
    """--beams, the old spelling of --num-beams: still taken, with a warning."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        print("openblip eval: --beams is deprecated; use --num-beams (the name every command uses)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: retrieval recall@K, caption metrics, VQA accuracy",
        description=__doc__,
        epilog=metrics_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="openblip or transformers directory, Salesforce .pth, hub id or URL"
    )
    parser.add_argument("--data", required=True, help="the split: webdataset shards, a .tar, a .jsonl or image folder")
    parser.add_argument("--task", required=True, choices=TASKS, help="what to measure (see the metrics below)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N items only (default: 0, all)")
    parser.add_argument("--image-size", type=int, default=0, help="input size in pixels (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    parser.add_argument(
        "--k-test", type=int, default=128, help="retrieval: ITC candidates re-ranked by ITM (default: %(default)s)"
    )
    parser.add_argument(
        "--num-beams", type=int, default=3, help="caption: beam width, 1 for greedy (default: %(default)s)"
    )
    parser.add_argument(
        "--beams", dest="num_beams", type=int, action=_DeprecatedBeams, help="deprecated spelling of --num-beams"
    )
    parser.add_argument(
        "--max-length", type=int, default=30, help="caption: tokens incl. [DEC] and prompt (default: %(default)s)"
    )
    parser.add_argument(
        "--min-length", type=int, default=5, help="caption: tokens incl. [DEC] and prompt (default: %(default)s)"
    )
    parser.add_argument("--prompt", default="a picture of ", help="caption: decoder prompt (default: %(default)r)")
    parser.add_argument("--captions", action="store_true", help="caption: add the generated captions to the JSON")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps (default: auto)"
    )
    parser.add_argument(
        "--vqa-rules",
        choices=("pre-2021", "2021"),
        default="pre-2021",
        help="vqa: accuracy as GT-Vision-Lab/VQA's vqaEval.py before its 2021-03-11 change (BLIP's and LAVIS's "
        "numbers) or since (the script today) (default: %(default)s)",
    )
    parser.add_argument("--output", metavar="FILE", help="write the JSON to FILE instead of stdout")
    parser.add_argument(
        "--report", metavar="FILE.html", help="write a self-contained HTML page of the items, worst and best first"
    )
    parser.set_defaults(run=run)


def _check_file(option: str, path: str | None, suffixes: Sequence[str]) -> None:
    if path is None:
        return
    if Path(path).suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: use a {' or '.join(suffixes)} file name")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write there (a directory, or its folder is missing or read-only)")


def write_text(path: str, text: str) -> None:
    """Write atomically (a kill leaves the old file or the new one), mode 0666 less the umask
    (mkstemp's 0600 would hide the file from the rest of the team)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        make_shareable(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _need_references(items: Sequence[EvalItem], args: argparse.Namespace) -> None:
    missing = [it.key for it in items if not it.references]
    if len(missing) == len(items):
        raise UsageError(
            f"--task {args.task} needs reference captions, and --data {args.data} has none: give webdataset shards "
            "or a .jsonl with a caption (or meta 'references') per image, or an image folder with a .txt caption "
            "beside each image (a.jpg + a.txt)"
        )
    if missing and args.task == "retrieval":
        raise UsageError(f"--task retrieval needs a caption for every image; {len(missing)} have none: {missing[:5]}")
    if missing:
        print(f"openblip eval: {len(missing)} images without references are left out of the scores", file=sys.stderr)


def _commonest_answer(answers: Sequence[VqaAnswer]) -> tuple[str, float]:
    """The most frequent given answer and its VQA accuracy when given to every question."""
    from openblip.evaluate.vqa import normalize_answer, vqa_accuracy

    common = Counter(normalize_answer(g) for a in answers for g in a.given).most_common(1)[0][0]
    return common, 100.0 * sum(vqa_accuracy(common, a.given) for a in answers) / len(answers)


def run(args: argparse.Namespace) -> int:
    # heavy imports here, so that building the parser (`openblip --help`) does not load torch
    from openblip.checkpoint_io import CheckpointError, load_model
    from openblip.cli import eval_report
    from openblip.cli.progress import StageProgress
    from openblip.device import resolve_device
    from openblip.evaluate import report, summary
    from openblip.evaluate.harness import caption_eval, load_eval_items, retrieval_run, vqa_run
    from openblip.evaluate.vqa import VqaEvalRules
    from openblip.model.generate import GenerationConfig

    if args.limit < 0 or args.batch_size < 1 or args.k_test < 1 or args.num_beams < 1:
        raise UsageError("--limit must be >= 0; --batch-size, --k-test and --num-beams >= 1")
    _check_file("--output", args.output, (".json",))
    _check_file("--report", args.report, REPORT_SUFFIXES)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        items = load_eval_items(args.data, args.limit)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--data {args.data}: {e}") from e
    if args.task in ("caption", "retrieval"):
        _need_references(items, args)
    elif not any(it.questions for it in items):
        raise UsageError(
            f"--task vqa needs questions with answers, and --data {args.data} has none: each sample's metadata needs "
            "'qa': [{'question': ..., 'answer': ...}] or 'question' with 'answers'"
        )
    try:
        loaded = load_model(args.model, device=device, image_size=args.image_size or None)
    except (CheckpointError, FileNotFoundError) as e:
        raise UsageError(f"cannot load --model {args.model}: {e}") from e
    model = loaded.model.eval()
    tok = loaded.tokenizer
    progress = StageProgress(f"eval {args.task}")
    out: dict[str, Any] = {"task": args.task, "model": args.model, "data": args.data, "items": len(items)}
    try:
        if args.task == "retrieval":
            ret = retrieval_run(model, tok, items, k_test=args.k_test, batch_size=args.batch_size, progress=progress)
            metrics = ret.metrics
            lines = summary.retrieval_summary(metrics, metrics["texts"] / metrics["images"])
            sections = eval_report.retrieval_sections(items, ret) if args.report else []
        elif args.task == "caption":
            gen = GenerationConfig(max_length=args.max_length, min_length=args.min_length, num_beams=args.num_beams)
            metrics, captions = caption_eval(
                model, tok, items, generation=gen, prompt=args.prompt, batch_size=args.batch_size, progress=progress
            )
            if args.captions:
                out["captions"] = {it.key: c for it, c in zip(items, captions)}
            decoding = "greedy" if args.num_beams == 1 else f"beam search, {args.num_beams} beams"
            n_refs = sum(len(it.references) for it in items)
            lines = summary.caption_summary(metrics, len(items), n_refs, decoding)
            sections = eval_report.caption_sections(items, captions) if args.report else []
        else:
            rules = VqaEvalRules(args.vqa_rules)
            metrics, answers = vqa_run(model, tok, items, batch_size=args.batch_size, progress=progress, rules=rules)
            lines = summary.vqa_summary(metrics, len(items), _commonest_answer(answers))
            sections = eval_report.vqa_sections(items, answers) if args.report else []
    except ValueError as e:
        raise UsageError(str(e)) from e
    finally:
        progress.close()
    out["metrics"] = summary.rounded(metrics)
    text = json.dumps(out) + "\n"
    if args.output:
        write_text(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    lines = [f"openblip eval: {lines[0]} from {args.data}", *lines[1:]]
    if args.report:
        title = f"openblip eval --task {args.task}: {args.model} on {args.data}"
        write_text(args.report, report.render(title, lines, sections))
    print("\n".join([*lines, *summary.where_lines(args.output, args.report)]), file=sys.stderr)
    return 0
