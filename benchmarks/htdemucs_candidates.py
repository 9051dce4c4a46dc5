"""HTDemucs speed candidates of issue #18, each measured against ours exact in the same run.

    PYTHONPATH=src python benchmarks/htdemucs_candidates.py [--threads 1] [--repeats 2] [--seconds 60]
        [--only batch|attention|fast|trained]

Builds the released htdemucs architecture with random weights (``end_to_end.build_htdemucs``) and prints one
markdown table; every row carries the 1-minute load average (the machine is shared) and each comparison runs its
contenders in turn (``end_to_end.alternate``: best of ``--repeats``, each round starting with the next one):

* ``batch``: the network on 4 segments of 7.8 s, 1 at a time against 2 and 4 per forward pass (what
  ``Separator(batch_size=N)`` / ``separate --batch-size`` does); max difference to one at a time;
* ``attention``: the cross-Transformer's attention shapes (8 heads of 48, 2688 spectral and 1344 temporal tokens
  per 7.8 s segment) through ``scaled_dot_product_attention``'s fused CPU kernel (the one it picks), the same on
  contiguous per-head copies, its math path, and a plain matmul/softmax/matmul;
* ``fast``: lossy, opt-in fast paths through ``Separator`` on a ``--seconds`` song: a smaller overlap between
  segments (0.1 instead of 0.25: fewer segments per song) alone and with ``precision="int8"``, and int8 alone;
  speed-up and SDR against ours exact (overlap 0.25, float32);
* ``trained``: the same overlap change on a trained network (the published HTDemucs weights cannot be downloaded
  here, and a random-weight HTDemucs' output depends on its whole segment): the bundled default model on
  ``examples/example.flac`` tiled to ``--seconds``, overlap 0.1 and 0 against 0.25.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from end_to_end import alternate, build_htdemucs, load, row, sdr  # noqa: E402

RATE = 44100


def batch_rows(model, threads: int, repeats: int) -> None:
    """4 segments through the network 1, 2 and 4 at a time."""
    import torch

    segment = int(7.8 * RATE)
    x = 0.3 * torch.randn(4, 2, segment, generator=torch.Generator().manual_seed(0))

    def run(size: int):
        return torch.cat([model(x[i:i + size]) for i in range(0, 4, size)])

    with torch.inference_mode():
        model(x[:1])  # warm-up
        results = alternate([lambda: run(1), lambda: run(2), lambda: run(4)], repeats)
    (t1, c1, y1) = results[0]
    for size, (t, c, y) in zip((2, 4), results[1:]):
        row(f"HTDemucs network, 4 segments of 7.8 s, {size} per forward pass vs 1", f"{t1 / t:.2f}x speed "
            f"({t:.1f} s vs {t1:.1f} s wall; CPU {c:.1f} s vs {c1:.1f} s: {c1 / c:.2f}x), max diff "
            f"{float((y - y1).abs().max()):.1e}", f"{threads} thread(s), best of {repeats}, alternating")


def attention_rows(threads: int, repeats: int) -> None:
    """The cross-Transformer's attention calls of one segment, kernel by kernel."""
    import torch
    from torch.nn import functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dim, heads = 384, 8
    gen = torch.Generator().manual_seed(0)
    # One 7.8 s segment: 3 self-attention layers (2688 and 1344 tokens), 2 cross layers (2688 <-> 1344), per branch.
    calls = [(2688, 2688)] * 3 + [(1344, 1344)] * 3 + [(2688, 1344), (1344, 2688)] * 2

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(1, t.shape[1], heads, dim // heads).transpose(1, 2)

    inputs = [(split(torch.randn(1, tq, dim, generator=gen)), split(torch.randn(1, tk, dim, generator=gen)),
               split(torch.randn(1, tk, dim, generator=gen))) for tq, tk in calls]

    def fused():
        return [F.scaled_dot_product_attention(q, k, v) for q, k, v in inputs]

    def fused_contiguous():
        return [F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous()) for q, k, v in inputs]

    def math_path():
        with sdpa_kernel(SDPBackend.MATH):
            return [F.scaled_dot_product_attention(q, k, v) for q, k, v in inputs]

    def plain():
        scale = (dim // heads) ** -0.5
        return [torch.matmul(torch.softmax(torch.matmul(q * scale, k.transpose(-1, -2)), -1), v) for q, k, v in inputs]

    with torch.inference_mode():
        (t0, c0, y0), *others = alternate([fused, fused_contiguous, math_path, plain], repeats)
    row("HTDemucs attention, one segment's 10 calls: `scaled_dot_product_attention` (fused CPU flash kernel, "
        "as now)", f"{t0:.2f} s wall, {c0:.2f} s CPU", f"{threads} thread(s), best of {repeats}")
    for label, (t, c, y) in zip(["the same on contiguous per-head copies of q, k, v", "its math path "
                                 "(`SDPBackend.MATH`)", "plain matmul, softmax, matmul"], others):
        diff = max(float((a - b).abs().max()) for a, b in zip(y, y0))
        row(f"HTDemucs attention, one segment's 10 calls: {label}", f"{t0 / t:.2f}x the fused kernel's speed "
            f"({t:.2f} s wall, CPU {c:.2f} s: {c0 / c:.2f}x), max diff {diff:.1e}",
            f"{threads} thread(s), best of {repeats}, alternating")


def fast_rows(path: Path, seconds: float, threads: int, repeats: int) -> None:
    """Opt-in lossy paths through ``Separator`` against ours exact on the same song."""
    import torch

    from stemforge.models.compat import load_pretrained
    from stemforge.separate import Separator

    configs = [("ours exact (overlap 0.25, float32)", 0.25, "fp32"), ("overlap 0.1, float32", 0.1, "fp32"),
               ("overlap 0.1 + `--precision int8`", 0.1, "int8"), ("`--precision int8` (overlap 0.25)", 0.25, "int8")]
    separators = [Separator(load_pretrained(path), overlap=overlap, shifts=0, precision=precision)
                  for _, overlap, precision in configs]
    mix = 0.3 * torch.randn(2, int(seconds * RATE), generator=torch.Generator().manual_seed(0)).numpy()
    results = alternate([lambda s=s: s.separate_array(mix, RATE) for s in separators], repeats)
    t0, c0, exact = results[0]
    exact = np.stack([exact[s] for s in separators[0].sources])
    segments = [int(np.ceil(mix.shape[-1] / max(1, round(round(7.8 * RATE) * (1 - o))))) for _, o, _ in configs]
    row(f"HTDemucs fast-path candidates, {seconds:.0f} s song: {configs[0][0]}",
        f"{t0:.1f} s wall, {c0:.1f} s CPU ({segments[0]} segments)", f"{threads} thread(s), best of {repeats}")
    for (label, _, _), count, (t, c, out) in zip(configs[1:], segments[1:], results[1:]):
        out = np.stack([out[s] for s in separators[0].sources])
        row(f"HTDemucs fast-path candidate, {seconds:.0f} s song: {label} ({count} segments)",
            f"{t0 / t:.2f}x speed-up ({t:.1f} s wall; CPU {c:.1f} s: {c0 / c:.2f}x), SDR vs exact "
            f"{sdr(out, exact):.1f} dB", f"{threads} thread(s), best of {repeats}, alternating")


def trained_rows(seconds: float, threads: int) -> None:
    """The overlap change on the bundled (trained) default model: SDR against its own overlap-0.25 output."""
    import soundfile as sf

    from stemforge.separate import Separator

    wav, rate = sf.read(HERE.parent / "examples" / "example.flac", dtype="float32", always_2d=True)
    frames = int(seconds * rate)
    mix = np.ascontiguousarray(np.tile(wav.T, (1, frames // len(wav) + 1))[:, :frames])
    separators = [Separator("default", overlap=overlap, shifts=0, backend="torch") for overlap in (0.25, 0.1, 0.0)]
    (t0, c0, exact), *others = alternate([lambda s=s: s.separate_array(mix, rate) for s in separators], 2)
    exact = np.stack([exact[name] for name in separators[0].sources])
    for overlap, (t, c, out) in zip((0.1, 0.0), others):
        out = np.stack([out[name] for name in separators[0].sources])
        row(f"trained network (bundled default model), {seconds:.0f} s of examples/example.flac: overlap {overlap} "
            f"vs 0.25", f"SDR vs overlap 0.25 {sdr(out, exact):.1f} dB; {c0 / c:.2f}x CPU ({c:.1f} s vs {c0:.1f} s)",
            f"{threads} thread(s), torch backend, best of 2, alternating")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="song length of the fast-path rows")
    parser.add_argument("--only", action="append", choices=["batch", "attention", "fast", "trained"])
    parser.add_argument("--parity", default=str(HERE.parent / ".parity"), help="folder of the reference packages")
    args = parser.parse_args()
    sys.path.append(args.parity)
    import torch

    torch.set_num_threads(args.threads)
    steps = args.only or ["batch", "attention", "fast", "trained"]
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, model threads {args.threads}; "
          f"start {load()}\n\n| measurement | result | conditions |\n|---|---|---|", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stemforge-htdemucs-") as tmp:
        if {"batch", "fast"} & set(steps):
            try:
                _, path = build_htdemucs(Path(tmp))
            except ImportError as exc:
                raise SystemExit(f"demucs is not importable ({exc}); install the parity packages (see end_to_end.py)")
        from stemforge.models.compat import load_pretrained

        if "batch" in steps:
            batch_rows(load_pretrained(path).eval(), args.threads, args.repeats)
        if "attention" in steps:
            attention_rows(args.threads, args.repeats)
        if "fast" in steps:
            fast_rows(path, args.seconds, args.threads, args.repeats)
        if "trained" in steps:
            trained_rows(args.seconds, args.threads)
    print(f"\nend {load()}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
