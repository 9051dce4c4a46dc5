"""Digests of rendered evaluation splits, so a figure is only compared with one scored on the same audio (issue #12).

    PYTHONPATH=src python benchmarks/split_digests.py --check benchmarks/split_digests.json runs/data/realistic_valid ...
    PYTHONPATH=src python benchmarks/split_digests.py --write benchmarks/split_digests.json runs/data/realistic_valid ...

The splits are rendered from their seeds on each machine (`runs/` is not in the repository), and the tenth session
found that today's renders of the same seeds differ from earlier ones (the previous default read 5.05 dB on
validation there against 5.07 before). A song's digest is the sha256 of its decoded samples (every wav and flac of
its folder, float32, in name order; not the files' bytes, which carry encoder versions), so ``--check`` says whether
a split on this machine is the one MODEL_CARD.md's figures were scored on. ``--write`` records the named splits
(replacing their entries, keeping the others). Exit status 1 when a checked song differs or is missing.

``benchmarks/split_digests.json`` holds the eleventh session's renders (the tenth session's, kept): realistic_dev,
realistic_dev2, realistic_valid, realistic_valid2, eval_009df8b and game_music.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def song_digest(folder: Path) -> str:
    """sha256 of the decoded float32 samples of every wav and flac in ``folder``, in name order, names included."""
    digest = hashlib.sha256()
    for path in audio_files(folder):
        try:
            wav, rate = sf.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:  # soundfile's errors are RuntimeErrors
            raise ValueError(f"{path}: not readable audio ({exc})") from exc
        digest.update(f"{path.name}:{rate}:{wav.shape}".encode())
        digest.update(np.ascontiguousarray(wav).tobytes())
    return digest.hexdigest()


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac") and p.is_file())


def split_digests(split: Path) -> dict[str, str]:
    """song folder name -> digest, for every folder of ``split`` that holds audio."""
    return {song.name: song_digest(song) for song in sorted(split.iterdir()) if song.is_dir() and audio_files(song)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="JSON", help="compare the splits with the digests recorded in JSON")
    mode.add_argument("--write", metavar="JSON", help="record the splits' digests in JSON")
    parser.add_argument("splits", nargs="+", help="split folders (one song folder each, as `stemforge data synth` makes)")
    args = parser.parse_args()
    missing = [s for s in args.splits if not Path(s).is_dir()]
    if missing:
        parser.error(f"not a folder: {missing[0]}")
    record = Path(args.check or args.write)
    if args.check and not record.exists():
        parser.error(f"{record}: no such file")
    try:
        known = json.loads(record.read_text()) if record.exists() else {}
    except (OSError, ValueError) as exc:
        parser.error(f"{record}: not a digest file ({exc})")
    failed = False
    for split in map(Path, args.splits):
        try:
            found = split_digests(split)
        except ValueError as exc:
            parser.error(str(exc))
        if args.write:
            known[split.name] = found
            print(f"{split.name}: {len(found)} songs recorded")
            continue
        expected = known.get(split.name)
        if expected is None:
            print(f"{split.name}: not in {record}")
            failed = True
            continue
        differ = sorted(name for name in expected if name in found and found[name] != expected[name])
        absent = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        failed |= bool(differ or absent)
        status = "same audio" if not (differ or absent) else f"{len(differ)} differ, {len(absent)} missing"
        print(f"{split.name}: {len(expected)} songs, {status}" + (f", {len(extra)} not recorded" if extra else "")
              + (f" (first: {(differ or absent)[0]})" if differ or absent else ""))
    if args.write:  # whole or not at all
        partial = record.with_name(f".{record.name}.part")
        partial.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(partial, record)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
