"""`openblip search --index DIR --text T [--k K] [--rerank R]`: retrieve from an index.

--text T (repeatable) searches an image index (built with `openblip index IMAGES`); --image
IMG (repeatable) searches a text index (built with `openblip index --texts FILE`). Candidates
are ranked by ITC cosine; the best R are re-ranked by ITM match logit + cosine, as the
original retrieval evaluation (images are read again from their indexed paths for this).
The index's own model is used unless --model names one (which must be the same model).

Records, one per result, best first: {"text", "rank", "image", "score", "itc_score",
"itm_score"} for --text queries; {"image", "rank", "text", "score", "itc_score", "itm_score"}
for --image queries. rank starts at 1; score is itm_logit + itc_score for re-ranked results
and itc_score otherwise; itm_score is the ITM probability of match (null when not re-ranked).
{"image", "error"} for a query image that could not be used; {"text", "error"} for a query
text with nothing left after cleaning ("", "!!!").
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.cli.common import (
    add_command,
    add_model_arguments,
    add_run_arguments,
    check_run_arguments,
    images_of,
    item_batches,
    text_error,
)
from openblip.cli.guard import ModelFailure, ModelGuard
from openblip.cli.index_cmd import check_index, open_for_model
from openblip.cli.io import RecordWriter, expand_inputs

if TYPE_CHECKING:
    from openblip.tasks.retrieval import Hit


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "search", "search a retrieval index", __doc__)
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (openblip index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", action="append", help="find images for this text (repeatable)")
    q.add_argument(
        "--image",
        action="append",
        help="find texts for this image (repeatable); a directory is each of its images, in sorted path order",
    )
    p.add_argument("--k", type=int, default=10, help="results per query (default: %(default)s)")
    p.add_argument(
        "--rerank", type=int, default=32, help="ITC candidates re-ranked with ITM, 0 = off (default: %(default)s)"
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--faiss", dest="use_faiss", action="store_const", const=True, help="always search with FAISS")
    how.add_argument("--exact", dest="use_faiss", action="store_const", const=False, help="never use FAISS")
    p.add_argument("--nlist", type=int, default=0, help="FAISS IVF lists for approximate search (default: flat, exact)")
    add_model_arguments(p, required=False)
    add_run_arguments(p, batch_size=32)
    p.set_defaults(run=run)


def _result(query: dict[str, Any], rank: int, hit: Hit, found_field: str, found: str | None) -> dict[str, Any]:
    return {
        **query,
        "rank": rank,
        found_field: found,
        "score": hit.score,
        "itc_score": hit.itc,
        "itm_score": hit.itm,
    }


def run(args: argparse.Namespace) -> int:
    from openblip.tasks.inputs import check_text
    from openblip.tasks.retrieval import SearchOptions

    check_run_arguments(args)
    if args.k < 1 or args.rerank < 0 or args.nlist < 0:
        raise UsageError("--k must be >= 1, --rerank and --nlist >= 0")
    options = SearchOptions(args.k, args.rerank, args.use_faiss, args.nlist, args.batch_size)
    pipe, index = open_for_model(args, None)
    expected = "images" if args.text else "texts"
    if index.kind.value != expected:
        flag = "--text" if args.text else "--image"
        raise UsageError(f"{flag} searches an index of {expected}; {args.index} holds {index.kind.value}")
    check_index(index, args.index, embeddings=True)
    if len(index) == 0:  # every item given to `openblip index` failed: no query could find anything
        raise UsageError(f"--index {args.index}: the index is empty (nothing was added to it)")
    if args.nlist > len(index):
        raise UsageError(f"--nlist {args.nlist}: more lists than the {len(index)} indexed rows")
    guard = ModelGuard()
    try:
        asked, hit_field = ("text", "image") if args.text else ("image", "text")
        columns = (asked, "rank", hit_field, "score", "itc_score", "itm_score", "error")
        with RecordWriter(args.output, columns) as out:
            if args.text:
                clean = index.clean_texts
                errors = [text_error(lambda t, i: check_text(t, i, clean), t, i) for i, t in enumerate(args.text)]
                good = [t for t, err in zip(args.text, errors) if err is None]
                found = iter(guard.run(good, lambda ts: pipe.search_images(index, ts, options)))
                for text, err in zip(args.text, errors):
                    hits = next(found) if err is None else None
                    if hits is None or isinstance(hits, ModelFailure):
                        out.write({"text": text, "error": err if hits is None else hits.message})
                        continue
                    for rank, h in enumerate(hits, 1):
                        out.write(_result({"text": text}, rank, h, "image", h.entry.path))
                return out.exit_code
            names = expand_inputs(args.image, all_files=args.all_files)
            for items in item_batches(pipe, names, args.batch_size, "search"):
                results = iter(guard.items(items, lambda ok: pipe.search_texts(index, images_of(ok), options)))
                for it in items:
                    if it.error is not None:
                        out.write({"image": it.name, "error": it.error})
                        continue
                    for rank, h in enumerate(next(results), 1):
                        out.write(_result({"image": it.name}, rank, h, "text", h.entry.text))
            return out.exit_code
    except ImportError as e:  # --faiss without faiss installed
        raise UsageError(str(e)) from e
