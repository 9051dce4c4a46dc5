"""Spike (issue #18): the networks of published HTDemucs and BS-RoFormer in ONNX Runtime, against our torch forward.

    PYTHONPATH=src python benchmarks/onnx_spike.py [--threads 1 2] [--repeats 3] [--skip htdemucs|roformer]
        [--exporter legacy|dynamo] [--parity .parity] [--no-fp16]

For each architecture (released HTDemucs, random weights, one 7.8 s segment; BS-RoFormer dim 128 depth 6, one 10 s
segment, as ``benchmarks/end_to_end.py`` builds them) the learned part alone (everything between our STFT and iSTFT)
is exported once at the engine's fixed segment length and timed, best of ``--repeats`` alternating:

* our torch network vs the same network in onnxruntime (graph optimisation ALL, intra-op threads = torch's), wall
  and process CPU time, one thread and two, and their max difference;
* onnxruntime candidates for an opt-in fast path: dynamic int8 (``quantize_dynamic``, per-channel, MatMul only) and
  fp16 (``onnxruntime.transformers.float16``, inputs and outputs kept float32), each with its SDR against our
  exact network output.

Figures are the network's alone: the STFT, normalisation and iSTFT are the same torch code on either side.
Peak RSS is printed after each warm-up run: watch it. BS-RoFormer in onnxruntime needs about 7 GB with one thread
and went past 8 GB with two; its fp16 graph more (``--no-fp16``). The figures measured and why no ONNX Runtime
path was adopted for these architectures: README, ``## Speed``, the list of candidates measured and not adopted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(noise, 1e-30))


class HTNetwork(nn.Module):
    """Our HTDemucs between its STFT and iSTFT: (normalised spectrogram channels, normalised waveform) ->
    (decoded spectrogram channels, decoded waveform): ``HybridUNet.encode_decode``."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_decode(x, xt)

def ht_inputs(model, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from stemforge.models.compat.hdemucs import complex_as_channels, hybrid_spectrogram

    x = complex_as_channels(hybrid_spectrogram(mix, model.config.nfft))
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (1e-5 + x.std(dim=(1, 2, 3), keepdim=True))
    xt = (mix - mix.mean(dim=(1, 2), keepdim=True)) / (1e-5 + mix.std(dim=(1, 2), keepdim=True))
    return x.contiguous(), xt.contiguous()


class RoNetwork(nn.Module):
    """Our BS-RoFormer between its STFT and the mask application: band-split input (B, N, sum widths) -> real
    masks (B, S, N, sum widths): ``RoFormer.estimate_masks``."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.estimate_masks(x)

def real_rotary(self, t: torch.Tensor) -> torch.Tensor:
    """``Rotary.forward`` in real arithmetic (ONNX has no complex type): the same rotation, float32 rounding."""
    pos = torch.arange(t.shape[-2], device=t.device, dtype=self.freqs.dtype)
    angles = torch.repeat_interleave(pos[:, None] * self.freqs, 2, dim=-1)
    pairs = t.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return t * angles.cos() + rotated * angles.sin()


def ro_inputs(model, mix: torch.Tensor) -> torch.Tensor:
    c = model.config
    batch, channels, length = mix.shape
    window = torch.hann_window(c.win_length)
    spec = torch.stft(mix.reshape(-1, length), n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                      normalized=c.normalized, window=window, return_complex=True)
    bins, frames = spec.shape[-2:]
    spec = spec.view(batch, channels, bins, frames).permute(0, 2, 1, 3).reshape(batch, bins * channels, frames)
    return torch.view_as_real(spec).permute(0, 2, 1, 3).reshape(batch, frames, -1).contiguous()


def export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, exporter: str, patch=None) -> float:
    """Export ``module`` at the inputs' shapes (fixed); ``patch``: a context manager held during the export."""
    start = time.perf_counter()
    with patch() if patch else contextlib.nullcontext():
        _export(module, inputs, path, exporter)
    return time.perf_counter() - start


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, exporter: str) -> None:
    names = [f"input_{i}" for i in range(len(inputs))]
    with torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(module, inputs, str(path), input_names=names, dynamo=True, optimize=True,
                              external_data=False)
        else:
            torch.onnx.export(module, inputs, str(path), input_names=names, opset_version=17, dynamo=False)


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Without this the arena grew by about 2 GB per HTDemucs segment run (3.2 -> 5.1 GB after two runs).
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def scope(node) -> str:
    """The module path a node came from: the dynamo exporter's ``namespace`` metadata, else the node's name (the
    legacy exporter names nodes after their module path)."""
    return next((p.value for p in node.metadata_props if p.key == "namespace"), node.name.replace("/", "."))


def quantize_int8(src: Path, dst: Path, nodes: list[str] | None = None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     nodes_to_quantize=nodes)


def alternate(fns: dict, repeats: int) -> dict[str, tuple[float, float, object]]:
    names = list(fns)
    best = {n: (float("inf"), float("inf"), None) for n in names}
    for r in range(repeats):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            start, cpu = time.perf_counter(), time.process_time()
            out = fns[n]()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            best[n] = (min(best[n][0], wall), min(best[n][1], cpu), out)
    return best


