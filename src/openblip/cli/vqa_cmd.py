"""`openblip vqa IMAGE... --question Q --model M`: answer a question about each image.

Records: {"image", "question", "answer"} per (image, question) pair, image-major (--question
may be repeated); {"image", "question", "error"} when the image could not be used or the
question is empty. Without --answers the answer is generated as the original (beam 3, max
length 10, min length 1); with --answers FILE (one candidate per line, or a JSON list) it is
the best candidate by the original's rank mode (top --rank-k by first-token probability,
then full answer likelihood).
"""

from __future__ import annotations

import argparse
from typing import Any

from openblip.cli import UsageError
from openblip.cli.common import (
    IMAGES_HELP,
    STDIN_HELP,
    Item,
    add_beam_rules,
    add_command,
    add_model_arguments,
    add_run_arguments,
    beam_rules_of,
    check_run_arguments,
    images_of,
    item_batches,
    load_pipeline,
    min_length_of,
    require,
    text_error,
)
from openblip.cli.guard import ModelGuard
from openblip.cli.io import RecordWriter, expand_inputs, read_list


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "vqa", "answer questions about images", __doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help=IMAGES_HELP + STDIN_HELP)
    p.add_argument("--question", action="append", required=True, help="the question (repeat for several)")
    p.add_argument("--answers", metavar="FILE", help="rank these candidate answers instead of generating")
    p.add_argument("--rank-k", type=int, default=128, help="candidates scored in full (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=3, help="generation beams (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=10, help="answer tokens incl. [DEC] (default: %(default)s)")
    p.add_argument("--min-length", type=int, help="answer tokens incl. [DEC] (default: 1)")
    add_beam_rules(p)
    add_model_arguments(p)
    add_run_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from openblip.model.generate import GenerationConfig
    from openblip.tasks.inputs import require_vqa
    from openblip.tasks.vqa import answer_questions, check_answer_length, clean_question, rank_answers

    check_run_arguments(args)
    if args.rank_k < 1:
        raise UsageError(f"--rank-k must be >= 1, got {args.rank_k}")
    try:
        cfg = GenerationConfig(
            max_length=args.max_length,
            min_length=min_length_of(args, default=1),
            num_beams=args.num_beams,
            beam_rules=beam_rules_of(args),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    candidates = read_list(args.answers, "answers") if args.answers else None
    questions = [(q, text_error(clean_question, q, i)) for i, q in enumerate(args.question)]  # (as given, error)
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe = load_pipeline(args)
    require(require_vqa, pipe)
    if candidates is None:
        try:
            check_answer_length(pipe.model, cfg)
        except ValueError as e:
            raise UsageError(f"--max-length: {e}") from e

    def answer(good: list[Item]) -> list[dict[int, str]]:
        """Each image's answer to each usable question (by question index)."""
        pixels = pipe.preprocess(images_of(good))
        answers: list[dict[int, str]] = [{} for _ in good]
        for qi, (q, err) in enumerate(questions):
            if err is not None:
                continue
            qs = [q] * pixels.shape[0]
            if candidates is None:
                found = answer_questions(pipe.model, pipe.tokenizer, pixels, qs, cfg)
            else:
                found = rank_answers(pipe.model, pipe.tokenizer, pixels, qs, candidates, args.rank_k)
            for row, a in enumerate(found):
                answers[row][qi] = a.text
        return answers

    guard = ModelGuard()
    with RecordWriter(args.output, ("image", "question", "answer", "error")) as out:
        for items in item_batches(pipe, names, args.batch_size, "vqa"):
            answers = guard.items(items, answer)
            row = 0
            for it in items:
                for qi, (q, err) in enumerate(questions):
                    if it.error is not None:
                        out.write({"image": it.name, "question": q, "error": it.error})
                    elif err is not None:
                        out.write({"image": it.name, "question": q, "error": err})
                    else:
                        out.write({"image": it.name, "question": q, "answer": answers[row][qi]})
                if it.error is None:
                    row += 1
    return out.exit_code
