"""``stemforge data synth`` writes synthetic multitrack songs (MUSDB18 layout); ``data check`` checks datasets."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from stemforge.errors import StemforgeError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make and inspect training data", allow_abbrev=False)
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    synth = commands.add_parser("synth", help="render synthetic multitrack songs (MUSDB18 folder layout)", allow_abbrev=False)
    synth.add_argument("--out", type=Path, required=True, help="output folder; one sub-folder per song")
    synth.add_argument("--songs", type=int, default=10, help="number of songs (default 10)")
    synth.add_argument("--seconds", type=float, default=60.0, help="length of each song in seconds (default 60)")
    synth.add_argument("--seed", type=int,
                       help="seed of the first song; song i uses seed + i (default 500000000: songs no bundled "
                            "model was trained or evaluated on; the default model's training songs are seeds 0-119)")
    synth.add_argument("--sample-rate", type=int, default=44100)
    synth.add_argument("--six-stems", action="store_true", help="also write guitar.wav and piano.wav")
    synth.add_argument("--bits", choices=["16", "32f"], default="16", help="wav sample format (default 16)")
    synth.add_argument("--backend", choices=["auto", "soundfont", "numpy"], default="auto",
                       help="instrument synthesis: General MIDI SoundFont via FluidSynth, our numpy synths, "
                            "or auto (SoundFont when installed)")
    synth.add_argument("--jobs", type=int, default=1, help="songs rendered in parallel (processes)")
    synth.add_argument("--realistic", action="store_true",
                       help="realistic songs: recorded instruments and drum kits, human voices from recorded speech, "
                            "seven genres, mastered to -14..-8 LUFS (needs the Debian packages listed in DATA_LICENCES.md)")
    synth.add_argument("--force", action="store_true", help="replace songs that already exist in --out")
    synth.add_argument("--evaluation", action="store_true",
                       help="render evaluation songs (held-out seed range counted from --seed, held-out instruments)")
    synth.set_defaults(func=run_synth)

    check = commands.add_parser("check", help="find and check the songs of stem datasets (rates, lengths, files)", allow_abbrev=False)
    check.add_argument("roots", nargs="+", type=Path, help="dataset folders, .stem.mp4 files or .csv/.json manifests")
    check.add_argument("--sources", default="drums,bass,other,vocals", help="comma-separated sources")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print one line per song; a bad file raises a StemforgeError naming it (exit 1)."""
    from stemforge.data.songs import discover_songs

    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    songs = discover_songs(args.roots, sources)
    total = 0.0
    for song in songs:
        present = [s for s in sources if song.sources.get(s)]
        missing = [s for s in sources if not song.sources.get(s)]
        note = f"  (silent: {', '.join(missing)})" if missing else ""
        print(f"{song.name}: {song.sample_rate} Hz, {song.seconds:.1f} s, {', '.join(present)}{note}")
        total += song.seconds
    print(f"{len(songs)} songs, {total / 60:.1f} min, all files consistent")
    return 0


def _render_one(job: tuple[int, float, int, tuple[str, ...], str, str, str, bool]) -> float:
    from stemforge.data.synth import render_song_with_plan, write_song

    seed, seconds, sample_rate, stems, bits, folder, backend, force = job
    if backend == "realistic":
        from stemforge.data.synth.realistic import render_realistic_song

        tracks, metadata = render_realistic_song(seed, seconds, sample_rate, stems)
    else:
        tracks, metadata = render_song_with_plan(seed, seconds, sample_rate, stems, backend)
    write_song(Path(folder), tracks, sample_rate, metadata, bits=16 if bits == "16" else "32f", force=force)
    return seconds


def run_synth(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from stemforge.data.synth import (
        DEFAULT_SYNTH_SEED,
        EVALUATION_SEED_BASE,
        FOUR_STEMS,
        SIX_STEMS,
        default_model_training_overlap,
    )
    from stemforge.data.synth.mixing import SYNTH_PURPOSE
    from stemforge.data.synth.render import resolve_backend
    from stemforge.extras import require

    require("pedalboard", "synth", SYNTH_PURPOSE)  # before any folder is made or worker started
    if args.songs < 1:
        raise StemforgeError(f"--songs must be >= 1, got {args.songs}")
    if args.seconds <= 0:
        raise StemforgeError(f"--seconds must be > 0, got {args.seconds}")
    if args.seed is None:
        args.seed = DEFAULT_SYNTH_SEED
    if args.seed < 0:
        raise StemforgeError(f"--seed must be >= 0, got {args.seed}")
    if args.jobs < 1:
        raise StemforgeError(f"--jobs must be >= 1, got {args.jobs}")
    first = args.seed + (EVALUATION_SEED_BASE if args.evaluation else 0)
    if not args.evaluation and first + args.songs > EVALUATION_SEED_BASE:
        raise StemforgeError(f"training seeds must stay below {EVALUATION_SEED_BASE} (evaluation seeds start there)")
    trained = default_model_training_overlap(first, args.songs)
    if trained:
        span = str(trained.start) if len(trained) == 1 else f"{trained.start}-{trained.stop - 1}"
        logger.warning(f"songs with seeds {span} are ones the bundled default model was trained on: fine for "
                       f"training, flattering for evaluating it (leave out --seed for unseen songs)")
    stems = SIX_STEMS if args.six_stems else FOUR_STEMS
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StemforgeError(f"cannot create output folder {args.out}: {exc.strerror}") from None
    if args.realistic:
        from stemforge.data.synth.realistic import missing_packages

        reason = missing_packages(args.evaluation)
        if reason:
            raise StemforgeError(f"--realistic needs packages that are missing: {reason}")
        backend = "realistic"
    else:
        backend = resolve_backend(args.backend)  # decide (and warn) once, not per worker
    jobs = [(first + i, args.seconds, args.sample_rate, stems, args.bits, str(args.out / f"song_{first + i:010d}"),
             backend, args.force) for i in range(args.songs)]
    taken = [Path(job[5]).name for job in jobs if os.path.lexists(job[5])]
    if taken and not args.force:  # before any rendering: the whole run would fail on its first existing song
        raise StemforgeError(f"{args.out}: {len(taken)} of these songs already exist ({taken[0]}"
                             f"{', ...' if len(taken) > 1 else ''}); use --force to replace them or another --seed")
    start = time.perf_counter()
    cpu_start = time.process_time()
    with tqdm(total=args.songs, unit="song", desc="synth") as bar:
        if args.jobs == 1:
            for job in jobs:
                _render_one(job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                for _ in pool.map(_render_one, jobs):
                    bar.update()
    wall = time.perf_counter() - start
    audio = args.songs * args.seconds
    summary = {"backend": backend, "songs": args.songs, "audio_seconds": audio, "wall_seconds": round(wall, 2),
               "x_real_time": round(audio / wall, 1), "jobs": args.jobs}
    if args.jobs == 1:
        summary["x_real_time_per_core"] = round(audio / max(time.process_time() - cpu_start, 1e-9), 1)
    print(json.dumps(summary))
    return 0
