"""Evaluation benchmarks, each measured in one run on this machine:

1. museval vs stemforge BSS Eval v4 on one long 4-stem stereo track (default 3 minutes): wall and CPU
   time, peak memory (extra resident memory of the call, each in its own fresh process), the
   time ratio, and the largest difference of the per-track median SDR/ISR/SIR/SAR.
2. Every registered model on the evaluation split (``--data DIR``; without it a few synthetic songs
   from ``stemforge.data.synth`` with evaluation seeds): SDR per stem (median over tracks), real-time
   factor of separation and peak memory, one row per model.

    PYTHONPATH=src python benchmarks/evaluate.py [--data DIR] [--minutes 3] [--threads 1] [--skip-museval]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path


def _reset_peak() -> int:
    """Reset the kernel's resident-memory high-water mark; return current RSS in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _long_track(minutes: float):
    """(references, estimates) float32 (4, 2, T): a synthetic song and imperfect 'estimates' of it."""
    import numpy as np

    from stemforge.data.synth import EVALUATION_SEED_BASE, FOUR_STEMS, render_song

    stems = render_song(EVALUATION_SEED_BASE, minutes * 60)
    refs = np.stack([stems[s] for s in FOUR_STEMS]).astype(np.float32)
    rng = np.random.default_rng(0)
    mix = refs.sum(0)
    ests = 0.8 * refs + 0.05 * mix[None] + 0.01 * rng.standard_normal(refs.shape).astype(np.float32)
    return refs, ests.astype(np.float32)


def _score_child(which: str, minutes: float, threads: int, queue: mp.Queue) -> None:
    _set_threads(threads)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    refs, ests = _long_track(minutes)
    before = _reset_peak()
    cpu, wall = time.process_time(), time.perf_counter()
    if which == "museval":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_metrics import museval_v4

        scores = museval_v4(refs, ests)
    else:
        from stemforge.metrics import bss_eval_v4

        result = bss_eval_v4(refs, ests)
        scores = np.stack([result.sdr, result.isr, result.sir, result.sar])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status("VmHWM")
    with np.errstate(all="ignore"):
        medians = np.nanmedian(scores, axis=-1)
    mono = [i for i, r in enumerate(refs) if np.array_equal(r[0], r[1])]
    well_posed = None
    if which == "ours" and mono:
        # Stems with identical channels make the Gram system singular: compare with the well-posed
        # problem where each copy differs by 1e-9 of noise (wherever the stem is not silent).
        from stemforge.metrics import bss_eval_v4

        nudged = refs.astype(np.float64)
        noise = np.random.default_rng(1).standard_normal(refs.shape[-1])
        for i in mono:
            nudged[i, 1] += 1e-9 * noise * (refs[i, 1] != 0)
        other = bss_eval_v4(nudged, ests)
        with np.errstate(all="ignore"):
            other_medians = np.nanmedian(np.stack([other.sdr, other.isr, other.sir, other.sar]), axis=-1)
        well_posed = float(np.nanmax(np.abs(other_medians - medians)))
    queue.put({"wall": wall, "cpu": cpu, "peak_extra": peak - before, "peak": peak, "medians": medians.tolist(),
               "mono": mono, "well_posed": well_posed})


