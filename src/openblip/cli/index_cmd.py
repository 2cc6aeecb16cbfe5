"""`openblip index IMAGE_OR_DIR... --model M --index DIR`: build or extend a retrieval index.

Creates DIR (an index of ITC image embeddings, see openblip/tasks/index.py) or adds to it;
images already indexed (same absolute path) are skipped. `--texts FILE` (one text per line or
a JSON list) builds a text index instead, for `openblip search --image`. --model may be left
out when DIR exists (the model that built it is used); a different model is refused.

Records: {"image", "row"} for each image added; {"image", "row", "skipped": "already indexed"};
{"image", "error"} for an image that could not be used. With --texts: {"text", "row"},
{"text", "row", "skipped"}, and {"text", "error"} for a text with nothing left after cleaning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.cli.common import (
    IMAGES_HELP,
    Item,
    add_command,
    add_model_arguments,
    add_run_arguments,
    batches,
    check_run_arguments,
    images_of,
    load_items,
    load_pipeline,
    require,
    text_error,
)
from openblip.cli.guard import ModelFailure, ModelGuard
from openblip.cli.io import STDIN, RecordWriter, expand_inputs, progress_bar, read_list

if TYPE_CHECKING:
    from openblip.api import BlipPipeline
    from openblip.tasks.index import EmbeddingIndex


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "index", "build or extend a retrieval index", __doc__)
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR", help=IMAGES_HELP)
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (created when missing)")
    p.add_argument("--texts", metavar="FILE", help="index these texts (one per line or a JSON list) instead of images")
    add_model_arguments(p, required=False)
    add_run_arguments(p, batch_size=32)
    p.set_defaults(run=run)


def open_for_model(args: argparse.Namespace, kind_name: str | None) -> tuple[BlipPipeline, EmbeddingIndex]:
    """The pipeline and the index at --index: the index's own model unless --model is given
    (which must then be the same model). kind_name: create an index of that kind if missing."""
    from openblip.tasks.index import EmbeddingIndex, IndexKind, RetrievalIndexError

    kind = None if kind_name is None else IndexKind(kind_name)
    if EmbeddingIndex.exists(args.index):
        try:
            index = EmbeddingIndex.open(args.index)
        except RetrievalIndexError as e:
            raise UsageError(str(e)) from e
        ident = index.identity
        if args.model is None:
            pipe = load_pipeline(args, source=ident.source, tokenizer=ident.tokenizer, image_size=ident.image_size)
        else:
            pipe = load_pipeline(args, image_size=args.image_size or ident.image_size)
        try:
            opened = pipe.open_index(args.index, kind)
        except (RetrievalIndexError, ValueError) as e:
            raise UsageError(str(e)) from e
        check_index(opened, args.index, embeddings=False)
        return pipe, opened
    if kind is None:
        raise UsageError(f"--index {args.index}: no index there")
    if args.model is None:
        raise UsageError(f"--model is required to create a new index at {args.index}")
    pipe = load_pipeline(args)
    from openblip.tasks.inputs import require_heads

    require(lambda m: require_heads(m, "retrieval indexing"), pipe)
    tok = None if args.tokenizer is None else str(Path(args.tokenizer).resolve())
    try:
        return pipe, pipe.open_index(args.index, kind, tokenizer=tok)
    except (RetrievalIndexError, ValueError) as e:
        raise UsageError(str(e)) from e


def check_index(index: EmbeddingIndex, directory: str, *, embeddings: bool) -> None:
    """Read the index's rows, and its embeddings when `embeddings` (else only their file
    headers), now, so that a part file that is missing or cut short is a usage error naming the
    directory, not a traceback in the middle of the run, nor an index extended past a part that
    search will then refuse. Rows and embeddings are cached by the index: the run reads them once."""
    try:
        index.entries  # noqa: B018 (a property that reads the part files)
        if embeddings:
            index.embeddings()  # checks each part's shape as it loads it
        else:
            index.check_embeddings()
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UsageError(f"--index {directory}: damaged index ({e})") from e


def run(args: argparse.Namespace) -> int:
    check_run_arguments(args)
    if args.texts and args.images:
        raise UsageError("give images or --texts, not both")
    if not args.texts and not args.images:
        raise UsageError("nothing to index: give images (files or directories) or --texts FILE")
    if args.texts:
        texts = read_list(args.texts, "texts")
        pipe, index = open_for_model(args, "texts")
        return _index_texts(args, pipe, index, texts)
    names = expand_inputs(args.images, all_files=args.all_files)
    pipe, index = open_for_model(args, "images")
    guard = ModelGuard()
    with (
        RecordWriter(args.output, ("image", "row", "skipped", "error")) as out,
        progress_bar(len(names), "index") as bar,
    ):
        for batch in batches(names, args.batch_size):
            keys = [str(Path(n).expanduser().resolve()) for n in batch]
            known = {n: None if n == STDIN else index.row_of(k) for n, k in zip(batch, keys)}
            todo = [n for n in batch if known[n] is None and n != STDIN]
            items = {it.name: it for it in load_items(pipe, todo)}
            if STDIN in batch:  # re-ranking reads indexed images again from their paths
                items[STDIN] = Item(STDIN, error=f"{STDIN}: standard input cannot be indexed (give a file path)")
            rows = guard.items(
                list(items.values()),
                lambda ok: pipe.index_images(index, [it.name for it in ok], images_of(ok), batch_size=args.batch_size),
            )
            added = dict(zip((it.name for it in items.values() if it.error is None), rows))
            for n in batch:
                row = known[n]
                if row is not None:
                    out.write({"image": n, "row": row, "skipped": "already indexed"})
                elif items[n].error is not None:
                    out.write({"image": n, "error": items[n].error})
                else:
                    out.write({"image": n, "row": added[n]})
            bar.update(len(batch))
    return out.exit_code


def _index_texts(args: argparse.Namespace, pipe: BlipPipeline, index: EmbeddingIndex, texts: list[str]) -> int:
    from openblip.tasks.inputs import check_text

    clean = index.clean_texts
    errors = {t: text_error(lambda t, i: check_text(t, i, clean), t, i) for i, t in enumerate(texts)}
    known = {t: index.row_of(t) for t in texts}
    todo = [t for t in dict.fromkeys(texts) if known[t] is None and errors[t] is None]
    for t, r in zip(todo, ModelGuard().run(todo, lambda ts: pipe.index_texts(index, ts))):
        if isinstance(r, ModelFailure):
            errors[t] = r.message
    with RecordWriter(args.output, ("text", "row", "skipped", "error")) as out:
        for t in texts:
            if errors[t] is not None:
                out.write({"text": t, "error": errors[t]})
            elif known[t] is not None:
                out.write({"text": t, "row": known[t], "skipped": "already indexed"})
            else:
                out.write({"text": t, "row": index.row_of(t)})
    return out.exit_code