def compare(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], work: Path, threads: list[int],
            repeats: int, exporter: str, transformer_nodes: str, patch=None, fp16: bool = True) -> None:
    import onnx

    path = work / f"{name}.onnx"
    seconds = export(module, inputs, path, exporter, patch)
    graph = onnx.load(str(path))
    print(f"\n{name}: exported ({exporter}) in {seconds:.1f} s, {path.stat().st_size / 1e6:.1f} MB, "
          f"{len(graph.graph.node)} nodes; peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; {load()}")
    matmuls = [n for n in graph.graph.node if n.op_type == "MatMul"]
    # Weight products only (the attention's own products have no weights to quantise).
    chosen = [n.name for n in matmuls if transformer_nodes in scope(n) and "scaled_dot_product" not in n.name
              and "scaled_dot_product" not in scope(n)]
    print(f"  MatMul nodes: {len(matmuls)}, of which Transformer Linear layers ('{transformer_nodes}'): {len(chosen)}")
    variants = {"ort": path}
    quantize_int8(path, work / f"{name}-int8.onnx")
    variants["ort int8 (all MatMul)"] = work / f"{name}-int8.onnx"
    if chosen:
        quantize_int8(path, work / f"{name}-int8t.onnx", chosen)
        variants["ort int8 (Transformer Linear)"] = work / f"{name}-int8t.onnx"
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(graph, keep_io_types=True), str(work / f"{name}-fp16.onnx"))
        variants["ort fp16"] = work / f"{name}-fp16.onnx"
    feeds = {f"input_{i}": t.numpy() for i, t in enumerate(inputs)}
    for n in threads:
        torch.set_num_threads(n)
        sessions = {}
        for label, p in variants.items():
            try:
                sessions[label] = session(p, n)
            except Exception as exc:  # noqa: BLE001 - a candidate that does not load is reported, not fatal
                print(f"  {label}: does not load ({str(exc).splitlines()[0][:200]})")

        def torch_run():
            with torch.inference_mode():
                out = module(*inputs)
            return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

        fns = {"torch": torch_run}
        fns.update({label: (lambda s=s: s.run(None, feeds)) for label, s in sessions.items()})
        if n == threads[0]:  # one warm-up run each, in turn, with the process's peak RSS after it
            for label, fn in fns.items():
                fn()
                print(f"  warm-up {label}: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        results = alternate(fns, repeats)
        t_wall, t_cpu, exact = results["torch"]
        print(f"  {n} thread(s), best of {repeats} alternating; {load()}")
        print(f"    torch: {t_wall:.2f} s wall, {t_cpu:.2f} s CPU")
        for label in sessions:
            wall, cpu, got = results[label]
            diff = max(float(np.abs(g - e).max()) for g, e in zip(got, exact))
            quality = " ".join(f"{sdr(g, e):.1f}" for g, e in zip(got, exact))
            print(f"    {label}: {wall:.2f} s wall ({t_wall / wall:.2f}x torch), {cpu:.2f} s CPU ({t_cpu / cpu:.2f}x), "
                  f"max diff {diff:.1e}, SDR vs torch {quality} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exporter", choices=["legacy", "dynamo"], default="dynamo")
    parser.add_argument("--parity", default=str(ROOT / ".parity"))
    parser.add_argument("--skip", action="append", default=[], choices=["htdemucs", "roformer"])
    parser.add_argument("--roformer-seconds", type=float, default=10.0)
    parser.add_argument("--no-fp16", action="store_true", help="leave out the fp16 graph (BS-RoFormer's took the "
                        "process past 10 GB)")
    args = parser.parse_args()
    sys.path.append(args.parity)
    import end_to_end as e2e

    from stemforge.models.compat import load_pretrained

    print(f"torch {torch.__version__}, {os.cpu_count()} cores; start {load()}")
    with tempfile.TemporaryDirectory(prefix="stemforge-onnx-spike-") as tmp:
        work = Path(tmp)
        if "htdemucs" not in args.skip:
            _, pkg = e2e.build_htdemucs(work)
            model = load_pretrained(pkg).eval()
            segment = int(model.default_segment * e2e.RATE)
            mix = 0.3 * torch.randn(1, 2, segment, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                inputs = ht_inputs(model, mix)
            compare("htdemucs", HTNetwork(model).eval(), inputs, work, args.threads, args.repeats, args.exporter,
                    "model.crosstransformer", fp16=not args.no_fp16)
        if "roformer" not in args.skip:
            import yaml

            from stemforge.models.compat.io import config_yaml_loader
            from stemforge.models.compat.roformer import Rotary

            text = e2e.ROFORMER_YAML.format(dim=128, depth=6)
            cfg = yaml.load(text, Loader=config_yaml_loader())["model"]
            cfg.pop("linear_transformer_depth")
            from bs_roformer import BSRoformer

            torch.manual_seed(0)
            ref = BSRoformer(**cfg)
            e2e.randomize_(ref, seed=1)
            torch.save(ref.state_dict(), work / "roformer.ckpt")
            (work / "roformer.yaml").write_text(text)
            model = load_pretrained(work / "roformer.ckpt").eval()
            mix = 0.3 * torch.randn(1, 2, int(args.roformer_seconds * e2e.RATE), generator=torch.Generator().manual_seed(0))
            @contextlib.contextmanager
            def real_rotation():  # for the export only: our torch side keeps its complex rotation
                saved = Rotary.forward
                Rotary.forward = real_rotary
                try:
                    yield
                finally:
                    Rotary.forward = saved

            compare("roformer", RoNetwork(model).eval(), (ro_inputs(model, mix),), work, args.threads, args.repeats,
                    args.exporter, "model.layers", real_rotation, fp16=not args.no_fp16)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; end {load()}")


if __name__ == "__main__":
    main()
