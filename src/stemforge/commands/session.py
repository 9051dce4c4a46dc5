"""``stemforge session``: an Ardour or REAPER session for stems already written (``separate --session`` does it
for stems as they are written)."""

from __future__ import annotations

import argparse
from pathlib import Path

DAW_CHOICES = ("ardour", "reaper")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("session", help="make an Ardour or REAPER session of a folder of stems",
                              allow_abbrev=False,
                              description="Make a DAW session of a folder of stems (<stem>.<ext>, as `stemforge "
                                          "separate` writes them): one track per stem at 0, with names and colours, "
                                          "plus the original mix, muted. Ardour: a session folder STEM_DIR/NAME; "
                                          "REAPER: STEM_DIR/NAME.rpp. Paths inside are relative.")
    p.add_argument("folder", metavar="STEM_DIR", help="the folder of stems")
    p.add_argument("--daw", required=True, choices=DAW_CHOICES, help="the DAW to write a session for")
    p.add_argument("--mix", metavar="FILE", help="the original mix, added as a muted track")
    p.add_argument("--stems", metavar="A,B",
                   help="the stems to expect, in track order (default: the four or six stems, or X and no_X)")
    p.add_argument("--name", metavar="NAME", help="the session's name (default: STEM_DIR's name)")
    p.add_argument("--tempo", type=float, metavar="BPM", help="the tempo in beats per minute, if known")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing session")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemforge.daw import read_stem_folder, session_target, write_session
    from stemforge.audio import OutputExistsError

    stems = [s.strip() for s in args.stems.split(",") if s.strip()] if args.stems else None
    target = session_target(args.daw, args.folder, args.name)
    if target.exists() and not args.force:  # before reading any audio
        raise OutputExistsError(f"{target}: already exists (use --force to replace it)")
    session = read_stem_folder(args.folder, stems=stems, mix=args.mix, name=args.name, tempo=args.tempo)
    written = write_session(session, args.daw, Path(args.folder), force=args.force)
    print(f"{args.daw} session: {written}")
    return 0
