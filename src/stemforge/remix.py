"""Re-balance stems into a new mix: per-stem gain and pan, loudness-matched to the original, true-peak limited.

``remix`` is a pure function on arrays: the stems are scaled (dB; ``-inf`` mutes) and panned, summed, brought
to the integrated loudness (EBU R128 / ITU-R BS.1770, measured with ``pyloudnorm``) of the original mix, and
then limited so that no sample exceeds the true-peak ceiling (-1 dBTP by default), the peak being measured on
the signal oversampled 4x as BS.1770 prescribes. ``load_stem_folder`` reads a folder written by
``stemforge separate`` (one file per stem, optionally the original as ``mixture.*``) and refuses a folder
with missing, extra, differently long or differently sampled stems.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from stemforge.audio import AUDIO_EXTENSIONS, load, open_audio
from stemforge.errors import StemforgeError
from stemforge.stems import FOUR_STEMS, SIX_STEMS

#: The name of the original mix in a stem folder (as in MUSDB18).
MIXTURE = "mixture"
#: True-peak ceiling of a remix, dBTP.
CEILING_DBTP = -1.0
#: Oversampling factor of the true-peak meter (BS.1770-4 asks for at least 4x; 8x reads closer to the analogue
#: peak, so other 4x meters read at or below it).
OVERSAMPLE = 8
#: Samples per block of the oversampled peak meter.
_BLOCK = 1 << 16
#: The most gain (dB) added on top of plain loudness matching to make up for what the limiter takes.
MAX_MAKEUP_DB = 3.0


class RemixError(StemforgeError):
    """A stem folder or a gain/pan request that cannot make a remix."""


@dataclasses.dataclass(frozen=True)
class StemFolder:
    """The stems of one track: ``stems`` {name: (channels, time) float32}, ``rate``, and the original mix if found."""

    stems: dict[str, np.ndarray]
    rate: int
    mixture: np.ndarray | None = None  # (channels, time) at ``mixture_rate``
    mixture_rate: int | None = None


def stem_sets() -> list[tuple[str, ...]]:
    """The stem sets a folder may hold.

    Returns:
        The four stems, the six stems, and each two-stem split (``X`` and ``no_X``), as name tuples.
    """
    return [FOUR_STEMS, SIX_STEMS, *((s, f"no_{s}") for s in SIX_STEMS)]


def load_stem_folder(folder: str | os.PathLike[str]) -> StemFolder:
    """Read the stems (and ``mixture.*``, if present) of a folder written by ``stemforge separate``.

    Args:
        folder: holds ``<stem>.<ext>`` audio files forming one of ``stem_sets()``, and optionally ``mixture.<ext>``.

    Returns:
        The stems, all with the same rate, channel count and length.

    Raises:
        RemixError: no such folder, missing or extra stems, two files for one stem, or stems that differ in
            sample rate, channel count or length (checked before any audio is decoded).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RemixError(f"{folder}: no such folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.stem in files:
            raise RemixError(f"{folder}: two files for {path.stem!r} ({files[path.stem].name}, {path.name})")
        files[path.stem] = path
    names = set(files) - {MIXTURE}
    if not names:
        raise RemixError(f"{folder}: no stems (expected audio files named {', '.join(FOUR_STEMS)})")
    match = min(stem_sets(), key=lambda s: (len(set(s) ^ names), len(set(s) - names)))  # ties: fewest missing
    missing, extra = [s for s in match if s not in names], sorted(names - set(match))
    if missing or extra:
        what = "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                     f"extra {', '.join(extra)}" if extra else "") if p)
        raise RemixError(f"{folder}: not a stem set ({what}); expected {', '.join(match)}"
                         + (f" and optionally {MIXTURE} (move other audio files out of the folder)" if extra else ""))
    infos = {}
    for name in match:
        reader = open_audio(files[name])
        reader.close()
        infos[name] = reader.info
    first_name, first = next(iter(infos.items()))
    for name, info in infos.items():
        if info.sample_rate != first.sample_rate:
            raise RemixError(f"{info.path.name} is at {info.sample_rate} Hz but {first.path.name} at "
                             f"{first.sample_rate} Hz; stems must share one sample rate")
        if info.channels != first.channels:
            raise RemixError(f"{info.path.name} has {info.channels} channels but {first.path.name} "
                             f"{first.channels}; stems must share one channel layout")
        if info.frames != first.frames:
            raise RemixError(f"{info.path.name} is {_duration(info.frames, info.sample_rate)} long but "
                             f"{first.path.name} {_duration(first.frames, first.sample_rate)}; stems must be "
                             "equally long")
    stems = {name: load(files[name])[0] for name in match}
    lengths = {s.shape[1] for s in stems.values()}
    if len(lengths) != 1:  # containers without a frame count in the header
        raise RemixError(f"{folder}: stems of different lengths ({', '.join(str(n) for n in sorted(lengths))} "
                         "frames); stems must be equally long")
    mixture = mixture_rate = None
    if MIXTURE in files:
        mixture, mixture_rate = load(files[MIXTURE])
    return StemFolder(stems, first.sample_rate, mixture, mixture_rate)


def _duration(frames: int | None, rate: int) -> str:
    return "of unknown length" if frames is None else f"{frames} frames ({frames / rate:.3f} s)"


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
    gains, pans = dict(gains or {}), dict(pans or {})
    for kind, levels in (("gain", gains), ("pan", pans)):
        unknown = [s for s in levels if s not in stems]
        if unknown:
            raise RemixError(f"--{kind} {', '.join(unknown)}: no such stem; the stems are {', '.join(stems)}")
    shapes = {s.shape for s in stems.values()}
    if len(shapes) != 1:
        raise RemixError(f"stems differ in shape: {sorted(shapes)}")
    channels = next(iter(shapes))[0]
    if pans and channels != 2:
        raise RemixError(f"--pan needs stereo stems; these have {channels} channel(s)")
    mix = np.zeros(next(iter(shapes)), np.float32)
    for name, stem in stems.items():
        gain = gains.get(name, 0.0)
        if gain == -math.inf:
            continue
        scale = np.full((channels, 1), 10 ** (gain / 20), np.float32)
        if name in pans:
            scale[:, 0] *= pan_gains(pans[name])
        mix += stem * scale
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
