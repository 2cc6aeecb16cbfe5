"""`openblip explain IMAGE... --text T [--text T ...] --model M [--layer L] [--out DIR]`: where
in each image each word of each text is grounded (ITM Grad-CAM, LAVIS's text localization).

Records, one per (image, text) pair, image-major: {"image", "text", "itm_score", "words"}, where
itm_score is the ITM probability of match (as `match` gives it) and "words" lists the text's
words as written, each {"word", "peak", "mass"}: peak is [x, y], the centre of the image patch
where the word's map is highest, in pixels of the original image (null when the map is zero
everywhere), mass the word's share of the whole text's map (the shares of a text sum to 1).
Texts are cleaned and truncated as `match` does (30 words, 35 tokens); a word cut off is left out.

--layer: the cross-attention layer whose attention is explained (0-based; default the middle
one, 6 of BLIP-base's 12, as LAVIS). With --out DIR, two PNGs per pair, named in the record
("heatmap": the photo with the whole text's map over it, "words_heatmap": one overlay per word).

An image that cannot be used gives {"image", "text", "error"} for each text, and so does a text
with nothing left after cleaning for each image; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.cli.common import (
    IMAGES_HELP,
    STDIN_HELP,
    Item,
    add_command,
    add_model_arguments,
    add_run_arguments,
    add_text_arguments,
    check_run_arguments,
    item_batches,
    load_pipeline,
    require,
    texts_of,
)
from openblip.cli.guard import ModelGuard
from openblip.cli.io import RecordWriter, expand_inputs

if TYPE_CHECKING:
    from openblip.tasks.explain import Explanation


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "explain", "where each word of a text is in the image (ITM Grad-CAM)", __doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help=IMAGES_HELP + STDIN_HELP)
    add_text_arguments(p)
    p.add_argument("--layer", type=int, help="cross-attention layer, 0-based (default: the middle one)")
    p.add_argument("--out", metavar="DIR", help="write the heat map pictures (PNG) into DIR")
    add_model_arguments(p)
    add_run_arguments(p, batch_size=8)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from openblip.tasks.explain import check_layer, explain_loaded
    from openblip.tasks.inputs import require_heads

    check_run_arguments(args)
    given = texts_of(args)
    texts, text_errors, good = given.all, given.errors, given.usable
    out_dir = _make_out_dir(args.out)
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe = load_pipeline(args)
    require(lambda m: require_heads(m, "explaining image-text matching"), pipe)
    try:
        check_layer(pipe.model, args.layer)  # before any image is read
    except ValueError as e:
        raise UsageError(f"--layer: {e}") from e

    def explain(batch: list[Item]) -> list[list[Explanation]]:
        if not good:
            return [[] for _ in batch]
        loaded = [it.image for it in batch if it.image is not None]
        return explain_loaded(pipe.model, pipe.tokenizer, loaded, good, layer=args.layer)

    guard = ModelGuard()
    index = 0  # of the image, in record order: names the pictures
    with RecordWriter(args.output) as out:
        for items in item_batches(pipe, names, args.batch_size, "explain"):
            results = iter(guard.items(items, explain))
            for it in items:
                row = iter(next(results)) if it.error is None else iter(())
                for j, (t, err) in enumerate(zip(texts, text_errors)):
                    if it.error is not None or err is not None:
                        out.write({"image": it.name, "text": t, "error": it.error or err})
                        continue
                    out.write(_record(it, t, next(row), out_dir, f"{index:04d}_{_stem(it.name)}_t{j}"))
                index += 1
    return out.exit_code


def _record(item: Item, text: str, explained: Explanation, out_dir: Path | None, base: str) -> dict[str, Any]:
    words = [
        {"word": w.word, "peak": None if w.peak is None else list(w.peak), "mass": w.mass} for w in explained.words
    ]
    record: dict[str, Any] = {"image": item.name, "text": text, "itm_score": explained.itm_score, "words": words}
    if out_dir is None:
        return record
    from openblip.tasks.heatmap import render

    assert item.image is not None
    pictures = render(item.image, explained)
    try:
        record["heatmap"] = _save(pictures.whole, out_dir / f"{base}.png")
        record["words_heatmap"] = _save(pictures.words, out_dir / f"{base}_words.png")
    except OSError as e:
        return {
            "image": item.name,
            "text": text,
            "error": f"{item.name}: cannot write its heat map into {out_dir}: {e}",
        }
    return record


def _save(picture: Any, path: Path) -> str:
    """Write a PNG whole or not at all (a killed run leaves no half-written picture)."""
    partial = path.with_name(path.name + ".partial")
    try:
        picture.save(partial, format="PNG")
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return str(path)


def _make_out_dir(out: str | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the directory ({e.strerror or e})") from e
    return path


def _stem(name: str) -> str:
    """A file-name-safe short form of an image's name ("-" for standard input)."""
    stem = Path(name).stem if name != "-" else "stdin"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe[:60] or "image"
