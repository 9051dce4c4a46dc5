"""Re-balance stems into a new mix: per-stem gain and pan, loudness-matched to the original, true-peak limited.

``remix`` is a pure function on arrays: the stems are scaled (dB; ``-inf`` mutes) and panned, summed, brought
to the integrated loudness (EBU R128 / ITU-R BS.1770, measured with ``pyloudnorm``) of the original mix, and
then limited so that no sample exceeds the true-peak ceiling (-1 dBTP by default), the peak being measured on
the signal oversampled 8x (BS.1770 asks for at least 4x). ``remix_folder`` does the same for a folder written by
``stemforge separate`` (one file per stem, optionally the original as ``mixture.*``; checked by
``stemforge.stem_folder``) straight into a file, a block at a time, so its memory does not grow with the
track; ``load_stem_folder`` reads such a folder into arrays for ``remix``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping

import numpy as np

from stemforge import stem_folder
from stemforge.audio import AudioInfo, AudioWriter, load, open_audio
from stemforge.errors import StemforgeError
from stemforge.stem_folder import MIXTURE  # noqa: F401 - the original mix's name, re-exported

#: True-peak ceiling of a remix, dBTP.
CEILING_DBTP = -1.0
#: Oversampling factor of the true-peak meter (BS.1770-4 asks for at least 4x; 8x reads closer to the analogue
#: peak, so other 4x meters read at or below it).
OVERSAMPLE = 8
#: Samples per block of the oversampled peak meter.
_BLOCK = 1 << 16
#: The most gain (dB) added on top of plain loudness matching to make up for what the limiter takes.
MAX_MAKEUP_DB = 3.0
#: Frames per block of ``remix_folder`` (about 3 s at 44.1 kHz).
STREAM_BLOCK = 1 << 17


class RemixError(StemforgeError):
    """A stem folder or a gain/pan request that cannot make a remix."""


@dataclasses.dataclass(frozen=True)
class StemFolder:
    """The stems of one track: ``stems`` {name: (channels, time) float32}, ``rate``, and the original mix if found."""

    stems: dict[str, np.ndarray]
    rate: int
    mixture: np.ndarray | None = None  # (channels, time) at ``mixture_rate``
    mixture_rate: int | None = None


def load_stem_folder(folder: str | os.PathLike[str]) -> StemFolder:
    """Read the stems (and ``mixture.*``, if present) of a folder written by ``stemforge separate`` into memory.

    ``remix_folder`` streams instead; this is for the array function ``remix``.

    Args:
        folder: holds ``<stem>.<ext>`` audio files forming one stem set and optionally ``mixture.<ext>``
            (``stemforge.stem_folder``).

    Returns:
        The stems, all with the same rate, channel count and length.

    Raises:
        RemixError: no such folder, missing or extra stems, two files for one stem, or stems that differ in
            sample rate, channel count or length (checked before any audio is decoded).
    """
    found = check_folder(folder)
    stems = {name: load(path)[0] for name, path in found.paths.items()}
    lengths = {s.shape[1] for s in stems.values()}
    if len(lengths) != 1:  # the headers agreed, the decoders did not (an mp3's length is an estimate)
        raise RemixError(f"{folder}: stems of different lengths ({', '.join(str(n) for n in sorted(lengths))} "
                         "frames); stems must be equally long")
    mixture = mixture_rate = None
    if found.mixture is not None:
        mixture, mixture_rate = load(found.mixture.path)
    return StemFolder(stems, found.sample_rate, mixture, mixture_rate)


def check_folder(folder: str | os.PathLike[str]) -> stem_folder.StemFolder:
    """Check a stem folder from its files' headers (``stemforge.stem_folder.check_stem_folder``), decoding nothing.

    Args:
        folder: the stem folder.

    Returns:
        Its stems' and mixture's headers.

    Raises:
        RemixError: what the stem folder checker refuses, with its message.
    """
    try:
        return stem_folder.check_stem_folder(folder)
    except stem_folder.StemFolderError as exc:
        raise RemixError(str(exc)) from exc


def parse_levels(spec: str | None, kind: str = "gain") -> dict[str, float]:
    """``"vocals=-inf,drums=+3"`` -> ``{"vocals": -inf, "drums": 3.0}``.

    Args:
        spec: comma-separated ``stem=value`` pairs (None or empty: none). Gains are dB (``-inf`` mutes); pans
            run from -1 (left) to +1 (right).
        kind: ``gain`` or ``pan``, for the error messages and the range check.

    Returns:
        stem -> value.

    Raises:
        RemixError: a malformed pair, a non-number, a repeated stem, a pan outside [-1, 1] or a gain of +inf/NaN.
    """
    levels: dict[str, float] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value.strip()) if sep and name else None
        except ValueError:
            number = None
        if number is None:
            example = "vocals=-inf,drums=+3" if kind == "gain" else "other=-0.3"
            raise RemixError(f"--{kind} {item.strip()!r}: expected STEM=NUMBER pairs, e.g. {example}")
        if name in levels:
            raise RemixError(f"--{kind}: {name} is given twice")
        if math.isnan(number) or number == math.inf or (kind == "pan" and not -1 <= number <= 1):
            limits = "between -1 (left) and 1 (right)" if kind == "pan" else "a number of dB or -inf"
            raise RemixError(f"--{kind} {name}={value.strip()}: must be {limits}")
        levels[name] = number
    return levels


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power balance.

    Args:
        pan: -1 (hard left) to 1 (hard right).

    Returns:
        (left, right) linear gains: both 1 at 0, (sqrt 2, 0) at -1; left² + right² is always 2.
    """
    angle = (pan + 1) * math.pi / 4
    return math.sqrt(2) * math.cos(angle), math.sqrt(2) * math.sin(angle)


