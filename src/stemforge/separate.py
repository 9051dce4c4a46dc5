"""The separation API: a ``Separator`` turns arrays or audio files into stems.

Files are streamed end to end (decode -> channel plan -> resample -> overlap-add engine -> resample back
-> encode), so memory stays bounded by the segment size whatever the track length. Outputs are written
atomically: nothing appears under the target name until the stem is complete.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from stemforge.audio import AudioWriter, StreamResampler, check_output_format, open_audio, resample
from stemforge.engine import EngineOptions, separate_blocks, separate_tensor
from stemforge.errors import StemforgeError
from stemforge.layout import ChannelPlan
from stemforge.models.base import StemModel
from stemforge.models.loading import DEFAULT_MODEL, load_model

#: Frames decoded per read; small enough to keep memory flat, large enough to be efficient.
READ_BLOCK = 1 << 16

ProgressCallback = Callable[[float, "float | None"], None]


@dataclasses.dataclass
class OutputOptions:
    """Where and how stems are written (``separate_file``)."""

    directory: Path = Path("separated")
    fmt: str = "wav"  # wav | flac | mp3
    bits: str = "16"  # 16 | 24 | 32f (wav only)
    mp3_bitrate: int = 320
    clip: str = "rescale"  # rescale: scale a stem down if it would clip; clamp: hard-limit samples
    filename: str = "{track}/{stem}.{ext}"
    keep_rate: bool = False  # write at the input's sample rate instead of the model's
    keep_channels: bool = False  # write the input's channel layout instead of the model's
    stems: tuple[str, ...] | None = None  # subset to write; None: all
    two_stems: str | None = None  # write STEM and no_STEM only
    force: bool = False  # overwrite existing outputs


class Separator:
    """Separate with one model. ``model`` is "default", a registered name, a checkpoint path or a StemModel."""

    def __init__(self, model: str | Path | StemModel = DEFAULT_MODEL, *, segment: float | None = None,
                 overlap: float = 0.25, shifts: int = 0, batch_size: int = 1, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None, backend: str = "torch", wiener: int = 0,
                 seed: int = 0) -> None:
        if isinstance(model, StemModel):
            self.model, self.name = model.eval(), model.architecture
        else:
            self.model, self.name = load_model(model)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise StemforgeError("--device cuda was asked for but no CUDA device is available")
        if threads is not None:
            if threads < 1:
                raise StemforgeError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        if wiener:
            if wiener < 0 or not hasattr(self.model, "wiener_iterations"):
                raise StemforgeError(f"--wiener needs a spectrogram network and a count >= 0; {self.name!r} has no Wiener post-filter")
            self.model.wiener_iterations = wiener
        self.model.to(device)
        if backend != "torch":
            from stemforge.export import load_backend

            self.model = load_backend(self.model, backend)
        self.options = EngineOptions(segment=segment, overlap=overlap, shifts=shifts, batch_size=batch_size,
                                     device=device, precision=precision, seed=seed)
        self.options.validate()

    @property
    def sources(self) -> list[str]:
        return self.model.sources

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def separate_array(self, mix: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """mix: (channels, time) at ``sample_rate`` -> {stem: (channels, time)} in the same layout and rate."""
        if mix.ndim != 2 or mix.shape[1] == 0:
            raise StemforgeError(f"mix must be a non-empty (channels, time) array, got shape {mix.shape}")
        plan = ChannelPlan(mix.shape[0], self.model.channels, keep_channels=True)
        x = plan.to_model(np.asarray(mix, dtype=np.float32))
        flat = resample(x.reshape(-1, x.shape[-1]), sample_rate, self.sample_rate)
        stems = separate_tensor(self.model, flat.reshape(*x.shape[:2], -1), self.options)
        out = plan.to_file(stems)  # (sources, channels, time)
        result = {}
        for name, stem in zip(self.sources, out):
            stem = resample(stem, self.sample_rate, sample_rate)
            result[name] = _fit_length(stem, mix.shape[1])
        return result

    def output_paths(self, track: Path, output: OutputOptions) -> dict[str, Path]:
        """stem name -> target path, following ``output.filename``."""
        names = select_stems(self.sources, output.stems, output.two_stems)
        base = Path(output.directory) / self.name
        paths = {}
        for stem in names:
            try:
                rel = output.filename.format(track=track.stem, trackext=track.name, stem=stem, ext=output.fmt)
            except (KeyError, IndexError, ValueError) as exc:
                raise StemforgeError(f"bad --filename template {output.filename!r}: use {{track}}, {{trackext}}, {{stem}}, {{ext}}") from exc
            paths[stem] = base / rel
        if len(set(paths.values())) != len(paths):
            raise StemforgeError(f"--filename template {output.filename!r} gives several stems the same file name")
        return paths

    def separate_file(self, path: str | Path, output: OutputOptions | None = None, *, progress: bool = False,
                      callback: ProgressCallback | None = None) -> dict[str, Path]:
        """Separate one file into ``output.directory``; returns stem -> written path.

        ``callback(done_seconds, total_seconds_or_None)`` is called as audio is processed; ``progress``
        shows a tqdm bar on stderr.
        """
        output = output or OutputOptions()
        if output.clip not in ("rescale", "clamp"):
            raise StemforgeError(f"clip mode must be rescale or clamp, got {output.clip!r}")
        path = Path(path)
        targets = self.output_paths(path, output)
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing and not output.force:
            raise StemforgeError(f"output already exists: {existing[0]} (use --force to overwrite)")
        reader = open_audio(path)
        try:
            info = reader.info
            plan = ChannelPlan(info.channels, self.model.channels, output.keep_channels)
            check_output_format(output.fmt, output.bits, plan.out_channels)
            out_rate = info.sample_rate if output.keep_rate else self.sample_rate
            bar = _progress_bar(path.name, info.seconds) if progress else None

            done = 0.0

            def report(model_samples: int) -> None:
                nonlocal done
                done += model_samples / self.sample_rate
                if bar is not None:
                    bar.update(model_samples / self.sample_rate)
                if callback is not None:
                    callback(done, info.seconds)

            try:
                return self._stream_to_files(reader, plan, targets, output, out_rate, report)
            finally:
                if bar is not None:
                    bar.close()
        finally:
            reader.close()

    def _stream_to_files(self, reader, plan: ChannelPlan, targets: dict[str, Path], output: OutputOptions,
                         out_rate: int, report: Callable[[int], None]) -> dict[str, Path]:
        info = reader.info
        groups, width = len(plan.groups), self.model.channels
        rescale = output.clip == "rescale" and output.bits != "32f"
        # With rescaling, stems go to float staging files first: the gain needs each stem's peak.
        writers = {stem: AudioWriter(_staging_path(dest) if rescale else dest, out_rate, plan.out_channels,
                                     "wav" if rescale else output.fmt, "32f" if rescale else output.bits,
                                     output.mp3_bitrate, overwrite=True if rescale else output.force)
                   for stem, dest in targets.items()}
        peaks = dict.fromkeys(targets, 0.0)
        back = {stem: StreamResampler(self.sample_rate, out_rate, plan.out_channels) for stem in targets}
        frames_in = [0]

        def model_blocks() -> Iterator[np.ndarray]:
            to_model = StreamResampler(info.sample_rate, self.sample_rate, groups * width)
            for block in reader.blocks(READ_BLOCK):
                frames_in[0] += block.shape[1]
                x = plan.to_model(block).reshape(groups * width, -1)
                yield to_model.process(x).reshape(groups, width, -1)
            yield to_model.process(np.zeros((groups * width, 0), np.float32), last=True).reshape(groups, width, -1)

        written = dict.fromkeys(targets, 0)

        def emit(stem: str, block: np.ndarray, last: bool = False) -> None:
            block = back[stem].process(block, last=last)
            if last and out_rate == info.sample_rate:
                block = block[:, :max(0, frames_in[0] - written[stem])]  # resampling twice can add a sample or two
            if block.shape[1]:
                peaks[stem] = max(peaks[stem], float(np.abs(block).max()))
                writers[stem].write(block)
                written[stem] += block.shape[1]

        try:
            for out in separate_blocks(self.model, model_blocks(), groups, self.options, report):
                for stem, block in _selected(self.sources, plan.to_file(out), targets).items():
                    emit(stem, block)
            for stem in targets:
                emit(stem, np.zeros((plan.out_channels, 0), np.float32), last=True)
                if out_rate == info.sample_rate and written[stem] < frames_in[0]:
                    writers[stem].write(np.zeros((plan.out_channels, frames_in[0] - written[stem]), np.float32))
            if frames_in[0] == 0:
                raise StemforgeError(f"{info.path}: contains no audio samples")
            staged = {stem: writer.commit() for stem, writer in writers.items()}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        if not rescale:
            return staged
        try:
            return {stem: _finalise(staged[stem], targets[stem], peaks[stem], output) for stem in targets}
        finally:
            for path in staged.values():
                path.unlink(missing_ok=True)


def select_stems(sources: list[str], stems: tuple[str, ...] | None, two_stems: str | None) -> list[str]:
    """Names of the stems to write, validated against the model's sources."""
    if two_stems is not None and stems is not None:
        raise StemforgeError("use either --two-stems or --stems, not both")
    if two_stems is not None:
        if two_stems not in sources:
            raise StemforgeError(f"--two-stems {two_stems!r}: the model's stems are {', '.join(sources)}")
        return [two_stems, f"no_{two_stems}"]
    if stems is None:
        return list(sources)
    unknown = [s for s in stems if s not in sources]
    if unknown or not stems:
        raise StemforgeError(f"--stems {','.join(stems)}: the model's stems are {', '.join(sources)}")
    return list(dict.fromkeys(stems))


