"""SDR per stem on the realistic validation split and the old synthetic split, in one run.

    PYTHONPATH=src python benchmarks/realistic.py [--realistic runs/data/realistic_valid] [--realistic ...]
        [--synthetic runs/data/eval]
        [--model default=src/stemforge/assets/default.safetensors] [--model new=runs/realistic_ft/best.safetensors]
        [--cache runs/realistic_cache.json] [--speed 600]

Make the splits with (songs no model was trained on; held-out instruments, kits, voices, genres, masters):

    stemforge data synth --realistic --evaluation --out runs/data/realistic_valid --songs 12 --seconds 20 --seed 100
    stemforge data synth --realistic --evaluation --out runs/data/realistic_valid2 --songs 24 --seconds 20 --seed 112
    git archive 009df8b src | tar -x -C /tmp/old009   # the synthesiser the bundled model was trained and scored with
    PYTHONPATH=/tmp/old009/src python recipes/old_synth_009df8b.py runs/data/eval_009df8b 1000000000 8

Every system separates the mixture (the sum of the stems) through ``stemforge.separate.Separator``; "oracle IRM"
applies ideal ratio masks computed from the true stems (an upper bound for magnitude-mask models). The score is
the whole-track energy-ratio SDR (MDX definition), averaged over the tracks where the stem plays (not silent, nor
40 dB or more below the mix: ``stemforge.metrics.simple.audible``; no track of the realistic validation splits or
the old synthetic split has such a stem): the measure of the hidden real set in issue #12. Scores are cached per
(system weights, track, length) when ``--cache`` is given. With several ``--realistic`` splits each is printed,
then all their tracks pooled: the paired standard error of a difference between two models falls with the songs
(0.08-0.14 dB per stem on 12 songs, 0.03-0.07 dB on 36, for the two defaults compared in MODEL_CARD.md).

``--speed SECONDS`` (default 600; 0 skips) also times every ``--model`` end to end, as users run it: ``stemforge
separate SONG -n CHECKPOINT --threads 2`` as a fresh process on a ``SECONDS``-long song (``examples/example.flac``
tiled, FLAC; decode, model and writing four stems included), the same measurement as ``benchmarks/end_to_end.py``.
``--speed-runs N`` times them in turn N times and adds each model's median; ``--speed-only`` scores no split (without
it, a run with no ``--realistic`` scores ``runs/data/realistic_valid``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from default_model import estimate  # noqa: E402  (benchmarks/ is not a package)
from end_to_end import load, make_song, run_cli  # noqa: E402

from stemforge.checkpoint import read_metadata  # noqa: E402
from stemforge.data.songs import discover_songs, read_stems  # noqa: E402
from stemforge.metrics.simple import audible, mdx_sdr  # noqa: E402
from stemforge.separate import Separator  # noqa: E402
from stemforge.stems import FOUR_STEMS  # noqa: E402

STEMS = list(FOUR_STEMS)


def score_split(folder: str, systems: dict[str, Separator], keys: dict[str, str], cache: dict, seconds: float,
                save) -> tuple[dict[str, dict[str, list[float]]], float, int]:  # noqa: ANN001 - save: callable
    """Energy-ratio SDR per system and stem over the tracks of ``folder`` -> (scores, seconds of audio, tracks)."""
    tracks = discover_songs([folder], STEMS)
    names = list(systems) + ["oracle IRM"]
    scores = {n: {s: [] for s in STEMS} for n in names}
    audio = 0.0
    for track in tracks:
        length = int(track.length * 44100 / track.sample_rate)
        frames = length if seconds <= 0 else min(length, int(seconds * 44100))
        refs = read_stems(track, STEMS, 0, frames, 44100, channels=2)
        plays = audible(refs)
        audio += frames / 44100
        for name in names:
            key = f"{keys[name]}|{Path(folder).name}/{track.name}|{frames}"
            if key not in cache:
                tic = time.perf_counter()
                est = estimate(name, systems, refs)
                cache[key] = {"mdx": [float(mdx_sdr(torch.from_numpy(refs[i]), torch.from_numpy(est[i])))
                                      for i in range(len(STEMS))], "seconds": time.perf_counter() - tic}
                save()
            for i, stem in enumerate(STEMS):
                if plays[i]:  # a silent stem (an orchestral song without drums) has no SDR to average
                    scores[name][stem].append(cache[key]["mdx"][i])
        print(f"  scored {Path(folder).name}/{track.name}", file=sys.stderr, flush=True)
    return scores, audio, len(tracks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realistic", action="append", default=[],
                        help="realistic validation split (repeatable: each is scored, then all of them pooled; "
                             "default: runs/data/realistic_valid)")
    parser.add_argument("--synthetic", default="runs/data/eval_009df8b",
                        help="old synthetic evaluation split, MODEL_CARD.md's ('' skips it)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a model to score (repeatable; default: default=src/stemforge/assets/default.safetensors)")
    parser.add_argument("--seconds", type=float, default=0.0, help="score only the first N seconds of each track")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="JSON file keeping per-track scores between runs")
    parser.add_argument("--speed", type=float, default=600.0,
                        help="song length (s) for each model's end-to-end speed row; 0 skips it")
    parser.add_argument("--speed-runs", type=int, default=1, metavar="N",
                        help="time the models in turn N times (old, new, old, new...) and print each model's median")
    parser.add_argument("--speed-only", action="store_true", help="time the models; score no split")
    args = parser.parse_args()
    if args.speed_runs < 1:
        parser.error(f"--speed-runs must be 1 or more, got {args.speed_runs}")
    if args.speed_only and args.speed <= 0:
        parser.error("--speed-only needs --speed > 0")
    realistic = args.realistic or ["runs/data/realistic_valid"]
    for folder in [] if args.speed_only else realistic + ([args.synthetic] if args.synthetic else []):
        if not Path(folder).is_dir():  # before minutes of timing and model loading, not after
            parser.error(f"split not found: {folder} (make it with the commands in this script's docstring)")
    torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in (args.model or ["default=src/stemforge/assets/default.safetensors"]))
    speed = speed_rows(models, args.speed, args.speed_runs) if args.speed > 0 else []
    if args.speed_only:
        print_speed(speed, args.speed)
        return
    systems = {name: Separator(path, threads=args.threads) for name, path in models.items()}
    systems["classical"] = Separator("classical")
    keys = {name: model_key(read_metadata(path)) for name, path in models.items()}
    keys.update({"classical": "classical", "oracle IRM": "oracle IRM"})
    cache_path = Path(args.cache) if args.cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}

    def save() -> None:
        if cache_path:
            temp = cache_path.with_suffix(".tmp")
            temp.write_text(json.dumps(cache, indent=1))
            temp.replace(cache_path)

    splits = [("realistic validation" + (f" {Path(f).name}" if len(realistic) > 1 else ""), f) for f in realistic]
    splits += [("old synthetic", args.synthetic)] if args.synthetic else []
    results = {}
    for title, folder in splits:
        results[title] = score_split(folder, systems, keys, cache, args.seconds, save)
    if len(realistic) > 1:  # every realistic track at once: the figure with the least noise
        parts = [results[title] for title, _ in splits[: len(realistic)]]
        pooled = {n: {s: [v for part in parts for v in part[0][n][s]] for s in STEMS} for n in parts[0][0]}
        splits.insert(len(realistic), ("realistic validation, all", ""))
        results["realistic validation, all"] = (pooled, sum(p[1] for p in parts), sum(p[2] for p in parts))
    print("\nEnergy-ratio SDR (dB, MDX definition), mean over the tracks where the stem plays\n")
    print("| split | system | " + " | ".join(STEMS) + " | mean |")
    print("|---" * (len(STEMS) + 3) + "|")
    for title, folder in splits:
        scores, audio, count = results[title]
        for name in scores:
            values = [float(np.mean(scores[name][s])) for s in STEMS]
            print(f"| {title} ({count} x {audio / count:.0f} s) | {name} | "
                  + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.2f} |")
    if len(models) > 1:
        first, *others = list(models)
        print()
        for other in others:
            for title, _ in splits:
                scores = results[title][0]
                gains = [float(np.mean(scores[other][s]) - np.mean(scores[first][s])) for s in STEMS]
                print(f"{other} - {first} on {title}: " + ", ".join(f"{s} {g:+.2f}" for s, g in zip(STEMS, gains))
                      + f", mean {np.mean(gains):+.2f} dB")
    if speed:
        print_speed(speed, args.speed)


def print_speed(rows: list[str], seconds: float) -> None:
    print(f"\nEnd to end: `stemforge separate SONG -n CHECKPOINT --threads 2`, {seconds:.0f} s song, "
          f"{os.cpu_count()} cores (measured first, before this process loaded the models)\n")
    print("| model | x real time | wall s | CPU s | peak RSS MB | load |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


def model_key(meta: dict) -> str:
    """A checkpoint's cache key: its weights, and its re-mask (and the refiner's band) and overlap when the config
    has them (same weights, other stems); the keys of checkpoints without them are as before they existed."""
    config = meta.get("config") or {}
    remask = f"|remask {config['remask_fft']}/{config['remask_hop']}" if config.get("remask_fft") else ""
    refine = f"|refine {config['refine_bins']}" if config.get("refine_bins") else ""
    overlap = f"|overlap {config['overlap']}" if config.get("overlap", 0.25) != 0.25 else ""
    return "model:" + meta["weights_sha256"] + remask + refine + overlap


def speed_rows(models: dict[str, str], seconds: float, runs: int = 1) -> list[str]:
    """Each model's ``stemforge separate`` end to end on a ``seconds``-long song, 2 threads, fresh process.

    With ``runs`` > 1 the models take turns ``runs`` times (so a change of load falls on all of them alike), and a
    median row per model follows. Run before this process loads any model: a child's peak RSS (``ru_maxrss``)
    starts from its parent's at fork.
    """
    rows, speeds = [], {name: [] for name in models}
    with tempfile.TemporaryDirectory() as tmp:
        song = make_song(Path(tmp), seconds)
        for run in range(runs):
            for name, path in models.items():
                out = Path(tmp) / f"{name}{run}"
                wall, cpu, rss = run_cli(["separate", str(song), "-n", str(Path(path).resolve()), "-o", str(out),
                                          "--threads", "2"])
                shutil.rmtree(out, ignore_errors=True)
                speeds[name].append(seconds / wall)
                rows.append(f"| {name} | {seconds / wall:.1f}x | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {load()} |")
                print(f"  timed {name}", file=sys.stderr, flush=True)
    if runs > 1:
        rows += [f"| {name}, median of {runs} | {np.median(v):.1f}x | | | | |" for name, v in speeds.items()]
    return rows


if __name__ == "__main__":
    main()