def sample_peaks(x: np.ndarray, oversample: int = OVERSAMPLE) -> np.ndarray:
    """Per-sample true peaks of (channels, time) audio.

    Args:
        x: (channels, time) audio.
        oversample: upsampling factor of the interpolation (scipy's polyphase ``resample_poly``, Kaiser-windowed
            sinc), run a block at a time with enough context on both sides that the blocks join seamlessly.

    Returns:
        (time,) float32: for each sample, the largest magnitude over the channels, the sample itself and the
        ``oversample`` interpolated points from it towards the next.
    """
    from scipy.signal import resample_poly

    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    peaks = np.abs(x).max(axis=0) if n else np.zeros(0, np.float32)
    pad = 16 * oversample  # input samples of context: more than the interpolation filter's half length
    for start in range(0, n, _BLOCK):
        lo, stop, hi = max(0, start - pad), min(n, start + _BLOCK), min(n, start + _BLOCK + pad)
        up = resample_poly(x[:, lo:hi], oversample, 1, axis=-1)
        up = up[:, (start - lo) * oversample:(stop - lo) * oversample]
        block = np.abs(up).max(axis=0).reshape(-1, oversample).max(axis=1)
        np.maximum(peaks[start:stop], block, out=peaks[start:stop])
    return peaks


def true_peak(x: np.ndarray, oversample: int = OVERSAMPLE) -> float:
    """The true peak of (channels, time) audio, linear: the largest magnitude after ``oversample``-times upsampling.

    Args:
        x: (channels, time) float audio.
        oversample: upsampling factor.

    Returns:
        The peak magnitude (0.0 for an empty signal).
    """
    peaks = sample_peaks(x, oversample)
    return float(peaks.max()) if peaks.size else 0.0


