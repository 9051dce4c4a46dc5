"""``stemforge remix``: re-balance a folder of stems into a new mix (``stemforge.remix``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stemforge.errors import StemforgeError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("remix", help="re-balance stems into a new mix (karaoke, drumless, solo, ...)",
                              allow_abbrev=False,
                              description="Mix a folder of stems (as `stemforge separate` writes them) into one "
                                          "file with per-stem gains and pans, at the loudness of the original "
                                          "(mixture.* in the folder, else the sum of the stems; EBU R128) and "
                                          "limited to -1 dBTP true peak.")
    p.add_argument("folder", metavar="STEM_DIR", help="folder holding drums.wav, bass.wav, ... (and optionally "
                                                      "mixture.wav)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="output file (.wav, .flac or .mp3)")
    p.add_argument("--gain", metavar="STEM=DB,...", help="gains in dB, e.g. vocals=-inf,drums=+3 (-inf mutes)")
    p.add_argument("--pan", metavar="STEM=P,...", help="balance from -1 (left) to 1 (right), e.g. other=-0.3")
    shortcut = p.add_mutually_exclusive_group()
    shortcut.add_argument("--karaoke", action="store_true", help="mute the vocals (same as --gain vocals=-inf)")
    shortcut.add_argument("--no-drums", action="store_true", help="mute the drums (same as --gain drums=-inf)")
    shortcut.add_argument("--solo", metavar="STEM", help="mute every stem but STEM")
    p.add_argument("--bits", choices=("16", "24", "32f"), default="24", help="bit depth of wav/flac (default 24)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemforge.audio import OUTPUT_FORMATS, check_output_format
    from stemforge.remix import check_folder, parse_levels, remix_folder

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise StemforgeError(f"-o {out}: the extension must be one of {', '.join('.' + f for f in OUTPUT_FORMATS)}")
    if out.exists() and not args.force:
        raise StemforgeError(f"{out}: already exists (use --force to overwrite)")
    gains = parse_levels(args.gain, "gain")
    pans = parse_levels(args.pan, "pan")
    folder = check_folder(args.folder)  # every check on the folder before any audio is decoded
    check_output_format(fmt, args.bits, folder.channels)
    muted = []
    if args.karaoke:
        muted = ["vocals"]
    elif args.no_drums:
        muted = ["drums"]
    elif args.solo is not None:
        if args.solo not in folder.stems:
            raise StemforgeError(f"--solo {args.solo}: no such stem; the stems are {', '.join(folder.stems)}")
        muted = [s for s in folder.stems if s != args.solo]
    for stem in muted:
        if stem not in folder.stems:
            raise StemforgeError(f"{stem} is not among the stems ({', '.join(folder.stems)}), so it cannot be muted")
        if stem in gains:
            raise StemforgeError(f"--gain {stem} contradicts the shortcut that mutes it")
        gains[stem] = float("-inf")
    remix_folder(folder, out, gains, pans, bits=args.bits, overwrite=args.force)  # streamed: memory flat in length
    print(f"{args.folder} -> {out}")
    return 0
