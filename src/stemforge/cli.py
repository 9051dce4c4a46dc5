"""The ``stemforge`` command: a thin layer over the Python API.

Subcommands live in ``stemforge.commands``; each module there registers its own parser. User errors
(``StemforgeError``) print one line and exit 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from stemforge import __version__
from stemforge.errors import StemforgeError


def build_parser() -> argparse.ArgumentParser:
    import stemforge.commands

    parser = argparse.ArgumentParser(prog="stemforge", description="Separate music into stems; train and evaluate separators.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"stemforge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(stemforge.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"stemforge.commands.{module.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StemforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
