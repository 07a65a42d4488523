"""Training subcommands of ``python -m animegan``: ``distill``, ``train`` and ``export``.

``SUBCOMMANDS`` maps a name to (add_arguments(parser), run(args) -> exit code);
:func:`animegan.cli.main` hands over here when the first argument is one of the names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import TrainingError, distill, export, gan

SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "distill": (distill.add_arguments, distill.run),
    "train": (gan.add_arguments, gan.run),
    "export": (export.add_arguments, export.run),
}


def build_parser(name: str) -> argparse.ArgumentParser:
    add_arguments, _ = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"animegan {name}")
    add_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    """``argv[0]`` is the subcommand's name, the rest its arguments."""
    name, rest = argv[0], argv[1:]
    args = build_parser(name).parse_args(rest)
    _, run = SUBCOMMANDS[name]
    try:
        return run(args)
    except TrainingError as exc:
        print(f"animegan {name}: {exc}", file=sys.stderr)
        return 1
