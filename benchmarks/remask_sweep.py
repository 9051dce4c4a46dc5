"""Post-filters on a network's stems, scored on the dev split: how the default's re-mask setting was chosen (#12).

    git show 88f07a4:src/stemforge/assets/default.safetensors > runs/default_88f07a4.safetensors
    PYTHONPATH=src python benchmarks/remask_sweep.py --model runs/default_88f07a4.safetensors \
        --split runs/data/realistic_dev --split runs/data/realistic_dev2 [--variant summed:24576:8192 ...]

Each song's first ``--seconds`` are separated whole by the network (a checkpoint without a re-mask of its own),
then every variant post-filters those stems and is scored like ``benchmarks/realistic.py`` (energy-ratio SDR over
the stems that play). Variants (``--variant``, repeatable; default: the MODEL_CARD.md table):

* ``none``: the network's stems;
* ``summed:N:H``: ``dsp.wiener.remask`` (magnitudes summed over the channels) in an N-point STFT, hop H: what the
  U-Net's ``remask_fft`` / ``remask_hop`` run, here on the whole excerpt rather than per 10 s segment;
* ``perchannel:N:H:P``: ratios of each channel's magnitudes to the power P;
* ``mwf:N:H``: the multichannel Wiener filter (``metrics.oracle``'s), the stems' magnitudes as PSDs and their
  spatial covariances over the excerpt.

One thread; about 15 minutes for the default variants on the 36 dev songs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stemforge.checkpoint import read_metadata
from stemforge.data.songs import discover_songs, read_stems
from stemforge.dsp.spectral import istft, stft
from stemforge.dsp.wiener import remask
from stemforge.metrics.oracle import EPS, _covariance, _wiener_stats
from stemforge.metrics.simple import audible, mdx_sdr
from stemforge.separate import Separator
from stemforge.stems import FOUR_STEMS

STEMS = list(FOUR_STEMS)
DEFAULT_VARIANTS = ["none", "perchannel:2048:512:1", "perchannel:4096:1024:1", "perchannel:8192:2048:1",
                    "perchannel:16384:4096:1", "perchannel:16384:2048:1", "perchannel:32768:8192:1",
                    "perchannel:8192:2048:0.5", "perchannel:8192:2048:0.75", "perchannel:8192:2048:1.25",
                    "summed:16384:4096", "summed:16384:8192", "summed:12288:4096", "summed:24576:8192", "mwf:8192:2048"]
Filter = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (stems (S, C, T), mix (C, T)) -> stems


def per_channel(n_fft: int, hop: int, power: float) -> Filter:
    def run(est: np.ndarray, mix: np.ndarray) -> np.ndarray:
        spec = stft(torch.from_numpy(est), n_fft, hop)
        weight = spec.abs().pow(power)
        masks = weight / weight.sum(0, keepdim=True).clamp_min(1e-12)
        return istft(masks * stft(torch.from_numpy(mix[None]), n_fft, hop)[0], est.shape[-1], n_fft, hop).numpy()
    return run


def summed(n_fft: int, hop: int) -> Filter:
    def run(est: np.ndarray, mix: np.ndarray) -> np.ndarray:
        return remask(torch.from_numpy(est)[None], torch.from_numpy(mix)[None], n_fft, hop)[0].numpy()
    return run


def wiener_magnitudes(n_fft: int, hop: int) -> Filter:
    def run(est: np.ndarray, mix: np.ndarray) -> np.ndarray:
        spec = stft(torch.from_numpy(est), n_fft, hop).to(torch.complex128)  # (S, C, F, N)
        x = stft(torch.from_numpy(mix[None]), n_fft, hop).to(torch.complex128)[0].permute(1, 2, 0)[..., None]
        model = spec.abs().pow(2).mean(1).sqrt()[..., None, None] * _covariance(*_wiener_stats(spec))[:, :, None]
        total = model.sum(0) + EPS * torch.eye(est.shape[1], dtype=spec.dtype)
        out = (model @ torch.linalg.solve(total, x)[None])[..., 0].permute(0, 3, 1, 2)
        return istft(out, est.shape[-1], n_fft, hop).float().numpy()
    return run


def parse(variant: str) -> Filter:
    kind, *args = variant.split(":")
    if kind == "none" and not args:
        return lambda est, mix: est
    if kind == "perchannel" and len(args) == 3:
        return per_channel(int(args[0]), int(args[1]), float(args[2]))
    if kind == "summed" and len(args) == 2:
        return summed(int(args[0]), int(args[1]))
    if kind == "mwf" and len(args) == 2:
        return wiener_magnitudes(int(args[0]), int(args[1]))
    raise ValueError(variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a checkpoint without a re-mask of its own")
    parser.add_argument("--split", action="append", required=True, help="dev split folder (repeatable)")
    parser.add_argument("--variant", action="append", help="post-filter (repeatable; see above)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    try:
        variants = {v: parse(v) for v in args.variant or DEFAULT_VARIANTS}
    except ValueError as exc:
        parser.error(f"bad --variant {exc} (none, summed:N:H, perchannel:N:H:P or mwf:N:H)")
    for folder in args.split:
        if not Path(folder).is_dir():
            parser.error(f"split not found: {folder}")
    if (read_metadata(args.model).get("config") or {}).get("remask_fft"):
        parser.error(f"{args.model} re-masks its stems itself; give the network alone (remask_fft 0)")
    torch.set_num_threads(1)
    separator = Separator(args.model, threads=1)
    scores = {v: {s: [] for s in STEMS} for v in variants}
    seconds = {v: 0.0 for v in variants}
    for track in discover_songs(args.split, STEMS):
        frames = min(int(args.seconds * 44100), int(track.length * 44100 / track.sample_rate))
        refs = read_stems(track, STEMS, 0, frames, 44100, channels=2)
        plays, mix = audible(refs), refs.sum(0)
        out = separator.separate_array(mix, 44100)
        est = np.stack([out[s] for s in STEMS]).astype(np.float32)
        for name, run in variants.items():
            tic = time.perf_counter()
            filtered = run(est, mix)
            seconds[name] += time.perf_counter() - tic
            for i, stem in enumerate(STEMS):
                if plays[i]:
                    scores[name][stem].append(float(mdx_sdr(torch.from_numpy(refs[i]), torch.from_numpy(filtered[i]))))
        print(f"  scored {track.name}", file=sys.stderr, flush=True)
    print("| post-filter | " + " | ".join(STEMS) + " | mean | filter CPU s |")
    print("|---" * (len(STEMS) + 3) + "|")
    for name in variants:
        values = [float(np.mean(scores[name][s])) for s in STEMS]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.3f} | {seconds[name]:.1f} |")


if __name__ == "__main__":
    main()
