"""End-to-end speed of ``stemforge separate``: what the user waits for, measured in one run (issue #18).

    PYTHONPATH=src python benchmarks/end_to_end.py [--seconds 600] [--threads 2] [--parity .parity] [--quick]

Prints one markdown table; every row carries the 1-minute load average when it was measured (the figures of a
shared machine move with its load, so ratios are measured side by side in the same run):

* default model and classical model, ``stemforge separate`` on a ``--seconds`` song (``examples/example.flac``
  tiled, written as FLAC), as a fresh process: x real time by wall clock, CPU seconds, peak RSS;
* the STFT/iSTFT floor: the default model's STFT of the mix and iSTFT of four stereo stems, segment by segment
  as the engine cuts them (the least any spectrogram-mask model can cost);
* throughput on four one-minute files: one model thread, ``--threads N``, and ``batch --workers N`` (N files at once,
  one thread each);
* CLI start: ``stemforge --help``, and the time from launch to the first separated audio of the default model;
* ``python -c "import torch"`` alone (what the torch path's first audio cannot go below; the default model's
  torch-free path does not import torch);
* published HTDemucs (the released architecture with random weights, through demucs' own package format):
  ours vs demucs' ``apply_model`` on the same chunks (max difference and speed ratio), and the opt-in fast path
  ``--precision int8`` (``engine.int8_transformers``) with its SDR against the exact output;
* BS-RoFormer: ours vs the ``bs_roformer`` reference package on one 10-second segment, and the same fast path.

The published-model rows run their contenders in turn (reference, ours, fast path; each round starting with the
next one) and keep the best of ``--repeats`` wall times of each, so a change of load falls on all of them alike.

The reference packages are read from ``--parity`` (``pip install --no-deps --target .parity -r
requirements-parity.txt``); without them those rows say so.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
RATE = 44100


def load() -> str:
    """The 1-minute load average, e.g. ``"load 3.1"``."""
    return f"load {os.getloadavg()[0]:.1f}"


def row(what: str, result: str, note: str = "") -> None:
    print(f"| {what} | {result} | {note + '; ' if note else ''}{load()} |", flush=True)


def make_song(folder: Path, seconds: float, name: str = "song.flac") -> Path:
    """``examples/example.flac`` tiled to ``seconds`` (deterministic), written as 16-bit FLAC."""
    import soundfile as sf

    wav, rate = sf.read(ROOT / "examples" / "example.flac", dtype="float32", always_2d=True)
    frames = int(seconds * rate)
    song = np.tile(wav, (frames // len(wav) + 1, 1))[:frames]
    path = folder / name
    sf.write(path, song, rate, subtype="PCM_16")
    return path


def env(src: Path = SRC) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}


def run_cli(args: list[str], src: Path = SRC) -> tuple[float, float, float]:
    """Run ``python -m stemforge ARGS`` as a fresh process, from the package in ``src``.

    Returns:
        (wall seconds, CPU seconds (user + system), peak RSS in MB) of that process alone.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stemforge", *args], env=env(src), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"stemforge {' '.join(args)} failed: {err.decode(errors='replace').strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def first_audio(song: Path, out: Path, *options: str) -> float:
    """Seconds from launching ``stemforge separate SONG -o OUT [OPTIONS]`` to its progress bar's first separated audio.

    Args:
        song: the input file.
        out: the output folder.
        *options: more ``separate`` flags (``--backend torch``: the torch path, for comparison).

    Returns:
        The seconds, or NaN if the bar never showed separated audio.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stemforge", "separate", str(song), "-o", str(out), *options],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = float("nan")
    buffer = b""
    while True:
        chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(64)
        if not chunk:
            break
        buffer += chunk
        # Every bar state in the buffer, not the first only: the kept tail may still hold the "0.0/600.0s" state
        # printed before, and stopping at it waited for the bar's next refresh (a second segment) instead.
        if any(float(done) > 0 for done in re.findall(rb"\| ([0-9.]+)/[0-9.]+s", buffer)):
            seen = time.perf_counter() - start
            break
        buffer = buffer[-200:]
    proc.kill()
    proc.wait()
    return seen


def cli_rows(song: Path, work: Path, seconds: float, threads: int, baseline: Path | None) -> None:
    """The default model on both of its paths (torch-free, ``--backend torch``) in turn, twice, then classical."""
    lite, torch_path = ("default", SRC, [], " (torch-free)"), ("default", SRC, ["--backend", "torch"], " --backend torch")
    runs = [lite, torch_path, lite, torch_path, ("classical", SRC, [], "")]
    if baseline is not None:  # the same command from an older checkout's src/, alternating with ours
        runs = [("default", baseline, [], " (baseline src)"), lite, ("default", baseline, [], " (baseline src)"), lite]
    for i, (name, src, extra, label) in enumerate(runs):
        wall, cpu, rss = run_cli(["separate", str(song), "-n", name, "-o", str(work / f"{name}{i}"), "--threads",
                                  str(threads), *extra], src)
        row(f"`stemforge separate -n {name}`{label}, {seconds / 60:.0f}-min song, end to end",
            f"**{seconds / wall:.1f}x** real time ({wall:.1f} s wall, {cpu:.1f} s CPU), peak RSS {rss:.0f} MB")


def floor_row(seconds: float, threads: int) -> None:
    """STFT + 4-stem iSTFT of the default model's layout, cut like the engine (10 s segments, 25 % overlap)."""
    import torch

    from stemforge.dsp.spectral import istft, stft

    torch.set_num_threads(threads)
    n_fft, hop, segment, stride = 2048, 512, 10 * RATE, int(round(10 * RATE * 0.75))
    x = torch.randn(1, 2, segment) * 0.1
    count = math.ceil(seconds * RATE / stride)
    mask = torch.rand(1, 4, 2, 1, 1)
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(count):
            spec = stft(x, n_fft, hop)
            istft(spec.unsqueeze(1) * mask, segment, n_fft, hop)
        wall = time.perf_counter() - start
    row("STFT + iSTFT floor (default model's STFT, 4 stereo stems, same segments)", f"{seconds / wall:.1f}x real time",
        f"{threads} threads, in process")


def jobs_rows(work: Path, threads: int) -> None:
    """Throughput on four one-minute files: one model thread, then ``threads`` files at once with one thread each.

    ``separate -j`` is Demucs' flag there (stems encoded at once), not parallel files; files in parallel are
    ``stemforge batch --workers N`` (a local process pool, ``CPUs / N`` model threads per worker by default).
    """
    library = work / "library"
    library.mkdir()
    files = [make_song(library, 60.0, f"track{i}.flac") for i in range(4)]
    runs = [("`stemforge separate --threads 1`", ["separate", *map(str, files), "-o", str(work / "j1"), "--threads", "1"]),
            (f"`stemforge separate --threads {threads}`", ["separate", *map(str, files), "-o", str(work / "jt"),
                                                          "--threads", str(threads)]),
            (f"`stemforge batch --workers {threads}` (1 thread each)", ["batch", str(library), "-o", str(work / "jb"),
                                                                        "--workers", str(threads), "-n", "default"])]
    results = []
    for label, args in runs:
        wall, cpu, rss = run_cli(args)
        results.append(240.0 / wall)
        # batch's workers are the fork server's children: the parent's rusage does not hold their CPU or memory.
        row(f"{label}, 4 one-minute files", f"{results[-1]:.1f} audio s per s ({wall:.1f} s wall"
            + (f", {cpu:.1f} s CPU), peak RSS {rss:.0f} MB" if args[0] == "separate" else ")"))
    row(f"{threads} files at once (`batch --workers {threads}`) vs one model thread", f"{results[2] / results[0]:.2f}x",
        f"{threads} threads in one process: {results[1] / results[0]:.2f}x")


def start_rows(song: Path, work: Path) -> None:
    walls = [run_cli(["--help"])[0] for _ in range(5)]
    row("`stemforge --help`", f"median {statistics.median(walls):.2f} s (min {min(walls):.2f})", "5 fresh processes")
    times: dict[str, list[float]] = {"auto": [], "torch": []}
    for i in range(3):  # alternating, so a change of load falls on both alike
        for backend, runs in times.items():
            runs.append(first_audio(song, work / f"first-{backend}{i}", "--backend", backend))
    row("launch to first separated audio (default model)", f"median {statistics.median(times['auto']):.2f} s "
        f"(min {min(times['auto']):.2f})", "3 fresh processes, torch-free runtime (`stemforge.lite`)")
    row("launch to first separated audio, `--backend torch` (the torch path)",
        f"median {statistics.median(times['torch']):.2f} s (min {min(times['torch']):.2f})", "3 fresh processes, alternating with the row above")
    imports = []
    for _ in range(3):  # the floor under the row above: every model here runs in torch
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        imports.append(time.perf_counter() - start)
    row("`python -c 'import torch'` (the torch path's floor in the row above)", f"median {statistics.median(imports):.2f} s "
        f"(min {min(imports):.2f})", "3 fresh processes")


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - est|^2) over everything, in dB."""
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(noise, 1e-30))


def randomize_(module, seed: int = 0, scale: float = 0.05) -> None:
    """Random values for every parameter and float buffer (as the parity tests do)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen) * scale
                tensor.copy_(1.0 + noise.abs()) if "running_var" in name else tensor.add_(noise)


