"""`openblip classify IMAGE... --labels L1,L2 | --labels-file F --model M`: zero-shot labels.

Each label becomes "a picture of a {label}." (--template) and labels are ranked by ITC cosine
with the image. Records: {"image", "label", "probability", "labels": [...], "probabilities":
[...]}: the best label and its probability, then the --top-k labels and probabilities, best
first. Probabilities are softmax(cosine / the model's ITC temperature) over all labels; with
--rerank N the best N labels are re-scored by ITM logit + cosine (the original retrieval score)
and the probabilities are a softmax over those N. {"image", "error"} for an unusable image.
A label given more than once (as written, after stripping spaces) counts once, in the place it
first appears; --top-k larger than the number of labels reports them all.
"""

from __future__ import annotations

import argparse
from typing import Any

from openblip.cli import UsageError
from openblip.cli.common import (
    IMAGES_HELP,
    STDIN_HELP,
    add_command,
    add_model_arguments,
    add_run_arguments,
    check_run_arguments,
    images_of,
    item_batches,
    load_pipeline,
    require,
)
from openblip.cli.guard import ModelGuard
from openblip.cli.io import RecordWriter, expand_inputs, read_list


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "classify", "zero-shot image classification", __doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help=IMAGES_HELP + STDIN_HELP)
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated labels (a repeat counts once)")
    labels.add_argument("--labels-file", metavar="FILE", help="labels, one per line or a JSON list")
    p.add_argument("--template", default="a picture of a {}.", help="prompt per label (default: %(default)r)")
    p.add_argument("--top-k", type=int, default=5, help="labels reported per image (default: %(default)s)")
    p.add_argument("--rerank", type=int, default=0, help="re-score the best N labels with ITM (default: off)")
    add_model_arguments(p)
    add_run_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from openblip.tasks.classify import classify_images, prepare_labels
    from openblip.tasks.inputs import require_heads

    check_run_arguments(args)
    if args.top_k < 1 or args.rerank < 0:
        raise UsageError("--top-k must be >= 1 and --rerank >= 0")
    if "{}" not in args.template:
        raise UsageError(f"--template {args.template!r} has no {{}} for the label")
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",") if x.strip()]
        if not labels:
            raise UsageError("--labels holds no labels")
    else:
        labels = read_list(args.labels_file, "labels")
    labels = list(dict.fromkeys(labels))  # a repeat would be reported twice and split the probability
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe = load_pipeline(args)
    require(lambda m: require_heads(m, "zero-shot classification"), pipe)
    try:
        label_set = prepare_labels(pipe.model, pipe.tokenizer, labels, args.template)
    except ValueError as e:  # a label with nothing left after cleaning ("!!!")
        raise UsageError(str(e)) from e
    guard = ModelGuard()
    with RecordWriter(args.output, ("image", "label", "probability", "labels", "probabilities", "error")) as out:
        for items in item_batches(pipe, names, args.batch_size, "classify"):
            results = iter(
                guard.items(
                    items,
                    lambda good: classify_images(
                        pipe.model,
                        pipe.tokenizer,
                        pipe.preprocess(images_of(good)),
                        label_set,
                        top_k=args.top_k,
                        rerank=args.rerank,
                    ),
                )
            )
            for it in items:
                if it.error is not None:
                    out.write({"image": it.name, "error": it.error})
                    continue
                top = next(results)
                out.write(
                    {
                        "image": it.name,
                        "label": top[0].label,
                        "probability": top[0].probability,
                        "labels": [s.label for s in top],
                        "probabilities": [s.probability for s in top],
                    }
                )
    return out.exit_code