def _selected(sources: list[str], block: np.ndarray, targets: dict[str, Path]) -> dict[str, np.ndarray]:
    """(sources, channels, n) -> the requested stems; ``no_X`` is the sum of every stem but X."""
    named = dict(zip(sources, block))
    out = {}
    for stem in targets:
        if stem in named:
            out[stem] = named[stem]
        else:
            kept = stem[len("no_"):]
            out[stem] = sum(v for k, v in named.items() if k != kept)
    return out


def _staging_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.stage.wav")


def _finalise(staged: Path, dest: Path, peak: float, output: OutputOptions) -> Path:
    """Copy a float staging file into the final format, scaled down if it would clip (as Demucs does)."""
    gain = 1.0 / max(1.01 * peak, 1.0)
    reader = open_audio(staged)
    try:
        with AudioWriter(dest, reader.info.sample_rate, reader.info.channels, output.fmt, output.bits,
                         output.mp3_bitrate, overwrite=output.force) as writer:
            for block in reader.blocks(READ_BLOCK):
                writer.write(block * gain)
    finally:
        reader.close()
        staged.unlink(missing_ok=True)
    return dest


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def _progress_bar(name: str, total: float | None):
    from tqdm import tqdm

    return tqdm(total=round(total, 2) if total else None, desc=name, unit="s", unit_scale=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s [{elapsed}<{remaining}]" if total else None,
                leave=False, dynamic_ncols=True)
