"""Real-time streaming: latency, real-time factor per block size and CPU load, low-latency model vs the default.

    PYTHONPATH=src python benchmarks/streaming.py [--seconds 20] [--blocks 64,128,...,4096] [--models lowlatency,default]
    PYTHONPATH=src python benchmarks/streaming.py --quality [--data runs/data/train]

Speed: ``StreamingSeparator.process`` on ``--seconds`` of a synthetic song (stereo 44.1 kHz), block by block,
torch on one thread. Per block size it prints x real time by wall clock and by CPU time of this process (audio
seconds per CPU second: what one dedicated core would give, which a shared machine does not distort), the mean
CPU load of one core (CPU time / audio time) and the worst block's time against its period, by wall clock and by
CPU time of the thread (> 100 %: that block is late; by CPU time, the stream cannot run live at that block size
even on an idle core, as ``stemforge live`` checks before starting). ``default`` streams in segment mode (10 s
segments): its latency is the segment and its work comes in one burst per segment.

``--quality``: mean MDX SDR (``stemforge.metrics.simple.mdx_sdr``, energy ratio, the training validation's
metric) on the validation split of ``recipes/default.toml`` (6 of the 120 training songs, first 20 s), for the
default model offline (10 s segments, the engine) and the low-latency model offline over the whole signal, which
is exactly what its stream outputs (``tests/test_stream.py``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from stemforge.stream import StreamingSeparator


def speed(models: list[str], blocks: list[int], seconds: float) -> None:
    from stemforge.data.synth import render_song

    stems = render_song(7, 20.0, 44100, backend="numpy")
    mix = sum(stems.values())
    frames = int(seconds * 44100)
    mix = np.tile(mix, (1, frames // mix.shape[1] + 1))[:, :frames].astype(np.float32)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"torch threads {torch.get_num_threads()}; {seconds:.0f} s of stereo 44.1 kHz per run")
    print()
    print("| model | mode | latency | block | x real time (wall) | x real time (CPU) | CPU load, one core | "
          "worst block / period (wall) | worst block / period (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models:
        stream = StreamingSeparator(name)
        latency = f"{stream.latency_samples} samples ({1000 * stream.latency_seconds:.1f} ms)"
        for block in blocks:
            stream.reset()
            stream.process(mix[:, :block])  # warm-up (allocations, first calls)
            stream.reset()
            worst = worst_cpu = 0.0
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for start in range(0, frames, block):
                t, c = time.perf_counter(), time.thread_time()
                stream.process(mix[:, start:start + block])
                worst = max(worst, time.perf_counter() - t)
                worst_cpu = max(worst_cpu, time.thread_time() - c)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            stream.flush()
            print(f"| {name} | {stream.mode} | {latency} | {block} | {seconds / wall:.1f}x | {seconds / cpu:.1f}x | "
                  f"{100 * cpu / seconds:.1f} % | {100 * worst / (block / 44100):.0f} % | "
                  f"{100 * worst_cpu / (block / 44100):.0f} % |", flush=True)
    print()
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def quality(data: str, seconds: float) -> None:
    from stemforge.data import training as train_data
    from stemforge.hub import load_model
    from stemforge.metrics.simple import mdx_sdr
    from stemforge.train.validation import validate

    default = load_model("default")
    sources = default.sources
    songs = train_data.find_training_songs([data], sources)
    _, valid = train_data.split_songs(songs, 0.05, 0)
    tracks = train_data.validation_stems(valid, sources, seconds, 44100, 2)
    print(f"validation split: {len(tracks)} songs x {seconds:.0f} s ({', '.join(s.name for s in valid)})")
    print()
    print(f"| model | how | {' | '.join(sources)} | mean |")
    print(f"|---|---|{'---|' * len(sources)}---|")
    scores = validate(default, tracks, sources)
    print(f"| default | offline, 10 s segments | {' | '.join(f'{scores[s]:.2f}' for s in sources)} | "
          f"{np.mean(list(scores.values())):.2f} |")
    low = StreamingSeparator("lowlatency")
    per_stem: dict[str, list[float]] = {s: [] for s in sources}
    for reference in tracks:
        estimate = low.offline(reference.sum(0))
        for i, s in enumerate(sources):
            per_stem[s].append(float(mdx_sdr(reference[i], estimate[s])))
    means = {s: float(np.mean(v)) for s, v in per_stem.items()}
    print(f"| lowlatency | stream (= whole-signal causal run) | {' | '.join(f'{means[s]:.2f}' for s in sources)} | "
          f"{np.mean(list(means.values())):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lowlatency,default")
    parser.add_argument("--blocks", default="64,128,256,512,1024,2048,4096")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quality", action="store_true", help="SDR on the validation split instead of speed")
    parser.add_argument("--data", default="runs/data/train", help="--quality: the default model's training songs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quality:
        quality(args.data, 20.0)
    else:
        speed(args.models.split(","), [int(b) for b in args.blocks.split(",")], args.seconds)


if __name__ == "__main__":
    main()
