"""The ``stemforge`` command: a thin layer over the Python API.

Subcommands live in ``stemforge.commands``; each module there registers its own parser and imports the heavy
parts (torch, the models) inside its handler only, so ``stemforge --help`` starts without them. User errors
(``StemforgeError``) print one line and exit 1; Ctrl-C exits 130. ``-v`` / ``-q`` set the level of the
``stemforge`` logger, whose records (and Python warnings) print as one line ``warning: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import warnings

from stemforge import __version__
from stemforge.errors import StemforgeError

logger = logging.getLogger("stemforge")


class _OneLineFormatter(logging.Formatter):
    """``level: message`` on one line (newlines in the message become spaces)."""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split("\n"))
        return f"{record.levelname.lower()}: {message}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted (test captures swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - a text stream
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - StreamHandler.__init__ assigns it
        pass


def configure_logging(level: int = logging.WARNING) -> logging.Handler:
    """Send the ``stemforge`` logger's records at ``level`` and above to stderr, one line each.

    Calling it again replaces the handler it installed before (no duplicate lines). Records still propagate
    to the root logger, so an application's own logging set-up (or pytest's caplog) sees them too.

    Args:
        level: ``logging.DEBUG`` (``-v``), ``logging.WARNING`` (default) or ``logging.ERROR`` (``-q``).

    Returns:
        The handler attached to the ``stemforge`` logger.
    """
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_OneLineFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` replacement: a Python warning becomes one ``warning: ...`` line (hidden by -q)."""
    logging.getLogger("stemforge.warnings").warning("%s", message)


def build_parser() -> argparse.ArgumentParser:
    """The ``stemforge`` argument parser with every subcommand registered (imports no torch).

    Returns:
        The parser; a parsed namespace carries the handler in ``func``.
    """
    import stemforge.commands

    parser = argparse.ArgumentParser(prog="stemforge", description="Separate music into stems; train and evaluate separators.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"stemforge {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                           default=logging.WARNING, help="print debug messages")
    verbosity.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.ERROR,
                           help="print errors only (no warnings)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(stemforge.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"stemforge.commands.{module.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``stemforge`` command line.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 for a user error, 2 for usage, 130 on Ctrl-C.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Set for this command only: main() called from Python leaves the caller's logging and warnings as they were.
    level, showwarning = logger.level, warnings.showwarning
    handler = configure_logging(args.log_level)
    logger.debug("stemforge %s: %s", __version__, args.command)
    warnings.showwarning = _warning_to_log
    try:
        return int(args.func(args) or 0)
    except StemforgeError as exc:
        print(f"error: {getattr(exc, 'cli_message', None) or exc}", file=sys.stderr)  # library words -> our flags
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = showwarning
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
