"""``stemforge live``: a JACK client with a stereo input and a stereo output pair per stem, mixed from the terminal.

Keys on the screen: up/down (or k/j) pick a stem, +/- change its gain by 1 dB, m or space mute it, 1-9 mute
stem n, q quits. ``--no-screen`` runs without it (until Ctrl-C, or ``--seconds``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import sys
import time
from typing import Any, Iterator

from stemforge.errors import StemforgeError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("live", help="real-time separation as a JACK client (stereo in, a stereo pair per stem out)",
                              allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--name", default="lowlatency", metavar="MODEL", help="model (default lowlatency: 46 ms latency)")
    p.add_argument("--server", metavar="NAME", help="JACK server name (default: $JACK_DEFAULT_SERVER or 'default')")
    p.add_argument("--client-name", default="stemforge", metavar="NAME", help="JACK client name (default stemforge)")
    p.add_argument("--connect-in", metavar="L,R",
                   help="connect the input from these two ports, or 'physical' (the first two capture ports)")
    p.add_argument("--connect-out", action="append", default=[], metavar="STEM=L,R",
                   help="connect a stem's pair to these ports, or STEM=physical (repeatable; 'all=...' for every stem)")
    p.add_argument("--gain", action="append", default=[], metavar="STEM=DB", help="start-up gain of a stem in dB (repeatable)")
    p.add_argument("--mute", action="append", default=[], metavar="STEM", help="start with STEM muted (repeatable)")
    p.add_argument("--mode", choices=("auto", "frames", "segments"), default="auto", help="stream mode (default auto)")
    p.add_argument("--segment", type=float, metavar="S", help="segments mode: segment length in seconds")
    p.add_argument("--no-check", action="store_true", help="skip timing the model at the server's period")
    p.add_argument("--no-screen", action="store_true", help="no terminal screen (also without a terminal)")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: run until q or Ctrl-C)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads for the model (default 1)")
    p.set_defaults(func=run)


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise StemforgeError(f"{flag} {item!r}: expected STEM=VALUE")
        out.append((key.strip(), value.strip()))
    return out


def _ports(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@contextlib.contextmanager
def _raw_terminal() -> Iterator[bool]:
    """cbreak mode on stdin while the screen runs; yields whether keys can be read."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(timeout: float) -> str | None:
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    key = os.read(sys.stdin.fileno(), 8).decode(errors="ignore")
    return {"\x1b[A": "up", "\x1b[B": "down"}.get(key, key[:1])


def _table(live: Any, selected: int) -> Any:
    from rich.table import Table

    sep = live.separator
    table = Table(title=f"stemforge live: {sep.mode} mode, latency {sep.latency_samples} samples "
                        f"({1000 * sep.latency_seconds:.1f} ms)",
                  caption=f"xruns {live.xruns}   periods {live.blocks}   DSP load {100 * live.load:.0f} %   "
                          "[up/down] stem [+/-] gain [m] mute [q] quit")
    for column in ("#", "stem", "gain dB", "state"):
        table.add_column(column)
    for i, stem in enumerate(sep.sources):
        mark = ">" if i == selected else " "
        state = "[red]muted[/red]" if stem in live.muted else "[green]on[/green]"
        table.add_row(f"{mark}{i + 1}", stem, f"{live.gain_db(stem):+.1f}", state)
    return table


def _screen(live: Any, until: float) -> None:
    from rich.live import Live

    stems = live.separator.sources
    selected = 0
    # The JACK callback needs the GIL within its period: ask Python to hand it over sooner than every 5 ms.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    with _raw_terminal() as keys, Live(_table(live, selected), auto_refresh=False, transient=False) as view:
        while time.monotonic() < until and live.error is None:
            key = _read_key(0.1) if keys else (time.sleep(0.1) or None)
            if key in ("q", "Q"):
                break
            if key in ("up", "k"):
                selected = (selected - 1) % len(stems)
            elif key in ("down", "j"):
                selected = (selected + 1) % len(stems)
            elif key in ("+", "="):
                live.set_gain_db(stems[selected], live.gain_db(stems[selected]) + 1)
            elif key in ("-", "_"):
                live.set_gain_db(stems[selected], live.gain_db(stems[selected]) - 1)
            elif key in ("m", " "):
                live.toggle_mute(stems[selected])
            elif key and key.isdigit() and 1 <= int(key) <= len(stems):
                live.toggle_mute(stems[int(key) - 1])
            view.update(_table(live, selected), refresh=True)
    sys.setswitchinterval(interval)


def run(args: argparse.Namespace) -> int:
    import torch

    from stemforge.live import LiveError, LiveOptions, LiveSeparator
    from stemforge.stream import StreamingSeparator, StreamOptions

    if args.threads < 1:
        raise StemforgeError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        gains = {stem: float(db) for stem, db in _pairs(args.gain, "--gain")}
    except ValueError:
        raise StemforgeError(f"--gain: the gain must be a number of dB, got {args.gain}") from None
    separator = StreamingSeparator(args.name, StreamOptions(mode=args.mode, segment=args.segment))
    connect_out: dict[str, list[str]] = {}
    for stem, ports in _pairs(args.connect_out, "--connect-out"):
        for name in (separator.sources if stem == "all" else [stem]):
            connect_out[name] = _ports(ports)
    options = LiveOptions(client_name=args.client_name, server=args.server,
                          connect_in=_ports(args.connect_in) if args.connect_in else [], connect_out=connect_out,
                          gains_db=gains, muted=args.mute, check=not args.no_check)
    live = LiveSeparator(separator, options)
    until = time.monotonic() + (args.seconds if args.seconds is not None else float("inf"))
    with live:
        if args.no_screen or not sys.stdout.isatty():
            seen = 0
            while time.monotonic() < until and live.error is None:
                time.sleep(0.1)
                if live.xruns > seen:
                    logger.warning("%d xrun(s) so far", live.xruns)
                    seen = live.xruns
        else:
            _screen(live, until)
    if live.error:
        raise LiveError(live.error)
    print(f"stemforge live: {live.blocks} periods, {live.xruns} xruns, latency {live.latency_samples} samples "
          f"({1000 * separator.latency_seconds:.1f} ms)", file=sys.stderr)
    return 0
