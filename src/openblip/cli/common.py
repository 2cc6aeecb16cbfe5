"""Arguments and plumbing shared by the inference commands (caption, vqa, match, index,
search, classify): model loading with usage errors for unusable models, per-item image loading
that turns a bad image into its own error record, and batching.

Nothing here imports torch, PIL or the models at module level: every command module imports
this one to build its parser, and `openblip --help` should not pay for them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openblip.cli import UsageError
from openblip.cli.io import STDIN, UnusableInput, check_output, progress_bar
from openblip.limits import DEFAULT_MAX_PIXELS

MAX_PIXELS_ENV = "OPENBLIP_MAX_PIXELS"

# The help of every command's image arguments: the order of the records (cli/io.py expand_inputs).
IMAGES_HELP = (
    "image files or directories; records follow the arguments' order, a directory's image files (recursive, "
    "by extension: .jpg .png .webp .gif .bmp .tif ...; names starting with '.' skipped; --all-files takes every "
    "file) in sorted path order, a path given twice once"
)
STDIN_HELP = "; '-' reads one image from standard input"

if TYPE_CHECKING:  # the API module imports torch and the models: loaded when a command runs
    from PIL import Image

    from openblip.api import BlipPipeline
    from openblip.model.blip import Blip
    from openblip.model.generation_config import BeamRules


def add_command(subparsers: Any, name: str, summary: str, doc: str | None) -> argparse.ArgumentParser:
    """A subcommand's parser: `summary` in `openblip --help`, the module docstring `doc` as its
    description with its line breaks kept."""
    return subparsers.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        required=required,
        help="checkpoint: openblip or transformers directory, Salesforce .pth, hub id (owner/name) or URL",
    )
    g.add_argument("--tokenizer", help="vocab.txt / tokenizer.json / directory (default: the checkpoint's)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="weights and activations (default: fp32; fp16 on the CPU runs in fp32 with a warning)",
    )
    g.add_argument("--image-size", type=int, help="input size in pixels (default: the checkpoint's)")
    g.add_argument(
        "--cpu-kernels",
        choices=("auto", "on", "off"),
        help="our CPU kernels for fp32 CPU inference: auto (what was measured fastest on this CPU kind), on, "
        "off (torch's ops) (default: $OPENBLIP_CPU_KERNEL, else auto; -v logs the choice)",
    )


def add_run_arguments(parser: argparse.ArgumentParser, *, batch_size: int = 16) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--batch-size", type=int, default=batch_size, help="images per batch (default: %(default)s)")
    g.add_argument(
        "--all-files",
        action="store_true",
        help="a directory gives every file it holds, not only those with an image extension (each non-image "
        "then gets an error record)",
    )
    g.add_argument(
        "--output",
        metavar="FILE",
        help="write records to FILE (.jsonl, .parquet or .csv) instead of stdout; .parquet/.csv records are "
        "streamed to FILE.partial.jsonl and converted when the run ends (a killed run leaves that file, "
        "holding every finished record)",
    )
    g.add_argument(
        "--max-pixels",
        type=int,
        help=f"refuse images with more pixels (default: ${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS})",
    )


def finite_float(text: str) -> float:
    """argparse type for decoding settings: a number, refused when infinite or NaN (float()
    takes "inf" and "nan", which the decoder turns into NaN probabilities or meaningless
    scores for every image rather than an error)."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from e
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def max_pixels(args: argparse.Namespace) -> int:
    value = args.max_pixels
    if value is None:
        env = os.environ.get(MAX_PIXELS_ENV)
        try:
            value = int(env) if env else DEFAULT_MAX_PIXELS
        except ValueError as e:
            raise UsageError(f"${MAX_PIXELS_ENV}={env!r} is not an integer") from e
    if value < 1:
        raise UsageError(f"--max-pixels must be >= 1, got {value}")
    return int(value)


def check_run_arguments(args: argparse.Namespace) -> None:
    """Refuse a bad --output or --batch-size before any work is done (--max-pixels is checked
    when the model is loaded)."""
    check_output(args.output)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")


def min_length_of(args: argparse.Namespace, *, default: int) -> int:
    """--min-length, refused above --max-length when given; when left out, `default` capped at
    --max-length (a short --max-length alone is no contradiction)."""
    if args.min_length is None:
        return min(default, max(args.max_length, 0))
    if args.min_length > args.max_length:
        raise UsageError(f"--min-length {args.min_length} is greater than --max-length {args.max_length}")
    return int(args.min_length)