def loudness(x: np.ndarray, rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4 with EBU R128 gating, ``pyloudnorm``).

    Args:
        x: (channels, time) audio; shorter than one 400 ms gating block, it is measured zero-padded to one block.
        rate: sample rate in Hz.

    Returns:
        LUFS; -inf for silence.
    """
    import pyloudnorm

    data = x.T
    block = int(math.ceil(0.4 * rate))
    if data.shape[0] < block:
        data = np.pad(data, ((0, block - data.shape[0]), (0, 0)))
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def limiter_gain(peaks: np.ndarray, rate: int, ceiling_db: float = CEILING_DBTP, lookahead: float = 0.005,
                 release: float = 0.08) -> np.ndarray:
    """The gain curve that keeps a signal with per-sample true peaks ``peaks`` under ``ceiling_db``.

    The gain each sample needs is spread over ``lookahead`` before and ``release`` after it (a sliding minimum)
    and smoothed with a ``lookahead`` moving average, so it never exceeds what any sample needs and never jumps.

    Args:
        peaks: (time,) per-sample true peaks (``sample_peaks``).
        rate: sample rate in Hz.
        ceiling_db: the true-peak ceiling in dBTP.
        lookahead: attack time in seconds.
        release: hold time in seconds after a peak before the gain recovers.

    Returns:
        (time,) float32 gains in (0, 1].
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    target = 10 ** ((ceiling_db - 0.05) / 20)  # a little headroom for the gain's own modulation
    need = np.minimum(1.0, target / np.maximum(peaks, 1e-12)).astype(np.float32)
    if need.size == 0 or need.min() >= 1.0:
        return need
    attack = max(1, int(lookahead * rate))
    hold = max(1, int(release * rate))
    size = attack + hold + 1  # the minimum over [t - hold, t + attack] (a positive origin looks back in time)
    held = minimum_filter1d(need, size=size, mode="nearest", origin=hold - size // 2)
    return np.minimum(uniform_filter1d(held, size=attack, mode="nearest"), 1.0)


def _trim_to_ceiling(x: np.ndarray, ceiling_db: float) -> np.ndarray:
    """A static trim for what the limiter's own gain modulation adds between samples: x at or under the ceiling."""
    ceiling, peak = 10 ** (ceiling_db / 20), true_peak(x)
    return x * np.float32(ceiling / peak * 0.9999) if peak > ceiling else x


def true_peak_limit(x: np.ndarray, rate: int, ceiling_db: float = CEILING_DBTP) -> np.ndarray:
    """Limit (channels, time) audio so its true peak stays at or below ``ceiling_db`` dBTP (``limiter_gain``).

    Args:
        x: (channels, time) audio.
        rate: sample rate in Hz.
        ceiling_db: the true-peak ceiling in dBTP.

    Returns:
        (channels, time) float32, true peak <= ceiling.
    """
    x = np.asarray(x, dtype=np.float32)
    return _trim_to_ceiling(x * limiter_gain(sample_peaks(x), rate, ceiling_db), ceiling_db)


def stem_scales(names: list[str], channels: int, gains: Mapping[str, float] | None = None,
                pans: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Each audible stem's per-channel gain: its dB gain, times the pan's balance.

    Args:
        names: the stems, in mixing order.
        channels: their channel count.
        gains: {stem: dB}; ``-inf`` mutes; stems not named keep 0 dB.
        pans: {stem: -1..1}; needs stereo stems.

    Returns:
        {stem: (channels, 1) float32} for every stem that is not muted, in ``names`` order.

    Raises:
        RemixError: a gain or pan names a stem that is not there, or panning mono stems.
    """
    gains, pans = dict(gains or {}), dict(pans or {})
    for kind, levels in (("gain", gains), ("pan", pans)):
        unknown = [s for s in levels if s not in names]
        if unknown:
            raise RemixError(f"--{kind} {', '.join(unknown)}: no such stem; the stems are {', '.join(names)}")
    if pans and channels != 2:
        raise RemixError(f"--pan needs stereo stems; these have {channels} channel(s)")
    scales = {}
    for name in names:
        gain = gains.get(name, 0.0)
        if gain == -math.inf:
            continue
        scale = np.full((channels, 1), 10 ** (gain / 20), np.float32)
        if name in pans:
            scale[:, 0] *= pan_gains(pans[name])
        scales[name] = scale
    return scales


def _mix(stems: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The sum of the scaled stems, (channels, time) float32 (zeros when every stem is muted)."""
    mix = np.zeros(shape, np.float32)
    for name, scale in scales.items():
        mix += stems[name] * scale
    return mix


def remix(stems: Mapping[str, np.ndarray], rate: int, gains: Mapping[str, float] | None = None,
          pans: Mapping[str, float] | None = None, reference: np.ndarray | None = None,
          reference_rate: int | None = None, ceiling_db: float = CEILING_DBTP) -> np.ndarray:
    """A new mix of ``stems``: gains and pans applied, loudness-matched to the original, true-peak limited.

    Args:
        stems: {stem: (channels, time)}, all the same shape.
        rate: their sample rate.
        gains: {stem: dB}; ``-inf`` mutes a stem; stems not named keep 0 dB.
        pans: {stem: -1..1}; needs stereo stems; stems not named stay where they are.
        reference: the original mix (channels, time) whose loudness the remix matches; None: the sum of the stems.
        reference_rate: the reference's sample rate (default ``rate``).
        ceiling_db: true-peak ceiling in dBTP.

    Returns:
        (channels, time) float32 at ``rate``: the remix, at the reference's integrated loudness unless the limiter
        had to take more (or the remix is silent), with a true peak at or below ``ceiling_db``.

    Raises:
        RemixError: a gain or pan names a stem that is not there, or panning mono stems.
    """
    shapes = {s.shape for s in stems.values()}
    if len(shapes) != 1:
        raise RemixError(f"stems differ in shape: {sorted(shapes)}")
    scales = stem_scales(list(stems), next(iter(shapes))[0], gains, pans)
    mix = _mix(stems, scales, next(iter(shapes)))
    if reference is None:
        reference, reference_rate = sum(stems.values()), rate
    target = loudness(reference, reference_rate or rate)
    level = loudness(mix, rate)
    peaks = sample_peaks(mix)  # the peaks scale with the gain: one measurement serves every try below
    if not (np.isfinite(target) and np.isfinite(level)):  # silence (or a silent original): nothing to match
        return _trim_to_ceiling(mix * limiter_gain(peaks, rate, ceiling_db), ceiling_db)
    gain_db = first = target - level
    for _ in range(4):  # the limiter takes some loudness away: give some back (at most MAX_MAKEUP_DB)
        gain = np.float32(10 ** (gain_db / 20))
        out = mix * (gain * limiter_gain(peaks * gain, rate, ceiling_db))
        short = target - loudness(out, rate)
        if abs(short) < 0.05 or gain_db >= first + MAX_MAKEUP_DB:
            break
        gain_db = min(gain_db + short, first + MAX_MAKEUP_DB)
    return _trim_to_ceiling(out, ceiling_db)


# --- Streaming: the same remix, a block at a time --------------------------------------------------------------
#
# ``remix_folder`` computes what ``remix`` computes without holding the track: every quantity ``remix`` takes
# over the whole signal is either a sum (loudness: ``stemforge.dsp.loudness.LoudnessMeter``, a streaming
# BS.1770 meter, because pyloudnorm measures whole arrays only), a maximum (true peaks), or local (the
# oversampled peak meter reaches ``16 * OVERSAMPLE`` samples, the limiter's gain ``hold + 2 * attack``). So each
# block is processed together with enough of its neighbours (``_context``) that the part kept is what the
# whole-array functions give, and each pass re-reads the stems: one to measure the mix and the original, one
# per loudness try of the limited mix (none when it needs no limiting), one to write.


def _context(rate: int) -> int:
    """Frames of context on each side that make a block's limited output and its true peaks exact.

    The peak meter reads ``16 * OVERSAMPLE`` samples each way (``sample_peaks``' padding); ``limiter_gain``'s
    sliding minimum reaches ``release`` back and ``lookahead`` ahead, its moving average half a ``lookahead``
    more each way; the output's own peaks read the meter's reach again.
    """
    attack, hold = max(1, int(0.005 * rate)), max(1, int(0.08 * rate))
    return 2 * 16 * OVERSAMPLE + hold + 2 * attack + 16


def _windows(blocks: Iterable[np.ndarray], size: int, context: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Re-cut a stream of (channels, n) blocks into ``size``-frame blocks, each with ``context`` frames around it.

    Args:
        blocks: the signal, in blocks of any length.
        size: frames per output block.
        context: frames wanted on each side (fewer at the signal's start and end).

    Yields:
        (start, offset, chunk): the block covers frames [start, start + size) of the signal (fewer at its end);
        ``chunk`` holds frames [start - offset, ...) up to ``context`` past the block or the signal's end.
    """
    buf, first, start = None, 0, 0  # buf holds frames [first, first + buf.shape[1])
    for block in blocks:
        buf = block if buf is None else np.concatenate([buf, block], axis=1)
        while start + size + context <= first + buf.shape[1]:
            lo = max(0, start - context)
            yield start, start - lo, buf[:, lo - first:start + size + context - first]
            start += size
            cut = max(0, start - context) - first
            if cut > 0:
                buf, first = buf[:, cut:], first + cut
    end = first + (buf.shape[1] if buf is not None else 0)
    while start < end:
        lo = max(0, start - context)
        yield start, start - lo, buf[:, lo - first:]
        start += size


def _stem_blocks(found: stem_folder.StemFolder, names: Iterable[str],
                 size: int) -> Iterator[dict[str, np.ndarray]]:
    """The stems ``names`` read in step, ``size`` frames at a time: {stem: (channels, n) float32}.

    Raises:
        RemixError: the files decode to different lengths (their headers agreed).
    """
    names = list(names)
    readers = {}
    try:
        for name in names:
            readers[name] = open_audio(found.stems[name].path)
        streams = {name: reader.blocks(size) for name, reader in readers.items()}
        done = 0
        while streams:
            blocks = {name: next(stream, None) for name, stream in streams.items()}
            lengths = {name: 0 if b is None else b.shape[1] for name, b in blocks.items()}
            if len(set(lengths.values())) > 1:
                short = min(lengths, key=lengths.get)
                raise RemixError(f"{found.folder}: stems of different lengths: {found.stems[short].path.name} ends "
                                 f"after {done + lengths[short]} frames, the others go on; stems must be equally long")
            if not next(iter(lengths.values())):
                return
            done += next(iter(lengths.values()))
            yield blocks
    finally:
        for reader in readers.values():
            reader.close()


def _file_loudness(info: AudioInfo, size: int) -> float:
    """Integrated loudness of a whole file, read a block at a time."""
    from stemforge.dsp.loudness import integrated_loudness

    reader = open_audio(info.path)
    try:
        return integrated_loudness(reader.blocks(size), info.sample_rate, info.channels)
    finally:
        reader.close()


class _PeakFile:
    """The mix's per-sample true peaks (float32, one per frame), kept in an unnamed temporary file.

    The 8x-oversampled peak meter is most of a remix's time; the mix's peaks do not change between passes (the
    limiter needs them times the pass's gain), so the first pass writes them here and later passes read the
    ranges they need, instead of metering the mix again each time. On disk rather than in memory, so memory
    stays flat in the song's length (4 bytes a frame: 53 MB for 5 minutes at 44.1 kHz).
    """

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()

    def append(self, peaks: np.ndarray) -> None:
        self.file.seek(0, os.SEEK_END)
        self.file.write(np.ascontiguousarray(peaks, dtype=np.float32).tobytes())

    def read(self, start: int, stop: int) -> np.ndarray:
        """Peaks of frames [start, stop)."""
        self.file.seek(4 * start)
        return np.frombuffer(self.file.read(4 * (stop - start)), np.float32)

    def close(self) -> None:
        self.file.close()


def _limited(found: stem_folder.StemFolder, scales: Mapping[str, np.ndarray], gain: np.float32, ceiling_db: float,
             size: int, out_peaks: bool, mix_peaks: _PeakFile) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The mix times ``gain`` through the limiter, block by block, as ``remix`` computes it on the whole array.

    Only the audible stems are read (one muted stem when all are, for the length of the silence). ``mix_peaks``
    holds the mix's per-sample true peaks from the first pass.

    Yields:
        ((channels, n) float32 output, its (n,) per-sample true peaks or None when ``out_peaks`` is false).
    """
    rate, context = found.sample_rate, _context(found.sample_rate)
    names = list(scales) or list(found.stems)[:1]
    mixes = (_mix(b, scales, next(iter(b.values())).shape) for b in _stem_blocks(found, names, size))
    for start, offset, chunk in _windows(mixes, size, context):
        n = min(size, chunk.shape[1] - offset)
        peaks = mix_peaks.read(start - offset, start - offset + chunk.shape[1])
        out = chunk * (gain * limiter_gain(peaks * gain, rate, ceiling_db))
        peaks = sample_peaks(out)[offset:offset + n] if out_peaks else None
        yield out[:, offset:offset + n], peaks


def _needs_limiting(peak: float, gain: np.float32, rate: int, ceiling_db: float) -> bool:
    """Whether ``limiter_gain`` takes anything from a signal whose largest true peak is ``peak`` times ``gain``."""
    return bool(limiter_gain(np.array([peak], np.float32) * gain, rate, ceiling_db).min() < 1.0)


def remix_folder(folder: str | os.PathLike[str] | stem_folder.StemFolder, out: str | os.PathLike[str],
                 gains: Mapping[str, float] | None = None, pans: Mapping[str, float] | None = None,
                 ceiling_db: float = CEILING_DBTP, bits: str = "24", mp3_bitrate: int = 320, overwrite: bool = False,
                 block_frames: int = STREAM_BLOCK) -> Path:
    """``remix`` of a stem folder straight into a file, reading the stems a block at a time.

    Memory does not grow with the track's length (a 44.1 kHz stereo remix peaks at about 140 MB of RSS whatever
    its length; ``benchmarks/remix_memory.py``). The result is ``remix`` of ``load_stem_folder(folder)``'s arrays
    to rounding (the tests hold it within 1e-5); the stems are read 2 to 6 times (measuring, each loudness try of
    a limited mix, writing), the mix's true peaks metered once and kept in a temporary file (``_PeakFile``).

    Args:
        folder: a stem folder, or one already checked (``check_folder``).
        out: the output file (.wav, .flac or .mp3); written through a hidden temporary file renamed into place.
        gains: {stem: dB}; ``-inf`` mutes a stem.
        pans: {stem: -1..1}; needs stereo stems.
        ceiling_db: true-peak ceiling in dBTP.
        bits: bit depth of wav/flac: "16", "24" or "32f".
        mp3_bitrate: kbit/s of an mp3.
        overwrite: replace an existing ``out``.
        block_frames: frames per block.

    Returns:
        ``out``.

    Raises:
        RemixError: a bad folder (``check_folder``), an unknown stem in ``gains``/``pans``, panning mono stems,
            stems that decode to different lengths, or more than 5 channels (BS.1770 weighs 1 to 5).
        AudioError: a file that cannot be read or written; nothing is left at ``out`` then.
    """
    from stemforge.dsp.loudness import CHANNEL_WEIGHTS, LoudnessMeter

    found = folder if isinstance(folder, stem_folder.StemFolder) else check_folder(folder)
    rate, channels, names = found.sample_rate, found.channels, list(found.stems)
    scales = stem_scales(names, channels, gains, pans)
    for info in [next(iter(found.stems.values())), *([found.mixture] if found.mixture is not None else [])]:
        if info.channels > len(CHANNEL_WEIGHTS):
            raise RemixError(f"{info.path}: {info.channels} channels; loudness (BS.1770) is defined for 1 to "
                             f"{len(CHANNEL_WEIGHTS)}")
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    # Pass 1: the mix's loudness and largest true peak; the original's loudness (mixture.*, else the stems' sum).
    mix_meter, sum_meter = LoudnessMeter(rate, channels), LoudnessMeter(rate, channels)

    def mixes() -> Iterator[np.ndarray]:
        for blocks in _stem_blocks(found, names, block_frames):
            mix = _mix(blocks, scales, next(iter(blocks.values())).shape)
            mix_meter.add(mix)
            if found.mixture is None:
                sum_meter.add(sum(blocks.values()))
            yield mix

    mix_peaks = _PeakFile()  # the mix's true peaks, metered once here and read back by every later pass
    try:
        peak = 0.0
        for _, offset, chunk in _windows(mixes(), block_frames, 2 * 16 * OVERSAMPLE):
            peaks = sample_peaks(chunk)[offset:offset + block_frames]
            mix_peaks.append(peaks)
            peak = max(peak, float(peaks.max()) if peaks.size else 0.0)
        level = mix_meter.result()
        target = _file_loudness(found.mixture, block_frames) if found.mixture is not None else sum_meter.result()
        # Then ``remix``'s loop, each loudness try a pass over the limited mix (none when nothing is limited).
        gain, out_peak = np.float32(1.0), None
        if np.isfinite(target) and np.isfinite(level):
            gain_db = first = target - level
            for _ in range(4):
                gain = np.float32(10 ** (gain_db / 20))
                if not _needs_limiting(peak, gain, rate, ceiling_db):
                    out_peak = None  # the mix times gain: loudness on target, peak under the ceiling
                    break
                meter, out_peak = LoudnessMeter(rate, channels), 0.0
                for block, peaks in _limited(found, scales, gain, ceiling_db, block_frames, True, mix_peaks):
                    meter.add(block)
                    out_peak = max(out_peak, float(peaks.max()) if peaks.size else 0.0)
                short = target - meter.result()
                if abs(short) < 0.05 or gain_db >= first + MAX_MAKEUP_DB:
                    break
                gain_db = min(gain_db + short, first + MAX_MAKEUP_DB)
        elif _needs_limiting(peak, gain, rate, ceiling_db):  # silence (or a silent original): only the limiter
            out_peak = 0.0
            for _, peaks in _limited(found, scales, gain, ceiling_db, block_frames, True, mix_peaks):
                out_peak = max(out_peak, float(peaks.max()) if peaks.size else 0.0)
        # Last pass: write, with ``_trim_to_ceiling``'s static trim if the limited output's peak needs it.
        ceiling = 10 ** (ceiling_db / 20)
        trim = np.float32(ceiling / out_peak * 0.9999) if out_peak is not None and out_peak > ceiling else None
        with AudioWriter(out, rate, channels, fmt, bits, mp3_bitrate, overwrite=overwrite) as writer:
            for block, _ in _limited(found, scales, gain, ceiling_db, block_frames, False, mix_peaks):
                writer.write(block * trim if trim is not None else block)
        return out
    finally:
        mix_peaks.close()
