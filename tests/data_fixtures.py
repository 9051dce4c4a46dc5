"""Tiny audio fixtures for the data tests: tones, MUSDB-style song folders, multi-stream .stem.mp4 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 8000
SOURCES = ("drums", "bass", "other", "vocals")


def tone(freq: float, frames: int, channels: int = 2) -> np.ndarray:
    t = np.arange(frames) / RATE
    wave = 0.2 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1)


def musdb_song(folder: Path, frames: int = RATE * 2, rate: int = RATE) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    stems = {name: tone(100 * (i + 1), frames) for i, name in enumerate(SOURCES)}
    for name, wave in stems.items():
        sf.write(folder / f"{name}.wav", wave, rate, subtype="FLOAT")
    sf.write(folder / "mixture.wav", sum(stems.values()), rate, subtype="FLOAT")
    return stems


def write_stem_mp4(path: Path, stems: list[np.ndarray], rate: int = 44100) -> None:
    """A MUSDB18-style multi-stream AAC file: ``stems`` are (frames, 2) float32, mixture first."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        streams = [container.add_stream("aac", rate=rate) for _ in stems]
        for stream in streams:
            stream.layout = "stereo"
        for stream, wave in zip(streams, stems):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave.reshape(1, -1)), format="flt",
                                               layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
