"""`openblip caption IMAGE_OR_DIR... --model M`: one JSON record per image.

Records: {"image", "caption"}; {"image", "captions": [...]} with --num-captions > 1 (best
first); {"image", "error"} for an image that could not be used. --scores adds the decoder's
confidence: "words" ([{"word", "prob"}], each generated word's probability, word pieces merged)
and "mean_logprob" (of the generated tokens, [SEP] included), beside "caption", or per caption
with several ("captions": [{"caption", "words", "mean_logprob"}, ...]). Defaults are the original's
captioning settings: beam search with 3 beams, max length 20, min length 5 (lengths count the
[DEC] token and the prompt, as the original), prompt "a picture of " (removed from the output).
--sample switches to the original's nucleus sampling (top-p 0.9, top-k 50, repetition penalty 1.1).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.cli.common import (
    IMAGES_HELP,
    STDIN_HELP,
    add_beam_rules,
    add_command,
    add_model_arguments,
    add_run_arguments,
    beam_rules_of,
    check_run_arguments,
    finite_float,
    images_of,
    item_batches,
    load_pipeline,
    min_length_of,
    require,
)
from openblip.cli.guard import ModelGuard
from openblip.cli.io import RecordWriter, expand_inputs

if TYPE_CHECKING:
    from openblip.tasks.caption import Caption


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "caption", "caption images", __doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help=IMAGES_HELP + STDIN_HELP)
    add_model_arguments(p)
    g = p.add_argument_group("decoding")
    g.add_argument("--num-beams", type=int, help="beam width (default: 3; not with --sample)")
    g.add_argument("--sample", action="store_true", help="nucleus sampling instead of beam search")
    g.add_argument("--top-p", type=finite_float, default=0.9, help="sampling: nucleus mass (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=50, help="sampling: k best tokens, 0 = all (default: %(default)s)")
    g.add_argument("--temperature", type=finite_float, default=1.0, help="sampling temperature (default: %(default)s)")
    g.add_argument(
        "--seed",
        type=int,
        help="sampling seed: each image's captions then depend only on the seed and the image's position "
        "in the input order (not on --batch-size)",
    )
    g.add_argument(
        "--num-captions",
        type=int,
        default=1,
        help="captions per image, best first (default: %(default)s); beam search widens to at least this many "
        "beams (--num-beams 1 --num-captions 3 returns the 3 best of 3 beams); with --sample, independent samples",
    )
    g.add_argument("--max-length", type=int, default=20, help="tokens incl. [DEC] and prompt (default: %(default)s)")
    g.add_argument("--min-length", type=int, help="tokens incl. [DEC] and prompt (default: 5, at most --max-length)")
    g.add_argument("--prompt", default="a picture of ", help="text to continue; '' for none (default: %(default)r)")
    g.add_argument("--repetition-penalty", type=finite_float, help="default: 1.0 for beam search, 1.1 for sampling")
    g.add_argument("--length-penalty", type=finite_float, default=1.0, help="beam search (default: %(default)s)")
    g.add_argument("--no-repeat-ngram-size", type=int, default=0, help="forbid repeated n-grams (default: off)")
    add_beam_rules(g)
    p.add_argument(
        "--scores",
        action="store_true",
        help='add each caption\'s word probabilities ("words": [{"word", "prob"}]) and "mean_logprob"',
    )
    add_run_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from openblip.tasks.caption import caption_config, caption_images
    from openblip.tasks.inputs import require_caption_decoder

    check_run_arguments(args)
    if args.sample and args.num_beams not in (None, 1):
        raise UsageError("--num-beams and --sample exclude each other")
    if args.num_captions < 1:
        raise UsageError(f"--num-captions must be >= 1, got {args.num_captions}")
    min_length = min_length_of(args, default=5)
    try:
        cfg = caption_config(
            sample=args.sample,
            num_beams=3 if args.num_beams is None else args.num_beams,
            max_length=args.max_length,
            min_length=min_length,
            top_p=args.top_p,
            top_k=args.top_k,
            temperature=args.temperature,
            repetition_penalty=args.repetition_penalty,
            length_penalty=args.length_penalty,
            no_repeat_ngram_size=args.no_repeat_ngram_size,
            num_captions=args.num_captions,
            seed=args.seed,
            beam_rules=beam_rules_of(args),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe = load_pipeline(args)
    require(require_caption_decoder, pipe)
    try:  # settings the model cannot honour (prompt or lengths): checked on no image, before any record
        caption_images(pipe.model, pipe.tokenizer, pipe.preprocess([]), cfg, args.prompt)
    except ValueError as e:
        raise UsageError(str(e)) from e
    position = {name: i for i, name in enumerate(names)}  # each image's sampling stream (names are unique)
    guard = ModelGuard()
    columns = ("image", "caption" if args.num_captions == 1 else "captions", "error")
    with RecordWriter(args.output, columns) as out:
        for items in item_batches(pipe, names, args.batch_size, "caption"):
            caps = guard.items(
                items,
                lambda good: caption_images(
                    pipe.model,
                    pipe.tokenizer,
                    pipe.preprocess(images_of(good)),
                    cfg,
                    args.prompt,
                    sample_keys=[position[it.name] for it in good],
                ),
            )
            done = iter(caps)
            for it in items:
                if it.error is not None:
                    out.write({"image": it.name, "error": it.error})
                    continue
                caps_of_image = next(done)
                if args.num_captions == 1:
                    out.write({"image": it.name, **_caption_record(caps_of_image[0], args.scores)})
                elif args.scores:
                    out.write({"image": it.name, "captions": [_caption_record(c, True) for c in caps_of_image]})
                else:
                    out.write({"image": it.name, "captions": [c.text for c in caps_of_image]})
    return out.exit_code


def _caption_record(caption: Caption, scores: bool) -> dict[str, Any]:
    if not scores:
        return {"caption": caption.text}
    words = [{"word": w.word, "prob": w.prob} for w in caption.words]
    return {"caption": caption.text, "words": words, "mean_logprob": caption.mean_logprob}