def load_pipeline(
    args: argparse.Namespace, *, source: str | None = None, tokenizer: str | None = None, image_size: int | None = None
) -> BlipPipeline:
    """The model named by --model (or `source`); any failure to load it is a usage error, as is
    a --device this machine does not have (said before the model is read)."""
    from openblip.api import load
    from openblip.convert.fetch import is_hub_id
    from openblip.device import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from e
    model = source or args.model
    try:
        return load(
            model,
            device=args.device,
            dtype=args.dtype,
            image_size=image_size or args.image_size,
            tokenizer=tokenizer or args.tokenizer,
            max_pixels=max_pixels(args),
            cpu_kernels=args.cpu_kernels,
        )
    except (OSError, ValueError, ImportError, RuntimeError) as e:  # missing files, bad checkpoints, no network
        # "models/mine" is a hub id as much as a path: say that no such path exists here either
        hub_only = is_hub_id(model) and not os.path.exists(os.path.expanduser(model))
        where = " (no such local path; tried it as a hub id)" if hub_only else ""
        raise UsageError(f"cannot load model {model}{where}: {e}") from e


def text_error(check: Callable[[str, int], object], text: str, index: int) -> str | None:
    """The message of the ValueError that `check(text, index)` raises (tasks.inputs.check_text,
    tasks.vqa.clean_question), None when the text is usable: such a text gets error records,
    the others run."""
    try:
        check(text, index)
    except ValueError as e:
        return str(e)
    return None


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    """`--text T` (repeatable) or `--texts-file FILE`, one of them required (match, explain)."""
    texts = parser.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", action="append", help="a text (repeat for several)")
    texts.add_argument("--texts-file", metavar="FILE", help="texts, one per line or a JSON list")


@dataclass(frozen=True)
class Texts:
    """The texts given on the command line, each with its error (None when usable), and the usable ones."""

    all: list[str]
    errors: list[str | None]
    usable: list[str]


def texts_of(args: argparse.Namespace) -> Texts:
    """The `add_text_arguments` texts, each checked as match and explain use them (tasks.inputs.check_text)."""
    from openblip.cli.io import read_list
    from openblip.tasks.inputs import check_text

    texts: list[str] = args.text if args.text else read_list(args.texts_file, "texts")
    errors = [text_error(check_text, t, i) for i, t in enumerate(texts)]
    return Texts(texts, errors, [t for t, err in zip(texts, errors) if err is None])


def require(check: Callable[[Blip], None], pipeline: BlipPipeline) -> None:
    """Run a capability check (tasks.inputs.require_*) on the pipeline's model; its ValueError
    becomes a usage error naming the model: the checkpoint cannot do what the command asks."""
    try:
        check(pipeline.model)
    except ValueError as e:
        raise UsageError(f"model {pipeline.source.source}: {e}") from e


@dataclass
class Item:
    name: str  # as given on the command line (or found in a directory)
    image: Image.Image | None = None
    error: str | None = None


def load_items(pipeline: BlipPipeline, names: Sequence[str]) -> list[Item]:
    """Open and validate each image; a failure is recorded on its item, never raised. The name
    "-" is an image read from standard input (`cat photo.jpg | openblip caption -`)."""
    from openblip.image import ImageError

    items = []
    for name in names:
        if isinstance(name, UnusableInput):  # a named pipe found in a directory: never opened
            items.append(Item(str(name), error=name.error))
            continue
        try:
            source = _read_stdin() if name == STDIN else name
            items.append(Item(name, pipeline.load_image(source, name)))
        except ImageError as e:
            items.append(Item(name, error=str(e)))
        except (OSError, ValueError) as e:
            items.append(Item(name, error=f"{name}: {e}"))
    return items


def _read_stdin() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise OSError("standard input is a terminal, not image data")
    return sys.stdin.buffer.read()


def images_of(items: Sequence[Item]) -> list[Image.Image]:
    """The images that loaded, in order."""
    return [it.image for it in items if it.image is not None]


def batches(names: Sequence[str], size: int) -> Iterator[list[str]]:
    for lo in range(0, len(names), size):
        yield list(names[lo : lo + size])


def item_batches(pipeline: BlipPipeline, names: Sequence[str], size: int, desc: str) -> Iterator[list[Item]]:
    """The items of `names`, loaded `size` at a time (load_items), behind a progress bar on
    stderr that advances once the caller is done with each batch."""
    with progress_bar(len(names), desc) as bar:
        for batch in batches(names, size):
            yield load_items(pipeline, batch)
            bar.update(len(batch))


BEAM_RULES_HELP = (
    "how beam search scores and stops: 'transformers-4.15' (default) as the original BLIP code computed it, "
    "'transformers' as today's transformers does (to compare with a transformers pipeline); see docs/parity.md"
)


BEAM_RULES = ("transformers-4.15", "transformers")  # BeamRules' values; the model is not imported for --help


def add_beam_rules(group: argparse._ActionsContainer) -> None:
    """`--beam-rules`, the CLI face of GenerationConfig.beam_rules (caption and vqa)."""
    group.add_argument("--beam-rules", choices=BEAM_RULES, default=BEAM_RULES[0], help=BEAM_RULES_HELP)


def beam_rules_of(args: argparse.Namespace) -> BeamRules:
    from openblip.model.generation_config import BeamRules

    return BeamRules(args.beam_rules)
