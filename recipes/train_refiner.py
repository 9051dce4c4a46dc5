"""Train the re-mask's low-band refiner of a ``unet`` checkpoint on its frozen network's stems (issue #12).

    PYTHONPATH=src python recipes/train_refiner.py src/stemforge/assets/default.safetensors OUT.safetensors \
        --train runs/data/realistic_train6 --train runs/data/realistic_train \
        --dev runs/data/realistic_dev --dev runs/data/realistic_dev2 --bins 280 --steps 800 --threads 2 \
        --widen-bass 15

The checkpoint must re-mask its stems (``remask_fft`` > 0, e.g. the bundled default). Each song's first
``--seconds`` are separated by the network alone (no re-mask), reduced to the refiner's band of the re-mask's STFT
(``train.refiner.band_example``), and ``models.refiner.LowBandRefiner`` is trained on those bands with the songs'
SDR as the loss; the step scoring best on the dev songs is written into a copy of the checkpoint (same network
weights; the config gains ``refine_bins`` / ``refine_width`` / ``refine_layers``). ``--widen-bass MS`` delays the
right channel of every other training song's bass by up to MS ms before mixing (``data.augment.widen``): the
synthetic songs' bass is always centred, and a refiner trained on them alone learns that a centred low bin is bass.
What the refiners it trained measured: MODEL_CARD.md ("A learnt refiner of the re-mask below 500 Hz").
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stemforge.checkpoint import load_checkpoint, save_checkpoint
from stemforge.data.augment import widen
from stemforge.data.songs import discover_songs, read_stems
from stemforge.errors import StemforgeError
from stemforge.metrics.simple import audible
from stemforge.models.refiner import LowBandRefiner
from stemforge.models.unet import UNetSeparator
from stemforge.separate import Separator
from stemforge.train.refiner import BandSet, band_example, train_refiner

# Written by save_checkpoint itself from the model; everything else in the header is carried over.
OWN_KEYS = {"format", "architecture", "config", "sources", "sample_rate", "channels", "num_parameters",
            "weights_sha256"}


def bands(separator: Separator, model: UNetSeparator, folders: list[str], seconds: float, bins: int,
          widen_ms: float = 0.0, seed: int = 0) -> BandSet:
    """Every song under ``folders`` (its first ``seconds``) reduced to the band; songs shorter than that are skipped.

    ``widen_ms`` > 0: every other song's bass has its right channel delayed by a delay drawn uniformly from
    [0, widen_ms] ms (the same for a given ``seed`` and song).
    """
    cfg, sources, rate = model.config, list(model.config.sources), model.config.sample_rate
    if widen_ms and (cfg.channels != 2 or "bass" not in sources):
        raise StemforgeError("--widen-bass needs a stereo model with a bass stem")
    frames = int(seconds * rate)
    songs = [song for song in discover_songs(folders, sources) if song.length * rate / song.sample_rate >= frames]
    if not songs:
        raise StemforgeError(f"no song of at least {seconds} s under {', '.join(folders)}")

    def reduce(numbered) -> BandSet:  # noqa: ANN001 - (index, data.songs.Song)
        index, song = numbered
        if index and index % 100 == 0:
            print(f"  {index} of {len(songs)} songs reduced", file=sys.stderr, flush=True)
        truth = read_stems(song, sources, 0, frames, rate, channels=cfg.channels)
        if widen_ms and index % 2:
            delay = int(np.random.default_rng((seed, index)).uniform(0, widen_ms / 1000 * rate))
            bass = sources.index("bass")
            truth[bass] = widen(torch.from_numpy(truth[bass]), delay).numpy()
        mix = truth.sum(0)
        out = separator.separate_array(mix, rate)
        stems = torch.from_numpy(np.stack([out[s] for s in sources]).astype(np.float32))
        return band_example(stems, torch.from_numpy(mix), torch.from_numpy(truth), cfg.remask_fft, cfg.remask_hop,
                            bins, torch.as_tensor(audible(truth)))

    return BandSet.gather(map(reduce, enumerate(songs)), len(songs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a unet checkpoint with a re-mask")
    parser.add_argument("out")
    parser.add_argument("--train", action="append", required=True, help="training songs (folder; repeatable)")
    parser.add_argument("--dev", action="append", required=True, help="songs that choose the step (repeatable)")
    parser.add_argument("--bins", type=int, default=280, help="the band: lowest bins of the re-mask STFT")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=20.0, help="song excerpt (s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--widen-bass", type=float, default=0.0, metavar="MS",
                        help="delay every other training song's bass right channel by up to MS ms (0: off)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite OUT if it exists")
    args = parser.parse_args()
    if Path(args.out).exists() and not args.force:
        parser.error(f"{args.out} exists (pass --force to overwrite it)")
    if not 0 <= args.widen_bass <= 1000:
        parser.error(f"--widen-bass must be between 0 and 1000 ms, got {args.widen_bass}")
    for folder in args.train + args.dev:
        if not Path(folder).exists():
            parser.error(f"songs not found: {folder}")
    try:
        model, meta = load_checkpoint(args.source)
    except StemforgeError as exc:
        parser.error(str(exc))
    if model.architecture != "unet" or not model.config.remask_fft:
        parser.error(f"{args.source} has no re-mask to refine (a unet checkpoint with remask_fft > 0)")
    try:
        config = dataclasses.replace(model.config, refine_bins=args.bins, refine_width=args.width,
                                     refine_layers=args.layers)
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")}  # the network's
    network = UNetSeparator(dataclasses.replace(model.config, remask_fft=0, remask_hop=0, refine_bins=0)).eval()
    network.load_state_dict(weights)
    separator = Separator(network, threads=args.threads)
    tic = time.perf_counter()
    try:
        train = bands(separator, model, args.train, args.seconds, args.bins, args.widen_bass, args.seed)
        dev = bands(separator, model, args.dev, args.seconds, args.bins)
    except StemforgeError as exc:
        parser.error(str(exc))
    print(f"{len(train)} training and {len(dev)} dev songs reduced to {args.bins} bins in "
          f"{time.perf_counter() - tic:.0f} s", file=sys.stderr, flush=True)
    refiner = LowBandRefiner(len(config.sources), args.width, args.layers)
    state, step, score = train_refiner(refiner, train, dev, args.steps, args.batch, args.lr, args.seed,
                                       log=lambda line: print(line, file=sys.stderr, flush=True))
    refined = UNetSeparator(config)
    refined.load_state_dict({**weights, **{f"refiner.{k}": v for k, v in state.items()}})
    record = {"songs": len(train), "dev_songs": len(dev), "steps": args.steps, "best_step": step,
              "dev_band_sdr": round(score, 4), "batch": args.batch, "lr": args.lr, "seed": args.seed,
              "seconds": args.seconds, "widen_bass_ms": args.widen_bass, "train": args.train, "dev": args.dev}
    extra = {k: v for k, v in meta.items() if k not in OWN_KEYS}
    saved = save_checkpoint(refined, args.out, **{**extra, "refiner": record})
    print(f"{args.out}: refine_bins={args.bins}, best step {step} (dev {score:.4f}), "
          f"weights {saved['weights_sha256'][:12]}")


if __name__ == "__main__":
    main()
