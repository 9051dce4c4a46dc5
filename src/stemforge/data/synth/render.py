"""Render a composed song to stereo stems, and write songs as MUSDB18-style folders.

``render_song(seed, seconds)`` is deterministic: the composition and every rendering choice come from
generators seeded by ``seed`` only, so the same seed gives the same samples (and the same file bytes).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf
from scipy.io import wavfile

from stemforge.audio import staged_folder
from stemforge.data.synth import mixing, soundfont
from stemforge.data.synth.composition import compose
from stemforge.data.synth.drums import DrumKit
from stemforge.data.synth.instruments import render_part
from stemforge.data.synth.singer import Voice, monophonic_lines, render_line
from stemforge.errors import StemforgeError
from stemforge.stems import FOUR_STEMS, SIX_STEMS

logger = logging.getLogger("stemforge.data")

#: Seeds at or above this are evaluation songs (held-out instruments); training seeds stay below it.
EVALUATION_SEED_BASE = 1_000_000_000
#: Seeds of the songs the bundled default model was trained and validated on (``data synth --songs 120 --seed 0``,
#: recipes/default.sh and MODEL_CARD.md): scoring that model on them is flattering.
DEFAULT_MODEL_TRAINING_SEEDS = range(0, 120)
#: ``data synth``'s seed when none is given (counted from ``EVALUATION_SEED_BASE`` with ``--evaluation``): far from
#: the bundled model's training seeds and from the evaluation split's, so songs made with the defaults are unseen.
DEFAULT_SYNTH_SEED = 500_000_000
#: Typical stem loudness (dBFS RMS) before the final normalization; each song varies around it.
_STEM_LEVEL_DB = {"drums": -17.0, "bass": -19.0, "other": -20.0, "vocals": -17.0, "guitar": -21.0, "piano": -21.0}


def is_evaluation_seed(seed: int) -> bool:
    return seed >= EVALUATION_SEED_BASE


def default_model_training_overlap(first: int, count: int) -> range:
    """The seeds among ``first .. first + count - 1`` that the bundled default model was trained on.

    Args:
        first: the first song's seed.
        count: the number of songs (seeds ``first``, ``first + 1``, ...).

    Returns:
        The overlap with ``DEFAULT_MODEL_TRAINING_SEEDS`` (empty when disjoint).
    """
    trained = DEFAULT_MODEL_TRAINING_SEEDS
    return range(max(first, trained.start), min(first + count, trained.stop))


def resolve_backend(backend: str) -> str:
    """"auto" -> "soundfont" when FluidSynth and a GM SoundFont are installed, else "numpy" (logged once)."""
    if backend not in ("auto", "soundfont", "numpy"):
        raise StemforgeError(f"unknown synthesis backend {backend!r}; use auto, soundfont or numpy")
    reason = soundfont.available() if backend != "numpy" else None
    if backend == "soundfont" and reason:
        raise StemforgeError(reason)
    if backend == "auto":
        if reason:
            _warn_fallback(reason)
            return "numpy"
        return "soundfont"
    return backend


@functools.lru_cache(maxsize=1)
def _warn_fallback(reason: str) -> None:
    logger.warning("SoundFont rendering unavailable, using numpy synthesis for instruments: %s", reason)


def render_song_with_plan(seed: int, seconds: float, sample_rate: int = 44100, stems: Sequence[str] = FOUR_STEMS,
                          backend: str = "auto") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Render one song -> ({stem: (2, time) float32}, metadata with every choice made).

    ``stems`` must contain drums, bass, other and vocals; add "guitar" and/or "piano" to split those
    instruments out of "other". Stems with no notes in the song are all-zero (that is valid).
    ``backend``: "soundfont" renders drums, bass and instruments with FluidSynth and a General MIDI
    SoundFont; "numpy" uses our own synthesis; "auto" picks the SoundFont when installed. Vocals always
    come from the formant singer. The same seed and backend (and SoundFont) give the same samples.
    """
    stems = tuple(stems)
    missing = set(FOUR_STEMS) - set(stems)
    unknown = set(stems) - set(SIX_STEMS)
    if missing or unknown:
        raise StemforgeError(f"stems must include {list(FOUR_STEMS)} and may add guitar/piano; got {list(stems)}")
    if seconds <= 0:
        raise StemforgeError(f"song length must be positive, got {seconds} s")
    if seed < 0:
        raise StemforgeError(f"seed must be >= 0, got {seed}")
    backend = resolve_backend(backend)
    evaluation = is_evaluation_seed(seed)
    plan = compose(seed, seconds, evaluation=evaluation)
    length = int(round(seconds * sample_rate))
    rng = np.random.default_rng([seed, 1])  # rendering stream, independent of composition draws
    tracks: dict[str, np.ndarray] = {name: np.zeros((2, length), np.float32) for name in stems}
    chains: dict[str, Any] = {}

    use_soundfont = backend == "soundfont"
    if use_soundfont:
        kit_program = soundfont.drum_kit_program(plan.drum_style)
        events = [(h.time, h.note, int(np.clip(round(h.velocity * 127), 1, 127))) for h in plan.drum_hits]
        events += [(h.time + 0.8, h.note, 0) for h in plan.drum_hits]
        drums = soundfont.render_events(events, length, sample_rate, bank=128, program=kit_program, channel=9)
        if rng.random() < 0.5:  # drummer's or audience's perspective
            drums = drums[::-1].copy()
        tracks["drums"] += drums
        chains["drum_kit"] = {"soundfont_program": kit_program}
    else:
        kit = DrumKit(rng, sample_rate, evaluation=evaluation)
        tracks["drums"] += kit.render(plan.drum_hits, length)

    for part in plan.parts:
        stem = part.stem if part.stem in stems else "other"
        if part.stem == "vocals":
            pitches = [n.pitch for n in part.notes] or [60]
            voice = Voice.random(rng, float(min(pitches)))
            lines = monophonic_lines(part.notes)
            for i, line in enumerate(lines):
                mono = render_line(line, length, sample_rate, voice, rng)
                position = 0.0 if part.name == "lead_vocal" else (-0.6 if i % 2 == 0 else 0.6)
                gain = 1.0 if part.name == "lead_vocal" else 0.35
                tracks[stem] += gain * mixing.pan(mono, position)
            chains[part.name] = {"voice": voice.__dict__, "lines": len(lines)}
            continue
        if use_soundfont:
            events = soundfont.note_events(part.notes)
            program = soundfont.GM_PROGRAMS[part.preset]
            mono = soundfont.render_events(events, length, sample_rate, bank=0, program=program).mean(0)
        else:
            mono = render_part(part.preset, part.notes, length, sample_rate, rng)
        position = 0.0 if part.stem == "bass" else float(rng.uniform(-0.7, 0.7))
        if part.stem != "bass":  # per-instrument EQ on the mono track (half the cost of stereo)
            chain = mixing.random_chain(rng, stem, reverb=False)
            mono = mixing.process(mono[None], chain, sample_rate, dynamics=False)[0]
            chains[part.name] = {"pan": round(position, 3), **chain.to_dict()}
        tracks[stem] += mixing.set_level(mixing.pan(mono, position), float(rng.uniform(-22, -18)))

    levels: dict[str, float] = {}
    for name in stems:
        chain = mixing.random_chain(rng, name)
        tracks[name] = mixing.process(tracks[name], chain, sample_rate)
        level = _STEM_LEVEL_DB[name] + float(rng.uniform(-3, 3))
        tracks[name] = mixing.set_level(tracks[name], level)
        chains[f"stem:{name}"] = chain.to_dict()
        levels[name] = round(level, 3)

    # One gain for all stems (linear, so the mixture stays their sum): peak of the mixture in [0.6, 0.95].
    mixture = sum(tracks[name] for name in stems)
    peak = float(np.max(np.abs(mixture))) if length else 0.0
    target_peak = float(rng.uniform(0.6, 0.95))
    scale = np.float32(target_peak / peak) if peak > 0 else np.float32(1.0)
    fade = min(length, int(0.02 * sample_rate))
    ramp = np.ones(length, np.float32)
    if fade:
        ramp[-fade:] = np.linspace(1, 0, fade, dtype=np.float32)
    for name in stems:
        tracks[name] = np.ascontiguousarray(tracks[name] * scale * ramp, dtype=np.float32)

    metadata = {
        "generator": "stemforge.data.synth",
        "version": 1,
        "backend": backend,
        "soundfont": str(soundfont.find_soundfont()) if backend == "soundfont" else None,
        "split": "evaluation" if evaluation else "train",
        "sample_rate": sample_rate,
        "stems": list(stems),
        "plan": plan.to_dict(),
        "mixing": chains,
        "stem_levels_db": levels,
        "mixture_peak": round(target_peak, 4),
    }
    return tracks, metadata