def _run_child(target, *args) -> dict:
    """Run ``target(*args, queue)`` in a fresh process (clean memory high-water mark); its result."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:
            if not proc.is_alive():
                raise RuntimeError(f"child exited with code {proc.exitcode}") from None
    proc.join()
    return result


def museval_vs_ours(minutes: float, threads: int, skip_museval: bool) -> None:
    print(f"\n== BSS Eval v4 on a {minutes:g}-minute 4-stem stereo track ({threads} thread(s)) ==")
    ours = _run_child(_score_child, "ours", minutes, threads)
    rows = [("stemforge", ours)]
    if not skip_museval:
        rows.append(("museval 0.4.1", _run_child(_score_child, "museval", minutes, threads)))
    print(f"{'implementation':<16}{'wall s':>9}{'cpu s':>9}{'extra MB':>10}{'peak MB':>9}{'time ratio':>12}")
    reference = rows[-1][1]["wall"]
    for name, r in rows:
        print(f"{name:<16}{r['wall']:>9.1f}{r['cpu']:>9.1f}{r['peak_extra'] / 2**20:>10.0f}{r['peak'] / 2**20:>9.0f}"
              f"{reference / r['wall']:>11.1f}x")
    if not skip_museval:
        import numpy as np

        diff = np.nanmax(np.abs(np.array(rows[0][1]["medians"]) - np.array(rows[1][1]["medians"])))
        print(f"largest |median difference| over SDR/ISR/SIR/SAR and stems: {diff:.2e} dB")
    if ours["mono"]:
        print(f"stems with identical channels (singular Gram system): {ours['mono']}; stemforge vs the well-posed "
              f"problem (copies nudged by 1e-9): {ours['well_posed']:.2e} dB")
        print(f"museval / stemforge time ratio: wall {rows[1][1]['wall'] / ours['wall']:.1f}x, "
              f"cpu {rows[1][1]['cpu'] / ours['cpu']:.1f}x")


def _model_child(model: str, data: str, threads: int, queue: mp.Queue) -> None:
    _set_threads(threads)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from stemforge.evaluate import EvaluateOptions, find_tracks, load_track, references_for, score_track
    from stemforge.metrics import nanmedian
    from stemforge.separate import Separator

    from stemforge.errors import ModelError
    from stemforge.models import build

    options = EvaluateOptions(metrics=("bss",), progress=False)
    try:
        separator = Separator(model)
    except ModelError:  # an architecture without trained weights: time it with its random initialisation
        separator = Separator(build(model))
    tracks = [load_track(song, options.sources) for song in find_tracks(Path(data), options.sources)]
    for track in tracks:  # read before the measurement, as the peak is that of separating and scoring
        track.stems, track.mixture
    before = _reset_peak()
    separation, audio, sdr = 0.0, 0.0, {}
    for track in tracks:
        start = time.perf_counter()
        with torch.inference_mode():
            estimates = separator.separate_array(track.mixture, track.sample_rate)
        separation += time.perf_counter() - start
        audio += track.mixture.shape[1] / track.sample_rate
        result = score_track(track.name, references_for(track, estimates), estimates, track.sample_rate, ("bss",))
        for stem, scores in result["stems"].items():
            sdr.setdefault(stem, []).append(np.nan if scores["SDR"] is None else scores["SDR"])
    medians = {stem: float(nanmedian(np.array(v))) for stem, v in sdr.items()}
    queue.put({"sdr": medians, "rtf": separation / audio, "peak_extra": _status("VmHWM") - before})


def synthetic_split(folder: Path, songs: int, seconds: float) -> Path:
    from stemforge.data.synth import EVALUATION_SEED_BASE, render_song_with_plan, write_song

    for i in range(songs):
        stems, meta = render_song_with_plan(EVALUATION_SEED_BASE + i, seconds)
        write_song(folder / f"eval{i:02d}", stems, 44100, meta, bits="32f")
    return folder


def models_table(data: Path, threads: int, models: list[str] | None) -> None:
    from stemforge.models import available
    from stemforge.stems import FOUR_STEMS

    names = models or [spec.name for spec in available()]
    print(f"\n== Registered models on {data} ({threads} thread(s); untrained networks have random weights) ==")
    stems = FOUR_STEMS
    print(f"{'model':<14}" + "".join(f"{s:>9}" for s in stems) + f"{'RTF':>8}{'peak MB':>9}")
    for name in names:
        try:
            r = _run_child(_model_child, name, str(data), threads)
        except Exception as exc:  # one broken model must not hide the others
            print(f"{name:<14} failed: {exc}")
            continue
        cells = "".join(f"{r['sdr'][s]:>9.2f}" if s in r["sdr"] else f"{'-':>9}" for s in stems)
        print(f"{name:<14}{cells}{r['rtf']:>8.3f}{r['peak_extra'] / 2**20:>9.0f}")
    print("SDR: BSS Eval v4 median over windows then tracks (dB); RTF: separation seconds per audio second;"
          " peak MB: extra resident memory while separating and scoring")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="evaluation split (MUSDB-style folders); default: synthetic songs")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the museval comparison track")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both implementations (default 1)")
    parser.add_argument("--skip-museval", action="store_true", help="time stemforge only")
    parser.add_argument("--skip-models", action="store_true", help="skip the per-model table")
    parser.add_argument("--models", nargs="+", help="models for the table (default: every registered model)")
    parser.add_argument("--songs", type=int, default=3, help="synthetic songs when --data is not given")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each synthetic song")
    args = parser.parse_args()
    museval_vs_ours(args.minutes, args.threads, args.skip_museval)
    if not args.skip_models:
        if args.data is not None:
            models_table(args.data, args.threads, args.models)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                models_table(synthetic_split(Path(tmp), args.songs, args.seconds), args.threads, args.models)


if __name__ == "__main__":
    main()
