"""The separation API: a ``Separator`` turns arrays or audio files into stems.

``FileSeparator`` holds what every separator shares and needs no torch: output names, the streaming file
pipeline and its atomic writes. ``Separator`` runs any model through torch and the engine; ``LiteSeparator``
runs a plain U-Net checkpoint (the bundled default) through ``stemforge.lite`` without importing torch, and
``open_separator`` picks it where it gives the same stems (``stemforge separate`` starts in under a second).

Files are streamed end to end (decode -> channel plan -> resample -> overlap-add engine -> resample back
-> encode), so memory stays bounded by the segment size whatever the track length. Outputs are written
atomically and as a set: every stem of a track goes to a hidden temporary file first, and only when all of
them are complete are they moved into place together (exclusively, unless ``force``), under a per-track lock
so two runs writing the same track never interleave. Output names come from a template confined to the
output folder.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import queue
import re
import string
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from stemforge.audio import (BIT_DEPTHS, CLIP_MODES, OUTPUT_FORMATS, AudioWriter, OutputExistsError,
                             StreamResampler, check_mp3_bitrate, check_output_format, deferred_signals, open_audio,
                             publish, resample, sweep_stale_parts)
from stemforge.errors import AudioError, StemforgeError
from stemforge.hub import DEFAULT_MODEL, bundled_checkpoint, catalogue
from stemforge.layout import ChannelPlan

if TYPE_CHECKING:  # torch is imported by the torch path only
    import torch

    from stemforge.lite import LiteUNet
    from stemforge.models.base import StemModel

#: Frames decoded per read; small enough to keep memory flat, large enough to be efficient.
READ_BLOCK = 1 << 16

ProgressCallback = Callable[[float, "float | None"], None]

#: The fields an output file name template may use.
TEMPLATE_FIELDS = ("track", "trackext", "stem", "ext", "relpath")

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OutputOptions:
    """Where and how stems are written (``separate_file``)."""

    directory: Path = Path("separated")
    fmt: str = "wav"  # wav | flac | mp3
    bits: str | None = None  # 16 (the default) | 24 | 32f (wav only); mp3 has no bit depth
    mp3_bitrate: int | None = None  # kbit/s, mp3 only (default 320)
    clip: str = "rescale"  # rescale: scale a stem down if it would clip; clamp (or none): hard-limit samples
    filename: str = "{track}/{stem}.{ext}"
    keep_rate: bool = False  # write at the input's sample rate instead of the model's
    keep_channels: bool = False  # write the input's channel layout instead of the model's
    stems: tuple[str, ...] | None = None  # subset to write; None: all
    two_stems: str | None = None  # write STEM and no_STEM only
    force: bool = False  # overwrite existing outputs
    jobs: int | None = None  # stems encoded in parallel; None: one thread per stem, up to the CPU count

    def validate(self) -> None:
        """Check every option that does not depend on the model or the input, so a mistake costs no work.

        Raises:
            StemforgeError: one line naming the offending option.
        """
        if self.fmt not in OUTPUT_FORMATS:
            raise StemforgeError(f"--format {self.fmt}: choose one of {', '.join(OUTPUT_FORMATS)}")
        if self.fmt == "mp3":
            if self.bits is not None:
                raise StemforgeError(f"--bits {self.bits} does not apply to mp3 (it has no bit depth; set "
                                     "--mp3-bitrate instead), use wav or flac for a bit depth")
            if self.mp3_bitrate is not None:
                check_mp3_bitrate(self.mp3_bitrate)
        else:
            if self.mp3_bitrate is not None:
                raise StemforgeError(f"--mp3-bitrate {self.mp3_bitrate} applies to mp3 only, not {self.fmt} "
                                     "(add --mp3 or --format mp3)")
            if self.bits is not None and self.bits not in BIT_DEPTHS:
                raise StemforgeError(f"--bits {self.bits}: choose one of {', '.join(BIT_DEPTHS)}")
            check_output_format(self.fmt, self.bits or "16", 1)
        if self.clip not in CLIP_MODES:
            raise StemforgeError(f"--clip-mode {self.clip}: choose one of {', '.join(CLIP_MODES)}")
        if self.jobs is not None and self.jobs < 1:
            raise StemforgeError(f"--jobs {self.jobs}: needs at least 1")
        if self.stems is not None and self.two_stems is not None:
            raise StemforgeError("use either --two-stems or --stems, not both")
        check_filename_template(self.filename)

    @property
    def depth(self) -> str:
        """The bit depth written (``16`` when unset; ignored for mp3)."""
        return self.bits or "16"

    @property
    def bitrate(self) -> int:
        """The mp3 bitrate in kbit/s (320 when unset)."""
        return 320 if self.mp3_bitrate is None else self.mp3_bitrate


class FileSeparator:
    """What every separator shares, without torch: output names, the streaming file pipeline, atomic writes.

    Subclasses give ``name``, ``model`` (anything with ``sources``, ``sample_rate`` and ``channels``: a
    ``StemModel`` or a ``lite.LiteUNet``) and ``_separate_blocks`` (the model and its overlap-add engine);
    everything from decoding to publishing the stems is here, once.
    """

    name: str
    model: Any

    @property
    def sources(self) -> list[str]:
        return self.model.sources

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        """The model's channels (a file's channels are mapped to groups of these by ``layout.ChannelPlan``)."""
        return self.model.channels

    @property
    def overlap(self) -> float:
        """The fraction of a segment shared with the next one that this separator cuts with."""
        raise NotImplementedError

    def _separate_blocks(self, blocks: Iterator[np.ndarray], groups: int,
                         report: Callable[[int], None] | None) -> Iterator[np.ndarray]:
        """Stream (groups, channels, n) blocks at the model's rate -> (groups, sources, channels, m) blocks.

        ``report`` is called with each output block's length, as soon as it is out.
        """
        raise NotImplementedError

    def _separate_whole(self, mix: np.ndarray) -> np.ndarray:
        """mix (groups, channels, time) at the model's rate -> (groups, sources, channels, time)."""
        block = 1 << 18
        parts = self._separate_blocks((mix[..., i:i + block] for i in range(0, mix.shape[-1], block)), mix.shape[0], None)
        return np.concatenate(list(parts), axis=-1)

    @property
    def samplerate(self) -> int:
        """demucs.api.Separator's name for ``sample_rate``."""
        return self.sample_rate

    def separate_array(self, mix: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """mix: (channels, time) at ``sample_rate`` -> {stem: (channels, time)} in the same layout and rate."""
        if mix.ndim != 2 or mix.shape[1] == 0:
            raise StemforgeError(f"mix must be a non-empty (channels, time) array, got shape {mix.shape}")
        if not np.isfinite(mix).all():
            raise StemforgeError("mix contains NaN or infinite samples")
        plan = ChannelPlan(mix.shape[0], self.channels, keep_channels=True)
        x = plan.to_model(np.asarray(mix, dtype=np.float32))
        flat = resample(x.reshape(-1, x.shape[-1]), sample_rate, self.sample_rate)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught as non-finite output below
            stems = self._separate_whole(flat.reshape(*x.shape[:2], -1))
        out = plan.to_file(stems)  # (sources, channels, time)
        if not np.isfinite(out).all():
            raise StemforgeError(f"separating the mix gave NaN or infinite samples (its samples reach "
                                 f"{float(np.abs(mix).max()):.3g}, far outside [-1, 1])")
        result = {}
        for name, stem in zip(self.sources, out):
            stem = resample(stem, self.sample_rate, sample_rate)
            result[name] = _fit_length(stem, mix.shape[1])
        return result

    def output_paths(self, track: Path, output: OutputOptions, relpath: str | Path = "") -> dict[str, Path]:
        """Where each stem of ``track`` goes, following ``output.filename``, always inside ``output.directory``.

        Args:
            track: the input file.
            output: output options (directory, template, format, stem selection).
            relpath: the track's folder relative to the input directory it was found in (``{relpath}``).

        Returns:
            stem name -> target path.
        """
        check_filename_template(output.filename)
        names = select_stems(self.sources, output.stems, output.two_stems)
        base = Path(output.directory) / _safe_part(self.name)
        fields = {"track": _safe_part(track.stem), "trackext": _safe_part(track.name),
                  "relpath": "/".join(_safe_part(p) for p in Path(relpath).parts if p not in ("", "."))}
        paths = {}
        for stem in names:
            rel = output.filename.format(**fields, stem=_safe_part(stem), ext=output.fmt)
            parts = [p for p in re.split(r"[/\\]", rel) if p not in ("", ".")]
            if not parts or ".." in parts or "\0" in rel:
                raise StemforgeError(f"--filename {output.filename!r} gives {rel!r} for {track}, which is not a file "
                                     "name inside the output folder")
            paths[stem] = base.joinpath(*parts)
        if len(set(paths.values())) != len(paths):
            raise StemforgeError(f"--filename template {output.filename!r} gives several stems the same file name")
        return paths

    def separate_file(self, path: str | Path, output: OutputOptions | None = None, *, progress: bool = False,
                      callback: ProgressCallback | None = None, relpath: str | Path = "") -> dict[str, Path]:
        """Separate one file into ``output.directory``.

        A track's stems appear all at once when every one is complete; an interrupted run leaves none of
        them and no temporary files (those of a run that was killed outright are swept by the next run).
        If an earlier run left only some of the stems, the missing ones are written and the others kept.

        Args:
            path: the audio file.
            output: where and how to write; defaults to ``OutputOptions()``.
            progress: show a tqdm bar on stderr.
            callback: called as ``callback(done_seconds, total_seconds_or_None)`` as audio is processed.
            relpath: the track's folder relative to the input directory, for the ``{relpath}`` field.

        Returns:
            stem -> written path.

        Raises:
            StemforgeError: bad options, an unreadable or non-finite input, outputs that already exist
                (without ``force``), or a failed write (full disk, ...), each with a one-line message.
        """
        output = output or OutputOptions()
        output.validate()
        path = Path(path)
        targets = self.output_paths(path, output, relpath)
        _refuse_complete(path, targets, output.force)
        new_dirs = _missing_dirs([Path(output.directory) / _safe_part(self.name),
                                  *(t.parent for t in targets.values())])
        try:
            self._separate_file(path, output, targets, progress, callback, relpath)
        except BaseException:
            _remove_empty(new_dirs)  # a failed or interrupted run leaves no empty track folders behind
            raise
        return targets

    def _separate_file(self, path: Path, output: OutputOptions, targets: dict[str, Path], progress: bool,
                       callback: ProgressCallback | None, relpath: str | Path) -> None:
        """``separate_file`` once the targets are known: read, separate, encode and publish under the track lock."""
        reader = open_audio(path)
        try:
            info = reader.info
            plan = ChannelPlan(info.channels, self.channels, output.keep_channels)
            check_output_format(output.fmt, output.depth, plan.out_channels)
            out_rate = info.sample_rate if output.keep_rate else self.sample_rate
            lock = Path(output.directory) / _safe_part(self.name) / _lock_name(path, relpath)
            with TrackLock(lock):
                for target in targets.values():
                    sweep_stale_parts(target)
                todo = _refuse_complete(path, targets, output.force)
                if len(todo) < len(targets):
                    log.warning("%s: an earlier run left %d of %d stems; writing the missing ones (%s)", path,
                                len(targets) - len(todo), len(targets), ", ".join(todo))
                bar = _progress_bar(path.name, info.seconds) if progress else None
                done = 0.0

                def report(model_samples: int) -> None:
                    nonlocal done
                    done += model_samples / self.sample_rate
                    if bar is not None:
                        bar.update(model_samples / self.sample_rate)
                    if callback is not None:
                        callback(done, info.seconds)

                opened: list[AudioWriter] = []  # every temp file, so cleanup cannot miss one whenever a signal lands
                try:
                    try:
                        parts = self._stream_to_files(reader, plan, todo, output, out_rate, report, opened,
                                                      path.name if progress else None)
                    finally:
                        if bar is not None:
                            bar.close()
                    try:
                        publish({todo[stem]: tmp for stem, tmp in parts.items()}, overwrite=output.force)
                    except OutputExistsError as exc:  # another writer got there first
                        raise OutputExistsError(f"{path}: {exc}") from exc
                finally:
                    for writer in opened:
                        writer.abort()  # published files are links or renames: only leftovers go
        finally:
            reader.close()

    def _stream_to_files(self, reader, plan: ChannelPlan, targets: dict[str, Path], output: OutputOptions,
                         out_rate: int, report: Callable[[int], None], opened: list[AudioWriter],
                         bar_name: str | None = None) -> dict[str, Path]:
        """Separate ``reader`` into finished temporary files next to ``targets``; returns stem -> temp file.

        Every writer is appended to ``opened`` as it is created; the caller aborts them all when done.
        With ``bar_name``, the final encoding pass (after rescaling) shows its own progress bar.
        """
        info = reader.info
        groups, width = len(plan.groups), self.channels
        rescale = output.clip == "rescale" and output.depth != "32f"
        # With rescaling, stems go to float staging files first: the gain needs each stem's peak.
        mask = info.channel_mask if plan.out_channels == info.channels else None  # the input's speaker layout
        writers: dict[str, AudioWriter] = {}
        for stem, dest in targets.items():
            writers[stem] = _open_writer(opened, dest, out_rate, plan.out_channels, "wav" if rescale else output.fmt,
                                         "32f" if rescale else output.depth, output.bitrate, mask)
        peaks = dict.fromkeys(targets, 0.0)
        back = {stem: StreamResampler(self.sample_rate, out_rate, plan.out_channels) for stem in targets}
        frames_in = [0]
        peak_in = [0.0]

        def model_blocks() -> Iterator[np.ndarray]:
            to_model = StreamResampler(info.sample_rate, self.sample_rate, groups * width)
            for block in reader.blocks(READ_BLOCK):
                if not np.isfinite(block).all():
                    at = frames_in[0] + int(np.argmin(np.isfinite(block).all(axis=0)))
                    raise AudioError(f"{info.path}: contains NaN or infinite samples (first at "
                                     f"{at / info.sample_rate:.3f} s); refusing to separate it")
                frames_in[0] += block.shape[1]
                if block.size:
                    peak_in[0] = max(peak_in[0], float(np.abs(block).max()))
                x = plan.to_model(block).reshape(groups * width, -1)
                yield to_model.process(x).reshape(groups, width, -1)
            yield to_model.process(np.zeros((groups * width, 0), np.float32), last=True).reshape(groups, width, -1)

        written = dict.fromkeys(targets, 0)

        def emit(stem: str, block: np.ndarray, last: bool = False) -> None:
            block = back[stem].process(block, last=last)
            if last and out_rate == info.sample_rate:
                block = block[:, :max(0, frames_in[0] - written[stem])]  # resampling twice can add a sample or two
            if block.shape[1]:
                peak = float(np.abs(block).max())  # NaN if any sample is NaN
                if not np.isfinite(peak):  # finite but absurd input (a corrupt float file) overflows
                    raise AudioError(f"{info.path}: separating it gave NaN or infinite samples (its samples reach "
                                     f"{peak_in[0]:.3g}, far outside [-1, 1]: a corrupt file?)")
                peaks[stem] = max(peaks[stem], peak)
                writers[stem].write(block)
                written[stem] += block.shape[1]

        def write_out(out: np.ndarray) -> None:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught as non-finite output, in one line
                for stem, block in _selected(self.sources, plan.to_file(out), targets).items():
                    emit(stem, block)

        # Decoding and encoding run in their own threads, overlapped with the model (they release the GIL).
        with _Prefetch(model_blocks(), "stemforge-read") as blocks, _Consumer(write_out, "stemforge-write") as sink:
            with np.errstate(over="ignore", invalid="ignore"):
                for out in self._separate_blocks(blocks, groups, report):
                    sink.put(out)
        for stem in targets:
            emit(stem, np.zeros((plan.out_channels, 0), np.float32), last=True)
            if out_rate == info.sample_rate and written[stem] < frames_in[0]:
                writers[stem].write(np.zeros((plan.out_channels, frames_in[0] - written[stem]), np.float32))
        if frames_in[0] == 0:
            raise AudioError(f"{info.path}: contains no audio samples")
        if not all(written.values()):
            raise AudioError(f"{info.path}: too short to separate ({frames_in[0]} frames at {info.sample_rate} Hz "
                             f"give no samples at {out_rate} Hz)")
        staged = {stem: writer.finish() for stem, writer in writers.items()}
        if not rescale:
            return staged
        finals = {stem: _open_writer(opened, dest, out_rate, plan.out_channels, output.fmt, output.depth,
                                     output.bitrate, mask) for stem, dest in targets.items()}
        total = sum(written.values()) / out_rate
        bar = _progress_bar(f"{bar_name} (encoding {output.fmt})", total) if bar_name else None
        try:
            final = _encode_parallel(staged, finals, peaks, output.jobs, out_rate, bar)
        finally:
            if bar is not None:
                bar.close()
        for writer in writers.values():
            writer.abort()  # the float staging files are no longer needed
        return final


class Separator(FileSeparator):
    """Separate with any model through torch. ``model`` is "default", a registered name, a checkpoint path or a StemModel."""

    def __init__(self, model: str | Path | StemModel = DEFAULT_MODEL, *, segment: float | None = None,
                 overlap: float | None = None, shifts: int = 0, batch_size: int = 1, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None, backend: str = "torch", wiener: int = 0,
                 seed: int = 0) -> None:
        import torch

        from stemforge.engine import EngineOptions, int8_transformers
        from stemforge.hub import resolve as load_model
        from stemforge.models.base import StemModel

        if isinstance(model, StemModel):
            self.model, self.name = model.eval(), model.architecture
        else:
            self.model, self.name = load_model(model)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise StemforgeError("--device cuda was asked for but no CUDA device is available")
        self.options = EngineOptions(segment=segment, overlap=overlap, shifts=shifts, batch_size=batch_size,
                                     device=device, precision=precision, seed=seed)
        self.options.validate()  # before the model is changed (int8 is refused off the CPU here)
        if threads is not None:
            if threads < 1:
                raise StemforgeError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        if wiener:
            if wiener < 0 or not hasattr(self.model, "wiener_iterations"):
                raise StemforgeError(f"--wiener needs a spectrogram network and a count >= 0; {self.name!r} has no Wiener post-filter")
            self.model.wiener_iterations = wiener
        if precision == "int8" and backend != "torch":
            raise StemforgeError(f"--precision int8 runs on the torch backend only, not --backend {backend}")
        self.model.to(device)
        if precision == "int8":
            if isinstance(model, StemModel):
                import copy

                self.model = copy.deepcopy(self.model)  # the caller's model stays float32
            if not int8_transformers(self.model):
                log.warning("precision int8 changes nothing for %s: it has no Transformer layers (it runs in float32)",
                            self.name)
        if backend != "torch":
            from stemforge.export import load_backend

            self.model = load_backend(self.model, backend)

    def _separate_blocks(self, blocks: Iterator[np.ndarray], groups: int,
                         report: Callable[[int], None] | None) -> Iterator[np.ndarray]:
        from stemforge.engine import separate_blocks

        return separate_blocks(self.model, blocks, groups, self.options, report)

    @property
    def overlap(self) -> float:
        return self.options.overlap_for(self.model)

    def separate_tensor(self, wav: torch.Tensor, sr: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """demucs.api style: ``wav`` (channels, time) at ``sr`` (default: the model's) -> (wav, {stem: (channels, time)})."""
        import torch

        return wav, {k: torch.from_numpy(v) for k, v in self.separate_array(wav.detach().cpu().float().numpy(), sr or self.sample_rate).items()}

    def separate_audio_file(self, path: str | Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """demucs.api style: an audio file -> (its mix (channels, time) at its own rate, {stem: (channels, time)})."""
        import torch

        from stemforge.audio import load as load_audio

        wav, rate = load_audio(path)
        return self.separate_tensor(torch.from_numpy(wav), rate)


class LiteSeparator(FileSeparator):
    """A plain U-Net checkpoint (the bundled default) run without torch (``stemforge.lite``).

    The same stems as ``Separator`` with its default options, to float32 rounding; ``open_separator`` decides
    when it applies. Its segment and overlap are the model's defaults, fixed.

    Args:
        model: the loaded runtime.
        name: the display name used for output folders (as ``hub.resolve`` gives it).
    """

    def __init__(self, model: LiteUNet, name: str) -> None:
        self.model, self.name = model, name

    @property
    def overlap(self) -> float:
        return float(self.model.spec.overlap)

    def _separate_blocks(self, blocks: Iterator[np.ndarray], groups: int,
                         report: Callable[[int], None] | None) -> Iterator[np.ndarray]:
        from stemforge.lite import separate_blocks

        return separate_blocks(self.model, blocks, groups, report)


#: ``Separator``'s engine options at their defaults: the only ones ``LiteSeparator`` reproduces.
_LITE_DEFAULTS = {"segment": None, "overlap": None, "shifts": 0, "batch_size": 1, "device": "cpu", "precision": "fp32",
                  "wiener": 0}


#: What a caller of ``open_separator`` uses its separator for (``needs``): "files", the ``FileSeparator`` API
#: (separating arrays and files); "plan", only names, stems, rates and output paths, nothing separated in this
#: process; "separator", ``Separator`` itself (NI Stems output: ``stemfile.separate_to_stem_file``).
SEPARATOR_NEEDS = ("files", "plan", "separator")


def separator_backend(backend: str = "auto", needs: str = "files") -> str:
    """The backend ``open_separator`` opens for a caller asking for ``backend`` that ``needs`` the given API.

    Args:
        backend: what the caller was asked for: ``"auto"`` or a ``Separator`` backend.
        needs: one of ``SEPARATOR_NEEDS``.

    Returns:
        ``"auto"`` (the torch-free ``LiteSeparator`` where it gives the same stems, else torch), or the
        ``Separator`` backend to use: ``"torch"`` where ``Separator`` is needed and nothing was asked, and
        where only planning is needed (an ONNX export or a compile would be built for nothing); else
        ``backend`` as asked.

    Raises:
        StemforgeError: an unknown ``needs``.
    """
    if needs not in SEPARATOR_NEEDS:
        raise StemforgeError(f"open_separator needs one of {', '.join(SEPARATOR_NEEDS)}, not {needs!r}")
    if backend == "auto":
        return "torch" if needs == "separator" else "auto"
    return "torch" if needs == "plan" else backend


def open_separator(model: str | Path | StemModel = DEFAULT_MODEL, *, backend: str = "auto", needs: str = "files",
                   **options: object) -> FileSeparator:
    """The separator for ``model``: without torch where that gives the same stems, else ``Separator``.

    With ``backend="auto"``, a stemforge ``unet`` checkpoint (``"default"``: the bundled model, another bundled name,
    or a ``.safetensors`` path) with every engine option at its default (``threads`` may be set) runs on
    ``LiteSeparator``, which starts without importing torch; anything else, or a file ``stemforge.lite`` does not
    recognise in full, gets ``Separator`` (which also reports what is wrong with a bad file). What the caller
    uses the separator for (``needs``) can change that: ``separator_backend`` decides, here only.

    Args:
        model: as for ``Separator``.
        backend: ``"auto"``, or a ``Separator`` backend (``"torch"``, ``"onnx"``, ``"compile"``).
        needs: ``"files"`` (separate arrays and files), ``"plan"`` (only names, stems and output paths: a
            backend other than auto is opened as ``"torch"``) or ``"separator"`` (the ``Separator`` API, as
            NI Stems output needs: auto means torch).
        **options: ``Separator``'s keyword options.

    Returns:
        A ``LiteSeparator`` or a ``Separator`` (always a ``Separator`` for ``needs="separator"``).
    """
    backend = separator_backend(backend, needs)
    if backend == "auto":
        lite = _lite_separator(model, options)
        if lite is not None:
            return lite
        backend = "torch"
    return Separator(model, backend=backend, **options)  # type: ignore[arg-type]


def _lite_separator(model: object, options: dict[str, object]) -> LiteSeparator | None:
    """A ``LiteSeparator`` for ``model`` with ``options``, or None (logged at debug level) where it does not apply."""
    threads = options.get("threads")
    if any(options.get(key, value) != value for key, value in _LITE_DEFAULTS.items()) or not (
            threads is None or (type(threads) is int and threads >= 1)) or set(options) - {*_LITE_DEFAULTS, "threads", "seed"}:
        return None
    if not isinstance(model, (str, Path)):
        return None
    text = str(model)
    if text in catalogue.BUNDLED:  # "default" and the other bundled models, named as hub.resolve names them
        path, name = bundled_checkpoint(text), text
    elif Path(text).suffix == ".safetensors":
        path = Path(text).expanduser()
        path, name = (path, path.stem) if path.is_file() else (None, "")
    else:
        return None
    if path is None:
        return None
    from stemforge.lite import LiteUNet, Unsupported

    try:
        runtime = LiteUNet(path, threads=threads)  # type: ignore[arg-type]
    except Unsupported as exc:
        log.debug("the torch path runs %s: %s", text, exc)
        return None
    return LiteSeparator(runtime, name)


class _Prefetch:
    """Runs an iterator in a background thread, at most ``depth`` items ahead; its errors surface in the caller.

    Leaving the ``with`` block (normally, on an error or on Ctrl-C) stops the thread at its next item and waits
    for it, so nothing still reads the source once the caller closes it.
    """

    _END = object()

    def __init__(self, items: Iterator[np.ndarray], name: str, depth: int = 2) -> None:
        self._items = items
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._offer((item, None)):
                    return
            self._offer((self._END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer((None, exc))

    def _offer(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __enter__(self) -> Iterator[np.ndarray]:
        self._thread.start()
        return self._consume()

    def _consume(self) -> Iterator[np.ndarray]:
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._END:
                return
            yield item

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Consumer:
    """Calls ``work(item)`` in a background thread for each ``put`` item, in order, at most ``depth`` behind.

    An error in ``work`` is raised by the next ``put`` and on leaving the ``with`` block; leaving it waits
    until every item is done (or, after an error in the caller, drops the rest), so the caller can then
    finish or abort the files ``work`` writes.
    """

    _END = object()

    def __init__(self, work: Callable[[np.ndarray], None], name: str, depth: int = 2) -> None:
        self._work = work
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if self._error is None and not self._cancel.is_set():
                try:
                    self._work(item)
                except BaseException as exc:
                    self._error = exc

    def put(self, item: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def __enter__(self) -> "_Consumer":
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._cancel.set()
        self._queue.put(self._END)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


def _encode_parallel(staged: dict[str, Path], finals: dict[str, AudioWriter], peaks: dict[str, float],
                     jobs: int | None, rate: int, bar) -> dict[str, Path]:
    """Encode each float staging file into its writer, several stems at once (the encoders release the GIL).

    Args:
        staged: stem -> float staging file.
        finals: stem -> open writer in the final format.
        peaks: stem -> peak magnitude, for the anti-clipping gain.
        jobs: worker threads (None: one per stem, up to the CPU count).
        rate: sample rate, to report progress in seconds.
        bar: a tqdm bar advanced in seconds of audio, or None.

    Returns:
        stem -> finished (unpublished) temporary file.
    """
    workers = max(1, min(len(finals), jobs or os.cpu_count() or 1))
    stop = threading.Event()
    lock = threading.Lock()

    def tick(frames: int) -> None:
        if bar is not None:
            with lock:
                bar.update(frames / rate)

    if workers == 1:
        return {stem: _finalise(staged[stem], writer, peaks[stem], stop, tick) for stem, writer in finals.items()}
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="stemforge-encode") as pool:
        futures = {stem: pool.submit(_finalise, staged[stem], writer, peaks[stem], stop, tick)
                   for stem, writer in finals.items()}
        try:
            return {stem: future.result() for stem, future in futures.items()}
        except BaseException:
            stop.set()  # the others stop at their next block; leaving the pool waits for them before cleanup
            raise


def check_filename_template(template: str) -> None:
    """Accept only a relative output name template that uses the documented fields.

    Args:
        template: e.g. ``"{track}/{stem}.{ext}"``; fields: ``{track}``, ``{trackext}``, ``{stem}``, ``{ext}``,
            ``{relpath}`` (no attribute access, indexing, conversions or format specs).

    Raises:
        StemforgeError: an unknown or malformed field, or an absolute template.
    """
    allowed = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise StemforgeError(f"bad --filename template {template!r} ({exc}); use {allowed}") from exc
    for name, spec, conv in fields:
        if name not in TEMPLATE_FIELDS or spec or conv:
            field = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise StemforgeError(f"bad --filename template {template!r}: unknown field {field}; use {allowed}")
    if template.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", template) or os.path.isabs(template):
        raise StemforgeError(f"--filename {template!r} must be relative to the output folder, not an absolute path")
    if ".." in re.split(r"[/\\]", template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))):
        raise StemforgeError(f"--filename {template!r} must stay inside the output folder (no '..')")


def _safe_part(value: str) -> str:
    """A field value as a single harmless path component (no separators, never ``.`` or ``..``)."""
    value = value.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return "_" * max(1, len(value)) if set(value) <= {"."} else value


def _refuse_complete(track: Path, targets: dict[str, Path], force: bool) -> dict[str, Path]:
    """The targets still to write: all with ``force``, else the missing ones (an error naming ``track`` if none is)."""
    if force:
        return dict(targets)
    todo = {stem: p for stem, p in targets.items() if not p.exists()}
    if not todo:
        raise OutputExistsError(f"{track}: output already exists: {next(iter(targets.values()))} (use --force to "
                                "overwrite, --skip-existing to skip it)")
    return todo


def _missing_dirs(folders: list[Path]) -> list[Path]:
    """The folders (and their parents) that do not exist yet, deepest first."""
    missing: set[Path] = set()
    for folder in folders:
        for d in (folder, *folder.parents):
            if d.exists() or d == d.parent:
                break
            missing.add(d)
    return sorted(missing, key=lambda d: len(d.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove each folder that is empty (deepest first); one holding anything is left alone."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _lock_name(track: Path, relpath: str | Path) -> str:
    key = hashlib.sha1(f"{Path(relpath).as_posix()}/{track.name}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f".stemforge-{key}.lock"


class TrackLock:
    """An exclusive lock on one track's outputs (``flock`` on a hidden file), so concurrent runs take turns.

    A second run writing the same track waits for the first, then finds its outputs and stops with
    "already exists". The lock file is deleted on release; where ``fcntl`` is missing (Windows) this is a no-op
    and the exclusive publish alone keeps runs from overwriting each other.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> "TrackLock":
        try:
            import fcntl
        except ImportError:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                with deferred_signals():  # the file is held (and will be removed) or not created by us, never leaked
                    fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        pass
                    else:
                        if self._current(fd):
                            self._fd = fd
                            return self
                        os.close(fd)  # the previous holder deleted it just now: lock a fresh one
                        continue
                log.info("%s: another run is writing this track; waiting for it", self.path.parent)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # interruptible; the holder removes the file when done
                except BaseException:
                    os.close(fd)
                    raise
                with deferred_signals():
                    if self._current(fd):
                        self._fd = fd
                        return self
                    os.close(fd)
        except OSError as exc:
            raise AudioError(f"{self.path.parent}: cannot write output ({exc.strerror or exc})") from exc

    def _current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``path`` (a holder deletes it on release)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # still held: nobody can have locked this file meanwhile
            os.close(self._fd)
            self._fd = None


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


def _open_writer(opened: list[AudioWriter], *args: object) -> AudioWriter:
    """An ``AudioWriter`` (overwrite allowed: ``publish`` decides) recorded in ``opened`` before a signal can land.

    ``args``: path, rate, channels, format, bits, mp3 bitrate, channel mask.
    """
    *args, mask = args
    with deferred_signals():
        writer = AudioWriter(*args, overwrite=True, channel_mask=mask)  # type: ignore[arg-type, misc]
        opened.append(writer)
    return writer


def _finalise(staged: Path, writer: AudioWriter, peak: float, stop: threading.Event | None = None,
              tick: Callable[[int], None] | None = None) -> Path:
    """Copy a float staging file into ``writer``, scaled down if it would clip (as Demucs does).

    Args:
        staged: float wav of shape (channels, n) on disk.
        writer: the final writer.
        peak: the staged signal's peak magnitude.
        stop: when set, give up at the next block (another stem failed or the run was interrupted).
        tick: called with the frames written after each block.

    Returns:
        The finished (unpublished) temporary file.
    """
    gain = 1.0 / max(1.01 * peak, 1.0)
    reader = open_audio(staged)
    try:
        for block in reader.blocks(READ_BLOCK):
            if stop is not None and stop.is_set():
                raise AudioError(f"{writer.path}: encoding stopped")
            writer.write(block * gain)
            if tick is not None:
                tick(block.shape[1])
    finally:
        reader.close()
    return writer.finish()


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def _progress_bar(name: str, total: float | None):
    from tqdm import tqdm

    return tqdm(total=round(total, 2) if total else None, desc=name, unit="s", unit_scale=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s [{elapsed}<{remaining}]" if total else None,
                leave=False, dynamic_ncols=True)
