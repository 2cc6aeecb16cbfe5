"""The `openblip` command line. Each subcommand lives in its own module with
`register(subparsers)`, which adds a parser whose `run` default returns the exit code.

Exit codes: 0 every item succeeded, 1 some item failed (the rest still written), 2 usage error.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys

from openblip.threads import prefer_passive_wait

# Subcommand modules, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "openblip.cli.caption_cmd",
    "openblip.cli.vqa_cmd",
    "openblip.cli.match_cmd",
    "openblip.cli.explain_cmd",
    "openblip.cli.index_cmd",
    "openblip.cli.search_cmd",
    "openblip.cli.classify_cmd",
    "openblip.cli.convert_cmd",
    "openblip.cli.data_cmd",
    "openblip.cli.train_cmd",
    "openblip.cli.eval_cmd",
    "openblip.cli.serve_cmd",
    "openblip.cli.bootstrap_cmd",
    "openblip.cli.demo_cmd",
    "openblip.cli.reproduce_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="openblip", description="BLIP: caption, answer, match, retrieve, train, bootstrap.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        # No try/except: a subcommand whose module fails to import is a broken install, and
        # skipping it would turn that into a puzzling "invalid choice" for the user.
        importlib.import_module(name).register(sub)
    return parser


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command that was chosen: `openblip data synth` -> synth's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _innermost(chosen, args)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that an unknown option after a subcommand is reported by that
    subcommand's parser (its usage, not the top-level one) with the closest option it has."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        sub = _innermost(parser, args)
        message = f"unrecognized arguments: {' '.join(unknown)}"
        flag = next((u.split("=", 1)[0] for u in unknown if u.startswith("-") and u != "-"), None)
        if flag is not None:
            options = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(flag, options, n=1, cutoff=0.7)
            if close:
                message += f" (did you mean {close[0]}?)"
        sub.error(message)
    return args


def main(argv: list[str] | None = None) -> int:
    prefer_passive_wait()  # before any command loads torch (openblip/threads.py: shared cores)
    parser = build_parser()
    args = _parse(parser, argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except UsageError as e:
        print(f"openblip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (`openblip caption DIR | head -1`): stop quietly, as other tools do.
        # stdout goes to /dev/null so that Python's final flush does not fail again (see the
        # Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


class UsageError(Exception):
    """Bad arguments or unusable inputs detected after parsing: exit code 2."""


if __name__ == "__main__":
    sys.exit(main())
