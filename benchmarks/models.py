"""CPU speed and memory of every neural architecture and preset, beside HTDemucs.

For each model: parameters, real-time factor (audio seconds per wall-clock second) separating 60 s of
stereo 44.1 kHz noise with ``--threads`` torch threads, and the process' peak resident memory. Each model runs
in a fresh subprocess so peaks do not mix. Audio is cut into segments of the model's ``default_segment`` and
run one after another (no overlap), the same for every model.

The reference is HTDemucs (41.5 M parameters, demucs' published configuration, random weights: speed does
not depend on them) measured in the same run when the ``demucs`` package imports; otherwise the figures
quoted in issue 3 (about 1.1x real time and 1.4 GB peak on 2 cores) are printed and marked "quoted".

    PYTHONPATH=src python benchmarks/models.py [--threads 2] [--seconds 60] [--presets tiny base large]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

ARCHITECTURES = ("unet", "bilstm", "lstm-causal", "bsroformer", "melroformer", "hybrid")
QUOTED_HTDEMUCS = {"params": 41.5e6, "rtf": 1.1, "rtf_cpu": 1.1, "peak_mb": 1400.0}
SAMPLE_RATE = 44100


def _build(name: str, preset: str):  # noqa: ANN202 - runs in the child only
    if name == "htdemucs":
        from demucs.htdemucs import HTDemucs

        from stemforge.stems import FOUR_STEMS

        model = HTDemucs(sources=list(FOUR_STEMS), bottom_channels=512, segment=7.8)
        return model, 7.8
    from stemforge.models import build

    model = build(name, preset=preset)
    return model, model.default_segment


def measure(name: str, preset: str, seconds: float, threads: int, backend: str) -> dict[str, float]:
    """Child process: build, warm up, separate ``seconds`` of audio; returns params, rtf and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, segment = _build(name, preset)
    model.eval()
    if backend != "torch":
        from stemforge.export import load_backend

        model = load_backend(model, backend)
    params = sum(p.numel() for p in model.parameters()) if backend == "torch" else model.num_parameters()
    mix = torch.randn(1, 2, int(seconds * SAMPLE_RATE)) * 0.1
    step = int(segment * SAMPLE_RATE)
    with torch.inference_mode():
        model(mix[..., :step])  # warm-up (allocator, ONNX session, kernels)
        start = time.perf_counter()
        segment_cpu = []  # CPU seconds per full-length segment
        for offset in range(0, mix.shape[-1], step):
            chunk = mix[..., offset : offset + step]
            if name == "htdemucs" and chunk.shape[-1] < step:  # HTDemucs needs its training length
                chunk = torch.nn.functional.pad(chunk, (0, step - chunk.shape[-1]))
            tick = time.process_time()
            model(chunk)
            if chunk.shape[-1] == step:
                segment_cpu.append(time.process_time() - tick)
        elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Median CPU seconds per segment / threads: what the wall clock would read on idle cores, robust to the
    # other jobs sharing this machine (the wall-clock figure is printed too).
    cpu = statistics.median(segment_cpu) if segment_cpu else elapsed * threads
    return {"params": params, "rtf": seconds / elapsed, "rtf_cpu": segment / (cpu / threads), "peak_mb": peak_mb}


def run_child(name: str, preset: str, args: argparse.Namespace) -> dict[str, float] | None:
    command = [sys.executable, __file__, "--child", name, preset, "--seconds", str(args.seconds),
               "--threads", str(args.threads), "--backend", args.backend]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {name}/{preset} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--presets", nargs="+", default=["tiny", "base", "large"])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "compile"])
    parser.add_argument("--no-reference", action="store_true", help="print the quoted HTDemucs figures instead")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.seconds, args.threads, args.backend)))
        return

    reference = None if args.no_reference else run_child("htdemucs", "-", argparse.Namespace(**{**vars(args), "backend": "torch"}))
    source = "measured" if reference else "quoted"
    reference = reference or QUOTED_HTDEMUCS
    print(f"{args.seconds:g} s stereo {SAMPLE_RATE} Hz, {args.threads} torch threads, backend {args.backend}; "
          f"reference HTDemucs {source}: {reference['params'] / 1e6:.1f} M params, {reference['rtf']:.2f}x real time, "
          f"{reference['peak_mb']:.0f} MB peak")
    print("x RT = audio seconds per wall-clock second (whole run); x RT cpu = segment seconds per "
          "(median CPU seconds per segment / threads), i.e. on idle cores")
    header = (f"{'model':<13}{'preset':<7}{'params (M)':>11}{'x RT':>8}{'vs HTD':>8}{'x RT cpu':>10}{'vs HTD':>8}"
              f"{'peak MB':>9}{'vs HTD':>8}")
    print(header)
    print("-" * len(header))
    print(f"{'htdemucs':<13}{'-':<7}{reference['params'] / 1e6:>11.2f}{reference['rtf']:>8.2f}{1.0:>8.2f}"
          f"{reference['rtf_cpu']:>10.2f}{1.0:>8.2f}{reference['peak_mb']:>9.0f}{1.0:>8.2f}")
    for name in args.architectures:
        for preset in args.presets:
            result = run_child(name, preset, args)
            if result is None:
                continue
            print(f"{name:<13}{preset:<7}{result['params'] / 1e6:>11.2f}{result['rtf']:>8.2f}"
                  f"{result['rtf'] / reference['rtf']:>8.2f}{result['rtf_cpu']:>10.2f}"
                  f"{result['rtf_cpu'] / reference['rtf_cpu']:>8.2f}{result['peak_mb']:>9.0f}"
                  f"{result['peak_mb'] / reference['peak_mb']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
