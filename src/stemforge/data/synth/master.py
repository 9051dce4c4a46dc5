"""Mastering that keeps the mixture the exact sum of the stems: stereo width, bus compression, limiting, loudness.

A mastering compressor or limiter is a time-varying gain computed from the mixture. Computing that gain curve on
the mixture and multiplying every stem by it gives the sound of a linked bus compressor/limiter while the stems
still sum to the mastered mixture sample for sample. Loudness is measured with ``pyloudnorm`` (ITU-R BS.1770).
``codec_round_trip`` encodes and decodes audio through MP3 or AAC with PyAV (FFmpeg) for augmentation.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from scipy import ndimage, signal

from stemforge.errors import StemforgeError


@dataclasses.dataclass(frozen=True)
class Master:
    """Mastering settings drawn per song (``dataclasses.asdict`` goes into the song JSON)."""

    target_lufs: float = -11.0
    bus_threshold_db: float = -18.0
    bus_ratio: float = 2.0
    bus_attack_ms: float = 10.0
    bus_release_ms: float = 150.0
    ceiling_db: float = -1.0
    limiter_release_ms: float = 60.0


def stereo_width(stereo: np.ndarray, width: float) -> np.ndarray:
    """(2, time) -> (2, time) with the side signal scaled by ``width`` (0: mono, 1: unchanged, > 1: wider)."""
    mid = 0.5 * (stereo[0] + stereo[1])
    side = 0.5 * (stereo[0] - stereo[1]) * np.float32(width)
    return np.stack([mid + side, mid - side]).astype(np.float32)


def _envelope_db(x: np.ndarray, sample_rate: int, attack_ms: float, release_ms: float) -> np.ndarray:
    """Peak envelope (dBFS) of (2, time): max over channels, attack/release smoothing on the RMS over 5 ms."""
    power = np.max(x.astype(np.float64) ** 2, axis=0)
    window = max(1, int(0.005 * sample_rate))
    power = ndimage.uniform_filter1d(power, window, mode="nearest")
    level = 10 * np.log10(np.maximum(power, 1e-12))
    hold = max(1, int(attack_ms / 1000 * sample_rate))
    level = ndimage.maximum_filter1d(level, hold, mode="nearest")  # rises about one attack time early
    a = float(np.exp(-1.0 / (release_ms / 1000 * sample_rate)))
    smoothed, _ = signal.lfilter([1 - a], [1, -a], level, zi=[level[0] * a])
    return np.maximum(smoothed, level - 6.0)  # a fast rise is not smoothed away by the release constant


def compressor_gain(mixture: np.ndarray, sample_rate: int, threshold_db: float, ratio: float,
                    attack_ms: float = 10.0, release_ms: float = 150.0, knee_db: float = 6.0) -> np.ndarray:
    """Gain curve (time,) float32 of a feed-forward soft-knee compressor driven by ``mixture`` (2, time).

    Args:
        mixture: (2, time) float32, the bus being compressed.
        sample_rate: rate in Hz.
        threshold_db, ratio, attack_ms, release_ms, knee_db: the usual compressor settings.

    Returns:
        (time,) linear gains in (0, 1].
    """
    level = _envelope_db(mixture, sample_rate, attack_ms, release_ms)
    over = level - threshold_db
    reduction = np.where(over <= -knee_db / 2, 0.0,
                         np.where(over >= knee_db / 2, over * (1 - 1 / ratio),
                                  (1 - 1 / ratio) * (over + knee_db / 2) ** 2 / (2 * knee_db)))
    return (10 ** (-reduction / 20)).astype(np.float32)


def limiter_gain(mixture: np.ndarray, sample_rate: int, ceiling_db: float = -1.0, lookahead_ms: float = 5.0,
                 release_ms: float = 60.0) -> np.ndarray:
    """Gain curve (time,) of a look-ahead brickwall limiter: |gain * mixture| <= ceiling everywhere.

    Args:
        mixture: (2, time) float32.
        sample_rate: rate in Hz.
        ceiling_db: the output peak ceiling in dBFS.
        lookahead_ms: how early the gain starts falling before a peak.
        release_ms: how fast it recovers.

    Returns:
        (time,) linear gains in (0, 1].
    """
    ceiling = 10 ** (ceiling_db / 20)
    peak = np.max(np.abs(mixture.astype(np.float64)), axis=0)
    needed = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    look = max(1, int(lookahead_ms / 1000 * sample_rate))
    needed = ndimage.minimum_filter1d(needed, 2 * look + 1, mode="nearest")
    # Release: the gain may rise only slowly (one-pole on the reduction); falling is immediate (min with need).
    a = float(np.exp(-1.0 / (release_ms / 1000 * sample_rate)))
    reduction = -np.log(needed)
    smoothed = _peak_hold_release(reduction, a)
    gain = np.exp(-smoothed)
    # Smooth the onsets over the look-ahead window, then enforce the ceiling exactly.
    gain = ndimage.uniform_filter1d(gain, look, mode="nearest")
    return np.minimum(gain, needed).astype(np.float32)


def _peak_hold_release(reduction: np.ndarray, a: float) -> np.ndarray:
    """y[n] = max(x[n], a * y[n-1]): instant attack, exponential release; vectorized per 4096-sample block."""
    out = np.empty_like(reduction)
    block = 4096
    carry = 0.0
    powers = a ** np.arange(block)
    for s in range(0, len(reduction), block):
        x = reduction[s:s + block]
        n = len(x)
        # y[k] = a^k * max(max_{j<=k} x[j] a^-j, carry * a)
        running = np.maximum.accumulate(np.maximum(x / powers[:n], carry * a))
        y = running * powers[:n]
        out[s:s + n] = y
        carry = float(y[-1])
    return out


def loudness(mixture: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of (2, time) with pyloudnorm; -inf for silence or very short audio."""
    import pyloudnorm

    if mixture.shape[-1] < int(0.4 * sample_rate) or not np.any(mixture):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(mixture.T.astype(np.float64)))