def render_song(seed: int, seconds: float, sample_rate: int = 44100, stems: Sequence[str] = FOUR_STEMS,
                backend: str = "auto") -> dict[str, np.ndarray]:
    """Render one song -> {stem: (channels=2, time) float32}; the mixture is the sum of the stems."""
    return render_song_with_plan(seed, seconds, sample_rate, stems, backend)[0]


def _write_float_wav(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """32-bit float WAV without libsndfile's PEAK chunk (it holds a timestamp, so bytes would differ)."""
    wavfile.write(path, sample_rate, np.ascontiguousarray(wav.T, dtype=np.float32))


def write_song(folder: Path, stems: dict[str, np.ndarray], sample_rate: int, metadata: dict[str, Any],
               bits: int | str = 16, force: bool = False) -> None:
    """Write ``mixture.wav`` + one wav per stem + ``song.json`` into ``folder`` (MUSDB18 layout).

    With 16-bit output the stems are quantized first and the mixture is the sum of the quantized stems,
    so the files still satisfy mixture == sum(stems) exactly. The song is written into a hidden folder beside
    ``folder`` and renamed into place when complete (``stemforge.audio.staged_folder``): an error or an
    interruption leaves no half-written song (song discovery skips hidden folders), and with ``force`` the old
    song stays until the new one replaces it.

    Args:
        folder: the song's folder; it must not exist unless ``force``.
        stems: name -> (channels, time) float samples.
        sample_rate: in Hz.
        metadata: written as ``song.json``.
        bits: 16 (PCM) or "32f" (float).
        force: replace an existing ``folder``.

    Raises:
        StemforgeError: ``folder`` exists (without ``force``; ``OutputExistsError``), ``bits`` is unknown, the
            16-bit mixture clips, or the song cannot be written (``AudioError``).
    """
    if bits not in (16, "32f"):
        raise StemforgeError(f"bits must be 16 or '32f', got {bits!r}")
    with staged_folder(folder, force=force, noun="song") as staged:
        names = list(stems)
        if bits == 16:
            quantized = {n: np.clip(np.round(stems[n] * 32767.0), -32768, 32767).astype(np.int32) for n in names}
            mixture = sum(quantized[n] for n in names)
            overflow = int(np.max(np.abs(mixture))) if mixture.size else 0
            if overflow > 32767:  # cannot happen with the renderer's peak normalization; guard anyway
                raise StemforgeError(f"mixture of {folder.name} clips in 16 bit (peak {overflow})")
            for n in names:
                sf.write(staged / f"{n}.wav", quantized[n].T.astype(np.int16), sample_rate, subtype="PCM_16")
            sf.write(staged / "mixture.wav", mixture.T.astype(np.int16), sample_rate, subtype="PCM_16")
        elif bits == "32f":
            mixture = np.zeros_like(stems[names[0]])
            for n in names:
                mixture = mixture + stems[n]
                _write_float_wav(staged / f"{n}.wav", stems[n], sample_rate)
            _write_float_wav(staged / "mixture.wav", mixture, sample_rate)
        (staged / "song.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
