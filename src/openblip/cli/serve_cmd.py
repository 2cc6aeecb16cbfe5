"""`openblip serve --model M [--scorer M] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
[--max-batch 32] [--max-wait-ms 10] [--max-queue 256] [--index DIR] [--device D] [--dtype D]`

An HTTP API (FastAPI on uvicorn) over the model: POST /v1/caption, /v1/vqa, /v1/match,
/v1/embed, /v1/classify, /v1/search (with --index), OpenAI-compatible /v1/chat/completions;
GET /v1/models, /v1/quality, /healthz, /readyz, /metrics, /docs, and a web page at /.

Concurrent requests are micro-batched (same task and settings, up to --max-batch images, the
first waiting at most --max-wait-ms); past --max-queue waiting images the server answers 503
with Retry-After. With --scorer (an ITM model; the served model itself when it has the heads),
every caption and answer gets its ITM probability, recorded in /metrics and /v1/quality.

Binds to 127.0.0.1 unless --host says otherwise; --api-key (or $OPENBLIP_API_KEY) makes every
endpoint but /healthz require `Authorization: Bearer KEY`. SIGTERM: stops taking connections,
answers the requests in flight, exits with code 0 (at most --shutdown-timeout seconds later).
Prints the URL on stdout once listening.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openblip.cli import UsageError
from openblip.cli.common import add_command, add_model_arguments, finite_float, load_pipeline, max_pixels

API_KEY_ENV = "OPENBLIP_API_KEY"
log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "serve", "serve the model over HTTP (API, OpenAI-compatible chat, web page)", __doc__)
    add_model_arguments(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    g.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 = any free port)")
    g.add_argument(
        "--api-key", metavar="KEY", help=f"require Authorization: Bearer KEY (default: ${API_KEY_ENV}, else none)"
    )
    g.add_argument("--scorer", metavar="M", help="ITM model scoring every caption / answer (may be --model itself)")
    g.add_argument("--index", metavar="DIR", help="retrieval index for /v1/search (openblip index)")
    g.add_argument("--allow-remote-images", action="store_true", help="fetch http(s) image URLs (default: refused)")
    g.add_argument(
        "--shutdown-timeout", metavar="S", type=finite_float, default=10.0, help="seconds to finish requests on SIGTERM"
    )
    b = p.add_argument_group("batching and limits")
    b.add_argument(
        "--max-batch", metavar="N", type=int, default=32, help="images per model batch (default: %(default)s)"
    )
    b.add_argument(
        "--max-wait-ms", metavar="MS", type=finite_float, default=10.0, help="wait for a batch to fill (default: 10)"
    )
    b.add_argument(
        "--max-queue", metavar="N", type=int, default=256, help="waiting images before 503 (default: %(default)s)"
    )
    b.add_argument(
        "--request-timeout", metavar="S", type=finite_float, default=60.0, help="seconds before 504 (default: 60)"
    )
    b.add_argument(
        "--max-body-mb", metavar="MB", type=finite_float, default=20.0, help="request body limit, MiB (default: 20)"
    )
    b.add_argument(
        "--max-pixels",
        metavar="N",
        type=int,
        help="refuse larger images with 413 (default: $OPENBLIP_MAX_PIXELS or PIL's)",
    )
    b.add_argument("--max-images", metavar="N", type=int, default=16, help="images per request (default: %(default)s)")
    b.add_argument(
        "--max-texts", metavar="N", type=int, default=1024, help="texts or labels per request (default: %(default)s)"
    )
    q = p.add_argument_group("quality")
    q.add_argument(
        "--low-score", metavar="P", type=finite_float, default=0.3, help="ITM probability counted low (default: 0.3)"
    )
    q.add_argument(
        "--quality-window", metavar="N", type=int, default=1000, help="outputs in the rolling window (default: 1000)"
    )
    q.add_argument(
        "--reference",
        metavar="PATH",
        type=Path,
        help="drift reference: a file saved from GET /v1/quality/reference, or a folder of images to caption at start",
    )
    q.add_argument(
        "--reference-size", metavar="N", type=int, default=200, help="outputs forming the start-up reference"
    )
    q.add_argument("--keep-low-score", type=Path, metavar="DIR", help="keep low-score inputs and outputs here")
    q.add_argument("--keep-max-files", metavar="N", type=int, default=1000, help="low-score items kept at most")
    q.add_argument("--keep-max-mb", metavar="MB", type=finite_float, default=256.0, help="MiB kept at most")
    p.set_defaults(run=run)


def _config(args: argparse.Namespace) -> Any:
    from openblip.serve.config import MiB, ServeConfig

    try:
        return ServeConfig(
            model_id=args.model,
            api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            request_timeout_s=args.request_timeout,
            allow_remote_images=args.allow_remote_images,
            max_body_bytes=int(args.max_body_mb * MiB),
            max_pixels=max_pixels(args),
            max_images=args.max_images,
            max_texts=args.max_texts,
            low_score=args.low_score,
            quality_window=args.quality_window,
            reference_size=args.reference_size,
            reference_file=args.reference if args.reference is not None and not args.reference.is_dir() else None,
            reference_images=_reference_images(args),
            keep_low_score=args.keep_low_score,
            keep_max_files=args.keep_max_files,
            keep_max_bytes=int(args.keep_max_mb * MiB),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


def _reference_images(args: argparse.Namespace) -> tuple[Path, ...]:
    """--reference DIR: its image files (recursive, sorted), the first --reference-size of them."""
    if args.reference is None or not args.reference.is_dir():
        return ()
    from openblip.cli.io import UnusableInput, expand_inputs

    found = [p for p in expand_inputs([str(args.reference)]) if not isinstance(p, UnusableInput)]
    paths = tuple(Path(p) for p in found[: max(args.reference_size, 0)])
    if not paths:
        raise UsageError(f"--reference {args.reference}: no image files in this directory")
    return paths


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port number")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from openblip.serve.app import create_app
        from openblip.serve.engine import Engine
    except ImportError as e:
        raise UsageError(f"serving needs the serve extra: pip install 'openblip[serve]' ({e})") from e

    config = _config(args)
    if args.shutdown_timeout < 0:
        raise UsageError("--shutdown-timeout must be >= 0")
    pipe = load_pipeline(args)
    scorer = None
    if args.scorer is not None:
        scorer = pipe if args.scorer == args.model else load_pipeline(args, source=args.scorer, image_size=None)
        if not scorer.model.cfg.heads:
            raise UsageError(f"--scorer {args.scorer}: no ITM head (use a retrieval / ITM or pre-trained checkpoint)")
    engine = Engine(pipe, scorer, _open_index(args, pipe, scorer))
    if config.reference_images and (
        scorer is None or pipe.model.text_decoder is None or pipe.model.cfg.decoder_over_text
    ):
        raise UsageError(
            "--reference DIR captions its images at start-up: it needs a captioning --model and a --scorer"
        )
    try:
        app = create_app(config, engine)
    except ValueError as e:  # a bad --reference file
        raise UsageError(str(e)) from e
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if config.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s without --api-key: anyone who reaches this port can use the model", args.host)
    shown = f"[{host}]" if ":" in host else host
    print(f"openblip serve: http://{shown}:{port} (model {args.model})", flush=True)
    server = _server_class(uvicorn)(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, round(args.shutdown_timeout)),
            lifespan="on",
        )
    )
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _server_class(uvicorn: Any) -> Any:
    """uvicorn's Server, except that SIGTERM / SIGINT end in exit code 0 after the graceful
    shutdown: uvicorn raises the signal again once it has drained, so the process would end
    "killed by SIGTERM" even when every request was answered. A second signal still forces
    the exit (uvicorn's handle_exit)."""

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _open_index(args: argparse.Namespace, pipe: Any, scorer: Any) -> Any:
    if args.index is None:
        return None
    from openblip.cli.index_cmd import check_index
    from openblip.tasks.index import EmbeddingIndex, RetrievalIndexError, model_fingerprint

    try:
        index = EmbeddingIndex.open(args.index)
    except (RetrievalIndexError, OSError, ValueError) as e:
        raise UsageError(f"--index {args.index}: {e}") from e
    for candidate in (pipe, scorer):
        if candidate is not None and candidate.model.cfg.heads:
            try:
                index.check_model(model_fingerprint(candidate.model))
            except ValueError:
                continue
            if candidate is not pipe and pipe.model.cfg.heads:  # search runs on --model then
                raise UsageError(f"--index {args.index} was built by --scorer, but --model has its own heads")
            check_index(index, args.index, embeddings=True)
            return index
    raise UsageError(f"--index {args.index}: built by {index.identity.source}, not by --model or --scorer")