FAST_PATH = "int8 Linear inside Transformer blocks, per-channel weights"


def alternate(fns: list, repeats: int) -> list[tuple[float, float, object]]:
    """Best of ``repeats`` wall times for each of ``fns``, run in turn (a, b, a, b, ...; each round starting with the
    next one), so a change in the machine's load falls on all of them alike.

    The process's CPU time (user + system) of each call is kept too: with one model thread it is the work done
    whatever else runs on the machine (time spent waiting for a core is not in it), so the CPU ratio is the one to
    trust on a loaded machine; with several threads it also counts the threads' busy-waiting.

    Returns:
        One ``(best wall seconds, best CPU seconds, last result)`` per function.
    """
    best = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    out: list[object] = [None] * len(fns)
    for r in range(repeats):
        for k in range(len(fns)):
            i = (r + k) % len(fns)
            start, start_cpu = time.perf_counter(), time.process_time()
            out[i] = fns[i]()
            best[i] = min(best[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
    return list(zip(best, cpu, out))


def cpu_note(what: str, mine: float, theirs: float, repeats: int) -> str:
    """The conditions column of a published-model row: best-of, alternating, and the CPU-time ratio."""
    return f"best of {repeats}, alternating; CPU {mine:.1f} s vs {theirs:.1f} s {what}: {theirs / mine:.2f}x"


#: The released htdemucs: demucs' config "htdemucs" with dconv_mode 3 (48 channels, depth 4, 5 layers, 7.8 s).
HTDEMUCS_KWARGS = dict(channels=48, depth=4, t_layers=5, dconv_mode=3, segment=Fraction(39, 5), nfft=4096)


def build_htdemucs(work: Path):
    """demucs' released htdemucs architecture with random weights, saved as a demucs package in ``work``.

    Returns:
        (demucs' model in eval mode, path of the ``.th`` package).

    Raises:
        ImportError: demucs is not importable.
    """
    import torch

    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # demucs imports it, never uses it here
    from demucs.htdemucs import HTDemucs as RefHTDemucs
    from demucs.states import get_state, load_model

    from stemforge.stems import FOUR_STEMS

    kwargs = dict(sources=list(FOUR_STEMS), **HTDEMUCS_KWARGS)
    torch.manual_seed(0)
    ref = RefHTDemucs(**kwargs)
    randomize_(ref, scale=0.02)
    path = work / "htdemucs.th"
    torch.save({"klass": RefHTDemucs, "args": (), "kwargs": kwargs, "state": get_state(ref, None, half=False),
                "training_args": {}}, path)
    return load_model(str(path)).eval(), path


def htdemucs_rows(work: Path, seconds: float, repeats: int) -> None:
    import torch

    try:
        ref, path = build_htdemucs(work)
        from demucs.apply import apply_model
    except ImportError as exc:
        row("published HTDemucs vs demucs", f"not measured: demucs not importable ({exc})")
        return
    from stemforge.models.compat import load_pretrained
    from stemforge.separate import Separator

    kwargs = HTDEMUCS_KWARGS
    ours = Separator(load_pretrained(path), overlap=0.25, shifts=0)
    fast = Separator(load_pretrained(path), overlap=0.25, shifts=0, precision="int8")
    mix = 0.3 * torch.randn(1, 2, int(seconds * RATE), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        (t_ref, c_ref, expected), (t_ours, c_ours, got), (t_fast, c_fast, approx) = alternate(
            [lambda: apply_model(ref, mix, shifts=0, split=True, overlap=0.25),
             lambda: ours.separate_array(mix[0].numpy(), RATE),
             lambda: fast.separate_array(mix[0].numpy(), RATE)], repeats)
    expected = expected[0].numpy()
    got = np.stack([got[s] for s in ours.sources])
    # demucs centres its last, shorter chunk on real samples before it; our engine zero-pads it after the end, so
    # compare where only full chunks contribute (up to the start of demucs' last chunk).
    segment = int(float(kwargs["segment"]) * RATE)
    stride = int(0.75 * segment)
    last = (mix.shape[-1] - 1) // stride * stride
    diff = float(np.abs(got[..., :last] - expected[..., :last]).max())
    row(f"HTDemucs (released architecture, random weights), {seconds:.0f} s: ours vs demucs `apply_model`",
        f"**{t_ref / t_ours:.2f}x** demucs' speed ({t_ours:.1f} s vs {t_ref:.1f} s), max diff {diff:.1e} "
        f"{'(<= 1e-4)' if diff <= 1e-4 else '(ABOVE 1e-4)'}, output RMS {float(np.sqrt(np.mean(expected ** 2))):.2g}",
        cpu_note("demucs", c_ours, c_ref, repeats))
    approx = np.stack([approx[s] for s in fast.sources])
    row(f"HTDemucs fast path (`--precision int8`: {FAST_PATH}) vs ours exact",
        f"{t_ours / t_fast:.2f}x speed-up ({t_fast:.1f} s), SDR vs exact {sdr(approx, got):.1f} dB",
        cpu_note("ours exact", c_fast, c_ours, repeats))


ROFORMER_YAML = """\
audio: {{chunk_size: 441000, num_channels: 2, sample_rate: 44100}}
model:
  dim: {dim}
  depth: {depth}
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12, 12, 12, 12, 12, 24, 24, 24, 24, 24, 24, 24, 24,
    48, 48, 48, 48, 48, 48, 48, 48, 128, 129]
  dim_head: 64
  heads: 8
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  stft_n_fft: 2048
  stft_hop_length: 441
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
training:
  instruments: ['vocals', 'other']
  target_instrument: vocals
"""


def roformer_rows(work: Path, dim: int, depth: int, repeats: int) -> None:
    import torch

    try:
        import yaml
        from bs_roformer import BSRoformer

        from stemforge.models.compat.io import config_yaml_loader
    except ImportError as exc:
        row("BS-RoFormer vs bs_roformer", f"not measured: reference not importable ({exc})")
        return
    from stemforge.engine import int8_transformers
    from stemforge.models.compat import load_pretrained

    text = ROFORMER_YAML.format(dim=dim, depth=depth)
    cfg = yaml.load(text, Loader=config_yaml_loader())["model"]
    cfg.pop("linear_transformer_depth")
    torch.manual_seed(0)
    ref = BSRoformer(**cfg)
    randomize_(ref, seed=1)
    ref.eval()
    torch.save(ref.state_dict(), work / "roformer.ckpt")
    (work / "roformer.yaml").write_text(text)
    ours = load_pretrained(work / "roformer.ckpt").eval()
    fast = load_pretrained(work / "roformer.ckpt").eval()
    int8_transformers(fast)  # what Separator(..., precision="int8") does
    mix = 0.3 * torch.randn(1, 2, 10 * RATE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        (t_ref, c_ref, expected), (t_ours, c_ours, got), (t_fast, c_fast, approx) = alternate(
            [lambda: ref(mix), lambda: ours(mix), lambda: fast(mix)], repeats)
    diff = float((got[:, 0] - expected).abs().max())
    row(f"BS-RoFormer (dim {dim}, depth {depth}, random weights), one 10 s segment: ours vs `bs_roformer`",
        f"**{t_ref / t_ours:.2f}x** the reference's speed ({t_ours:.2f} s vs {t_ref:.2f} s), max diff {diff:.1e} "
        f"{'(<= 1e-4)' if diff <= 1e-4 else '(ABOVE 1e-4)'}, output RMS {float(expected.square().mean().sqrt()):.2g}",
        cpu_note("the reference", c_ours, c_ref, repeats))
    row(f"BS-RoFormer fast path (`--precision int8`: {FAST_PATH}) vs ours exact",
        f"{t_ours / t_fast:.2f}x speed-up ({t_fast:.2f} s), SDR vs exact "
        f"{sdr(approx[:, 0].numpy(), got[:, 0].numpy()):.1f} dB", cpu_note("ours exact", c_fast, c_ours, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="song length for the end-to-end rows")
    parser.add_argument("--threads", type=int, default=2, help="model threads (default 2)")
    parser.add_argument("--parity", default=str(ROOT / ".parity"), help="folder of the reference packages")
    parser.add_argument("--htdemucs-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the published-model rows (run in turn)")
    parser.add_argument("--baseline-src", type=Path, help="also time the default model from this older src/ "
                        "(e.g. `git archive OLD src | tar -x -C /tmp/old`), alternating runs")
    parser.add_argument("--skip", action="append", default=[], choices=["cli", "floor", "jobs", "start", "htdemucs", "roformer"])
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    sys.path.append(args.parity)
    import torch

    torch.set_num_threads(args.threads)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores "
          f"({' '.join(os.uname()[4:5])}), model threads {args.threads}; start {load()}\n")
    print("| measurement | result | conditions |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="stemforge-e2e-") as tmp:
        work = Path(tmp)
        song = make_song(work, args.seconds)
        steps = {
            "cli": lambda: cli_rows(song, work, args.seconds, args.threads, args.baseline_src),
            "floor": lambda: floor_row(args.seconds, args.threads),
            "jobs": lambda: jobs_rows(work, args.threads),
            "start": lambda: start_rows(song, work),
            "htdemucs": lambda: htdemucs_rows(work, args.htdemucs_seconds, args.repeats),
            "roformer": lambda: roformer_rows(work, 128, 6, args.repeats),
        }
        for name, step in steps.items():
            if name not in args.skip:
                step()
    print(f"\nend {load()}")


if __name__ == "__main__":
    main()