def master_stems(stems: dict[str, np.ndarray], sample_rate: int, settings: Master) -> tuple[dict[str, np.ndarray], dict]:
    """Bus-compress, bring to ``target_lufs`` and limit; the same gain curve is applied to every stem.

    Args:
        stems: {name: (2, time) float32}; their sum is the mixture.
        sample_rate: rate in Hz.
        settings: the master's settings.

    Returns:
        ({name: (2, time) float32} mastered, report with the measured loudness and peak of the result).
    """
    names = list(stems)
    mixture = sum(stems[n] for n in names)
    gain = compressor_gain(mixture, sample_rate, settings.bus_threshold_db, settings.bus_ratio,
                           settings.bus_attack_ms, settings.bus_release_ms)
    mixture = mixture * gain
    before = loudness(mixture, sample_rate)
    makeup = 10 ** ((settings.target_lufs - before) / 20) if np.isfinite(before) else 1.0
    for attempt in range(4):  # limiting lowers the loudness: raise the makeup gain and limit again
        limited = limiter_gain(mixture * makeup, sample_rate, settings.ceiling_db, release_ms=settings.limiter_release_ms)
        result = loudness(mixture * makeup * limited, sample_rate)
        if not np.isfinite(result) or abs(result - settings.target_lufs) < 0.3 or attempt == 3:
            break  # the last limiter gain always belongs to the final makeup gain: the ceiling holds
        makeup *= 10 ** ((settings.target_lufs - result) / 20)
    total = (gain * makeup * limited).astype(np.float32)
    out = {n: (stems[n] * total).astype(np.float32) for n in names}
    final = sum(out[n] for n in names)
    report = {"lufs": round(loudness(final, sample_rate), 2), "peak_db": round(20 * np.log10(max(float(np.abs(final).max()), 1e-12)), 2),
              "bus_gain_reduction_db_max": round(-20 * np.log10(max(float(gain.min()), 1e-12)), 2),
              "limiter_gain_reduction_db_max": round(-20 * np.log10(max(float(limited.min()), 1e-12)), 2)}
    return out, report


def codec_round_trip(stereo: np.ndarray, sample_rate: int, codec: str, bitrate: int) -> np.ndarray:
    """Encode (2, time) float32 as MP3 or AAC at ``bitrate`` bit/s with PyAV and decode it again, time-aligned.

    Args:
        stereo: (2, time) float32.
        sample_rate: rate in Hz.
        codec: "mp3" or "aac".
        bitrate: bits per second (e.g. 128000).

    Returns:
        (2, time) float32: the decoded audio with the encoder's delay removed, cut or zero-padded to ``time``.
    """
    import av

    if codec not in ("mp3", "aac"):
        raise StemforgeError(f"codec must be mp3 or aac, got {codec!r}")
    length = stereo.shape[1]
    buffer = io.BytesIO()
    container_format = "mp3" if codec == "mp3" else "adts"
    with av.open(buffer, "w", format=container_format) as out:
        stream = out.add_stream("libmp3lame" if codec == "mp3" else "aac", rate=sample_rate, layout="stereo")
        stream.bit_rate = bitrate
        frame_size = 1152 if codec == "mp3" else 1024
        data = np.ascontiguousarray(np.clip(stereo, -1, 1), dtype=np.float32)
        for s in range(0, length, frame_size):
            chunk = data[:, s:s + frame_size]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            frame.sample_rate = sample_rate
            frame.pts = s
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer, "r") as source:
        for frame in source.decode(audio=0):
            decoded.append(frame.to_ndarray().reshape(2, -1) if frame.format.is_planar else
                           frame.to_ndarray().reshape(-1, 2).T)
    y = np.concatenate(decoded, axis=1).astype(np.float32) if decoded else np.zeros((2, 0), np.float32)
    delay = _delay(stereo, y)
    y = y[:, delay:delay + length]
    if y.shape[1] < length:
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return np.ascontiguousarray(y)


def _delay(reference: np.ndarray, decoded: np.ndarray, search: int = 4096) -> int:
    """Lag (samples) of ``decoded`` behind ``reference`` by cross-correlation of the mid signals."""
    if not np.any(reference) or decoded.shape[1] < 2:
        return 0
    n = min(reference.shape[1], decoded.shape[1] - search, 44100 * 4)
    if n <= 0:
        return 0
    ref = reference[:, :n].mean(0)
    dec = decoded[:, : n + search].mean(0)
    corr = signal.correlate(dec, ref, mode="valid", method="fft")
    return int(np.argmax(corr))
