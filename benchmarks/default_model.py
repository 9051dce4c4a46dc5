"""Score the bundled default model beside the classical baseline and oracle ideal ratio masks.

    PYTHONPATH=src python benchmarks/default_model.py --data EVAL_DIR [--checkpoint PATH] [--seconds 30]

EVAL_DIR holds MUSDB-layout track folders (drums/bass/other/vocals .wav). Every model separates the same mixture
(the sum of the stems) through ``stemforge.separate.Separator``; the oracle applies per-channel ideal ratio masks
|S_j| / sum_k |S_k| (STFT 4096/1024) computed from the true stems, an upper bound for magnitude-mask models.
Scores: BSS Eval v4 SDR (museval definition: 1 s windows, median over windows, then median over tracks) and the
whole-track energy-ratio SDR (MDX "SDR", mean over tracks). Prints Markdown tables and the speed of each model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stemforge.checkpoint import read_metadata
from stemforge.dsp.spectral import istft, stft
from stemforge.metrics.bss_eval import bss_eval_v4, nanmedian
from stemforge.metrics.simple import mdx_sdr
from stemforge.separate import Separator
from stemforge.data.songs import discover_songs, read_stems
from stemforge.stems import FOUR_STEMS

STEMS = list(FOUR_STEMS)


def oracle_irm(stems: np.ndarray, n_fft: int = 4096, hop: int = 1024) -> np.ndarray:
    """stems (S, C, T) -> IRM estimates (S, C, T) of their sum."""
    spec = stft(torch.from_numpy(stems).double(), n_fft, hop)  # (S, C, F, N)
    mag = spec.abs()
    masks = mag / mag.sum(0, keepdim=True).clamp_min(1e-12)
    return istft(masks * spec.sum(0, keepdim=True), stems.shape[-1], n_fft, hop).float().numpy()


def estimate(name: str, systems: dict[str, Separator], refs: np.ndarray) -> np.ndarray:
    """One system's stems for the mixture of ``refs``: (stems, channels, time) -> (stems, channels, time).

    ``name`` is "oracle IRM" (masks from the true stems) or a key of ``systems``.
    """
    if name == "oracle IRM":
        return oracle_irm(refs)
    out = systems[name].separate_array(refs.sum(0), 44100)
    return np.stack([out[s] for s in STEMS])


def v4_sdr(references: np.ndarray, estimates: np.ndarray, window: int = 44100) -> np.ndarray:
    """BSS Eval v4 image SDR per source, median over 1 s windows: (S, C, T) x2 -> (S,).

    For images, v4's SDR is |s|^2 / |s_hat - s|^2 per window (the distortion filters only enter ISR/SIR/SAR);
    windows where any reference or estimate is all-zero are NaN, as in museval. Computed directly because
    ``bss_eval_v4`` fits the filters too, and its solve fails on references with identical channels.
    """
    count = max(1, references.shape[-1] // window)
    length = count * window if references.shape[-1] >= window else references.shape[-1]
    ref = references[..., :length].astype(np.float64).reshape(*references.shape[:2], count, -1)
    est = estimates[..., :length].astype(np.float64).reshape(*estimates.shape[:2], count, -1)
    active = (ref.sum(1) != 0).any(-1).all(0) & (est.sum(1) != 0).any(-1).all(0)  # (windows,)
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = 10 * np.log10(np.sum(ref**2, axis=(1, 3)) / np.sum((est - ref) ** 2, axis=(1, 3)))
    return nanmedian(np.where(active, sdr, np.nan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="evaluation split (MUSDB-layout folders)")
    parser.add_argument("--checkpoint", default="src/stemforge/assets/default.safetensors")
    parser.add_argument("--seconds", type=float, default=0.0, help="score only the first N seconds of each track (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="JSON file keeping per-track scores between runs (classical/oracle are computed once)")
    parser.add_argument("--check", action="store_true", help="also check v4_sdr against bss_eval_v4 where it runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tracks = discover_songs([args.data], STEMS)
    systems = {"default": Separator(args.checkpoint, threads=args.threads), "classical": Separator("classical")}
    names = list(systems) + ["oracle IRM"]
    # Scores are cached per (system, track, length); the default model is keyed by its weights' hash.
    keys = {"default": "default:" + read_metadata(args.checkpoint)["weights_sha256"], "classical": "classical", "oracle IRM": "oracle IRM"}
    cache_path = Path(args.cache) if args.cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    v4: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STEMS} for n in names}
    mdx: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STEMS} for n in names}
    seconds = {n: 0.0 for n in names}
    audio = 0.0
    for track in tracks:
        length = int(track.length * 44100 / track.sample_rate)  # frames at the model's rate
        frames = length if args.seconds <= 0 else min(length, int(args.seconds * 44100))
        refs = read_stems(track, STEMS, 0, frames, 44100, channels=2)
        audio += frames / 44100
        for name in names:
            key = f"{keys[name]}|{track.name}|{frames}"
            if key not in cache:
                tic = time.perf_counter()
                est = estimate(name, systems, refs)
                elapsed = time.perf_counter() - tic
                medians = v4_sdr(refs, est)
                if args.check:
                    try:
                        full = bss_eval_v4(refs, est).track_medians()["SDR"]
                        print(f"  {name}: max |v4_sdr - bss_eval_v4| = {np.nanmax(np.abs(full - medians)):.2e} dB")
                    except RuntimeError as exc:
                        print(f"  {name}: bss_eval_v4 failed ({str(exc).splitlines()[0][:60]})")
                cache[key] = {"v4": [float(m) for m in medians], "seconds": elapsed,
                              "mdx": [float(mdx_sdr(refs[i], est[i])) for i in range(len(STEMS))]}
                if cache_path:
                    cache_path.write_text(json.dumps(cache, indent=1))
            seconds[name] += cache[key]["seconds"]
            for i, stem in enumerate(STEMS):
                v4[name][stem].append(cache[key]["v4"][i])
                mdx[name][stem].append(cache[key]["mdx"][i])
        print(f"scored {track.name}", flush=True)

    def table(title: str, scores: dict[str, dict[str, list[float]]], agg) -> None:
        print(f"\n{title} ({len(tracks)} tracks, {audio:.0f} s of audio)\n")
        print("| model | " + " | ".join(STEMS) + " | mean |")
        print("|---" * (len(STEMS) + 2) + "|")
        for name in names:
            values = [float(agg(scores[name][s])) for s in STEMS]
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.2f} |")
        gains = [float(agg(scores["default"][s]) - agg(scores["classical"][s])) for s in STEMS]
        trail = [float(agg(scores["oracle IRM"][s]) - agg(scores["default"][s])) for s in STEMS]
        print("| default - classical | " + " | ".join(f"{v:+.2f}" for v in gains) + f" | {np.mean(gains):+.2f} |")
        print("| oracle IRM - default | " + " | ".join(f"{v:+.2f}" for v in trail) + f" | {np.mean(trail):+.2f} |")

    table("BSS Eval v4 SDR (dB), median over 1 s windows then median over tracks", v4, np.nanmedian)
    table("Energy-ratio SDR (dB, MDX definition), mean over tracks", mdx, np.mean)
    print(f"\nspeed ({args.threads} torch thread(s), shared machine): " + ", ".join(
        f"{n} {audio / max(seconds[n], 1e-9):.1f}x real time" for n in names))


if __name__ == "__main__":
    main()
