"""`openblip match IMAGE... --text T [--text T ...] --model M`: image-text matching scores.

Records: {"image", "text", "itm_score", "itc_score"} per (image, text) pair, image-major;
itm_score is the ITM probability that they match (softmax of the ITM head, [ENC] first),
itc_score the cosine of the ITC features (no temperature). Texts are cleaned as the original
retrieval (lowercase, punctuation removed, 30 words) and truncated to 35 tokens. An image that
could not be used gives {"image", "text", "error"} for each text, and so does a text with
nothing left after cleaning ("", "!!!") for each image.
"""

from __future__ import annotations

import argparse
from typing import Any

from openblip.cli.common import (
    IMAGES_HELP,
    STDIN_HELP,
    Item,
    add_command,
    add_model_arguments,
    add_run_arguments,
    add_text_arguments,
    check_run_arguments,
    images_of,
    item_batches,
    load_pipeline,
    require,
    texts_of,
)
from openblip.cli.guard import ModelGuard
from openblip.cli.io import RecordWriter, expand_inputs


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "match", "image-text matching scores (ITM, ITC)", __doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help=IMAGES_HELP + STDIN_HELP)
    add_text_arguments(p)
    add_model_arguments(p)
    add_run_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from openblip.tasks.inputs import require_heads
    from openblip.tasks.match import match_images_texts

    check_run_arguments(args)
    given = texts_of(args)
    texts, text_errors, good = given.all, given.errors, given.usable
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe = load_pipeline(args)
    require(lambda m: require_heads(m, "image-text matching"), pipe)

    def score(batch: list[Item]) -> list[list[tuple[float, float]]]:
        """Each image's (itm, itc) with each usable text."""
        if not good:
            return [[] for _ in batch]
        s = match_images_texts(pipe.model, pipe.tokenizer, pipe.preprocess(images_of(batch)), good)
        return [[(float(s.itm[r, c]), float(s.itc[r, c])) for c in range(len(good))] for r in range(len(batch))]

    guard = ModelGuard()
    with RecordWriter(args.output, ("image", "text", "itm_score", "itc_score", "error")) as out:
        for items in item_batches(pipe, names, args.batch_size, "match"):
            scores = guard.items(items, score)
            row = 0
            for it in items:
                column = 0
                for t, err in zip(texts, text_errors):
                    if it.error is not None or err is not None:
                        out.write({"image": it.name, "text": t, "error": it.error or err})
                        continue
                    itm, itc = scores[row][column]
                    out.write({"image": it.name, "text": t, "itm_score": itm, "itc_score": itc})
                    column += 1
                if it.error is None:
                    row += 1
    return out.exit_code
