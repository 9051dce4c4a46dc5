"""Two checks of a re-mask refiner that the synthetic splits cannot make (issue #12; MODEL_CARD.md).

    git show 88f07a4:src/stemforge/assets/default.safetensors > runs/default_88f07a4.safetensors
    PYTHONPATH=src python benchmarks/refiner_checks.py --model runs/refine/r280ns/refined.safetensors \
        --network runs/default_88f07a4.safetensors

1. Wide bass: the first 12 songs of ``--dev`` with the bass stem's right channel delayed 12 ms (a wide stereo bass;
   ``data.augment.widen``, zeros in front: until the eleventh session ``np.roll``, whose last 12 ms wrapped to the
   front), separated whole by the network alone, then re-masked plainly and with the refiner; energy-ratio SDR per
   stem.
2. Real music: ``--real`` mixtures (game music, no stems; 30 s from 30 s in, every 9th track, those at least 10 s
   long), the share of the energy below 500 Hz (8192-point STFT, bins 0-92) each stem gets, plainly and refined.

Both on whole excerpts (``dsp.wiener.remask`` with the checkpoint's refiner), two threads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemforge.checkpoint import load_checkpoint
from stemforge.data.augment import widen
from stemforge.data.songs import discover_songs, read_stems
from stemforge.dsp.spectral import stft
from stemforge.dsp.wiener import remask
from stemforge.metrics.simple import audible, mdx_sdr
from stemforge.separate import Separator
from stemforge.stems import FOUR_STEMS

STEMS = list(FOUR_STEMS)
RATE = 44100


def low_shares(stems: torch.Tensor) -> np.ndarray:
    """stems (S, C, T) -> (S,) each stem's share of the energy below 500 Hz."""
    energy = np.array([float(stft(s, 8192, 2048)[..., :93, :].abs().square().sum()) for s in stems])
    return energy / energy.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a unet checkpoint with a refiner")
    parser.add_argument("--network", required=True, help="the same network without a re-mask")
    parser.add_argument("--dev", default="runs/data/realistic_dev2")
    parser.add_argument("--real", default="runs/data/game_music")
    args = parser.parse_args()
    model, _ = load_checkpoint(args.model)
    if getattr(model, "refiner", None) is None:
        parser.error(f"{args.model} has no refiner")
    cfg, refiner = model.config, model.refiner.eval()
    torch.set_num_threads(2)
    network = Separator(args.network, threads=2)

    def both(mix: np.ndarray) -> dict[str, torch.Tensor]:
        out = network.separate_array(mix, RATE)
        est = torch.from_numpy(np.stack([out[s] for s in STEMS]))[None]
        with torch.no_grad():
            return {name: remask(est, torch.from_numpy(np.ascontiguousarray(mix))[None], cfg.remask_fft,
                                 cfg.remask_hop, adjust, cfg.refine_bins)[0]
                    for name, adjust in (("plain re-mask", None), ("refined", refiner))}

    scores: dict[str, dict[str, list[float]]] = {}
    delay = int(0.012 * RATE)
    for song in discover_songs([args.dev], STEMS)[:12]:
        truth = read_stems(song, STEMS, 0, 20 * RATE, RATE, channels=2)
        truth[1] = widen(torch.from_numpy(truth[1]), delay).numpy()  # as recipes/train_refiner.py --widen-bass
        plays = audible(truth)
        for name, out in both(truth.sum(0)).items():
            for j, stem in enumerate(STEMS):
                if plays[j]:
                    scores.setdefault(name, {}).setdefault(stem, []).append(
                        float(mdx_sdr(torch.from_numpy(truth[j]), out[j])))
    print("Wide bass (12 dev songs, bass right channel delayed 12 ms), energy-ratio SDR:\n")
    print("| | " + " | ".join(STEMS) + " | mean |\n" + "|---" * (len(STEMS) + 2) + "|")
    for name, per in scores.items():
        values = [float(np.mean(per[s])) for s in STEMS]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.3f} |")

    shares: dict[str, list[np.ndarray]] = {}
    for path in sorted(Path(args.real).glob("*/mixture.flac"))[::9][:10]:
        mix, rate = sf.read(path, frames=30 * RATE, start=30 * RATE, dtype="float32", always_2d=True)
        if rate != RATE or mix.shape[0] < 10 * RATE:
            continue
        for name, out in both(mix.T).items():
            shares.setdefault(name, []).append(low_shares(out))
    count = len(next(iter(shares.values()), []))
    print(f"\nReal music ({count} game-music excerpts): share of the energy below 500 Hz\n")
    print("| | " + " | ".join(STEMS) + " |\n" + "|---" * (len(STEMS) + 1) + "|")
    for name, rows in shares.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in np.mean(rows, axis=0)) + " |")


if __name__ == "__main__":
    main()
