"""Realistic synthetic songs: recorded instruments, recorded drum kits, human voices, genres, a real master.

``render_realistic_song(seed, seconds)`` composes a song in one of seven genres, plays it with sampled
instruments (General MIDI SoundFonts through FluidSynth), a recorded drum kit (Hydrogen kits with velocity
layers, the AVL drum kits, or the SoundFont's kits), sings it with several singers built from recorded speech
(``voices``), humanises timing and velocity, mixes each stem (EQ, compression, reverb, stereo width) and masters
the song (linked bus compression, loudness to a target LUFS, look-ahead limiting) with the gain applied to every
stem, so the mixture stays the exact sum of the stems. Some songs then go through an MP3/AAC round trip (each
stem through the same codec, so the sum still holds).

Training and evaluation songs differ: seeds at or above ``EVALUATION_SEED_BASE`` use the held-out SoundFont
(MuseScore General instead of FluidR3), held-out drum kits, held-out voices, two held-out genres (jazz,
orchestral) and louder masters. Everything is drawn from generators seeded by ``seed``, so a seed gives the
same samples on any machine with the same Debian packages.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stemforge.data.synth import drums, mixing, soundfont
from stemforge.data.synth.composition import (
    SCALES,
    Note,
    Part,
    _bass_part,
    _chord,
    _comping_part,
    _section_of_bar,
    _sections,
    _vocal_parts,
    PROGRESSIONS,
)
from stemforge.data.synth.kits import HydrogenKit, installed_kits
from stemforge.data.synth.master import Master, codec_round_trip, master_stems, stereo_width
from stemforge.data.synth.render import EVALUATION_SEED_BASE, is_evaluation_seed
from stemforge.data.synth.singer import monophonic_lines
from stemforge.data.synth.voices import (
    EVALUATION_VOICES,
    TRAIN_VOICES,
    Singer,
    missing_engines,
    prepare_voice,
    sing,
    voice_available,
)
from stemforge.errors import StemforgeError
from stemforge.stems import FOUR_STEMS, SIX_STEMS

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MUSESCORE = Path("/usr/share/sounds/sf3/MuseScore_General.sf3")
AVL_DIR = Path("/usr/share/sounds/sf2")


@dataclasses.dataclass(frozen=True)
class Genre:
    """How a genre is played: drum pattern, tempo range, GM programs for bass and the other instruments."""

    drum_style: str | None
    tempo: tuple[float, float]
    bass: tuple[int, ...]
    others: tuple[int, ...]
    electronic_drums: bool = False
    drums_probability: float = 1.0
    swing: float = 0.0


GENRES: dict[str, Genre] = {
    "rock": Genre("rock", (95, 150), (33, 34), (29, 30, 27, 0, 16, 18, 28)),
    "pop": Genre("pop", (85, 125), (33, 38, 34), (0, 4, 25, 27, 48, 89, 5, 11, 81)),
    "electronic": Genre("electronic", (118, 132), (38, 39, 87), (81, 80, 89, 90, 88, 4, 11, 99), electronic_drums=True),
    "hip-hop": Genre("funk", (80, 98), (38, 33, 39), (4, 0, 48, 11, 89, 5, 61), electronic_drums=True, swing=0.5),
    "jazz": Genre("swing", (100, 180), (32,), (0, 26, 65, 66, 56, 11, 4)),
    "acoustic": Genre("pop", (70, 120), (32, 33), (24, 25, 0, 40, 42, 73, 21), drums_probability=0.7),
    "orchestral": Genre("half_time", (60, 110), (43, 42, 58), (48, 49, 40, 41, 60, 56, 68, 73, 71, 46),
                        drums_probability=0.4),
}
TRAIN_GENRES = ("rock", "pop", "electronic", "hip-hop", "acoustic")
#: The evaluation split leans on the genres of real test material (rock, pop, electronic) and adds two unseen ones.
EVALUATION_GENRES = ("rock", "pop", "electronic", "jazz", "orchestral", "rock", "pop", "electronic")

TRAIN_KITS = ("ColomboAcousticDrumkit", "Millo_MultiLayered2", "ForzeeStereo", "Audiophob")
TRAIN_ELECTRONIC_KITS = ("ElectricEmpireKit", "HardElectro1")
EVALUATION_KITS = ("BJA_Pacific", "Millo_MultiLayered3", "The Black Pearl 1.0", "Millo-Drums_v.1", "rumpf_kit_z01_h2")
EVALUATION_ELECTRONIC_KITS = ("VariBreaks",)
TRAIN_AVL = ("Red_Zeppelin_4_LV2.sf2",)
EVALUATION_AVL = ("Black_Pearl_4_LV2.sf2",)


def missing_packages(evaluation: bool = False) -> str | None:
    """None when everything a realistic song of this split needs is installed, else why not (one line)."""
    reason = soundfont.available()
    if reason:
        return reason
    font = MUSESCORE if evaluation else FLUID_R3
    if not font.is_file():
        package = "musescore-general-soundfont" if evaluation else "fluid-soundfont-gm"
        return f"{font} is missing (apt-get install {package})"
    if not installed_kits():
        return "no Hydrogen drum kits found (apt-get install hydrogen-drumkits)"
    reason = missing_engines()
    if reason:
        return reason
    voices = EVALUATION_VOICES if evaluation else TRAIN_VOICES
    if not any(voice_available(v) for v in voices):
        return f"none of the voices {', '.join(voices)} is installed (apt-get install festival flite festvox-*)"
    return None


def _harmony(notes: list[Note], key: int, scale: tuple[int, ...], steps: int) -> list[Note]:
    """Each note moved ``steps`` scale steps up (a diatonic third for 2), same timing and syllables."""
    out = []
    for n in notes:
        rel = (n.pitch - key) % 12
        degree = min(range(len(scale)), key=lambda d: abs(scale[d] - rel))
        octave, step = divmod(degree + steps, len(scale))
        pitch = n.pitch - rel + scale[degree] + 12 * octave + scale[step] - scale[degree]
        out.append(Note(n.start, n.duration, int(pitch), n.velocity, n.syllable))
    return out


def _humanise(notes: list[Note], rng: np.random.Generator, feel_s: float, jitter_s: float, velocity_sd: float,
              beat: float) -> list[Note]:
    """Player timing (a constant feel plus per-note jitter) and velocity (downbeat accents, random spread)."""
    out = []
    for n in notes:
        accent = 1.08 if abs((n.start / beat) - round(n.start / beat)) < 0.05 and round(n.start / beat) % 2 == 0 else 1.0
        start = max(0.0, n.start + feel_s + float(rng.normal(0, jitter_s)))
        velocity = float(np.clip(n.velocity * accent * (1 + rng.normal(0, velocity_sd)), 0.05, 1.0))
        out.append(Note(start, max(0.03, n.duration * float(rng.uniform(0.9, 1.05))), n.pitch, velocity, n.syllable))
    return out


def _stem_of(program: int, stems: Sequence[str]) -> str:
    if "piano" in stems and program <= 7:
        return "piano"
    if "guitar" in stems and 24 <= program <= 31:
        return "guitar"
    return "other"


def _roles(program: int) -> list[str]:
    if program <= 7:
        return ["block", "arpeggio", "sustain"]
    if program <= 15:
        return ["arpeggio", "block"]
    if program <= 23:
        return ["sustain", "stabs"]
    if program <= 31:
        return ["strum", "arpeggio", "stabs"]
    if 40 <= program <= 55 or 88 <= program <= 103:
        return ["sustain"]
    if 56 <= program <= 63:
        return ["stabs", "sustain"]
    if 64 <= program <= 79:
        return ["sustain", "arpeggio"]
    return ["arpeggio", "stabs", "sustain"]


@dataclasses.dataclass
class RealisticPlan:
    """The composition of a realistic song (``to_dict`` goes into song.json)."""

    seed: int
    genre: str
    key: int
    scale: str
    tempo: float
    beats_per_bar: int
    drum_hits: list[drums.DrumHit]
    parts: list[Part]
    programs: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "genre": self.genre, "key": self.key, "scale": self.scale,
                "tempo": round(self.tempo, 3), "time_signature": f"{self.beats_per_bar}/4",
                "drum_hits": len(self.drum_hits), "programs": self.programs,
                "parts": {p.name: len(p.notes) for p in self.parts}}


def compose_realistic(seed: int, seconds: float) -> RealisticPlan:
    """A song plan in one genre (drawn from the split's genres), humanised.

    Args:
        seed: the song's seed; >= ``EVALUATION_SEED_BASE`` draws from the held-out genres and instruments.
        seconds: length in seconds.

    Returns:
        The plan: drum hits, bass, 2-3 other instruments (GM programs), lead and backing vocal parts.
    """
    evaluation = is_evaluation_seed(seed)
    rng = np.random.default_rng([seed, 12])
    genre_name = str(rng.choice(EVALUATION_GENRES if evaluation else TRAIN_GENRES))
    genre = GENRES[genre_name]
    scale_name = str(rng.choice(list(SCALES)))
    scale = SCALES[scale_name]
    key = int(rng.integers(12))
    tempo = float(rng.uniform(*genre.tempo))
    style = genre.drum_style or "pop"
    beats_per_bar = 3 if (genre_name in ("jazz", "acoustic", "orchestral") and rng.random() < 0.2) else 4
    beat = 60.0 / tempo
    total_bars = int(np.ceil(seconds / (beats_per_bar * beat))) + 1
    mode = "major" if scale_name in ("major", "mixolydian") else "minor"
    progression = PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
    sevenths = bool(rng.random() < (0.8 if genre_name == "jazz" else 0.3))
    chords_by_bar = [_chord(key, scale, progression[b % len(progression)], 48, sevenths) for b in range(total_bars)]
    sections = _sections(rng, total_bars)
    plan_args = (beat, beats_per_bar, style)
    hits: list[drums.DrumHit] = []
    if rng.random() < genre.drums_probability:
        hits = drums.groove(rng, style, beat, beats_per_bar, [(s.name, s.start_bar, s.bars) for s in sections])
        feel = float(rng.normal(0, 0.004))
        hits = [drums.DrumHit(max(0.0, h.time + feel + float(rng.normal(0, 0.005))), h.note,
                              float(np.clip(h.velocity * (1 + rng.normal(0, 0.1)), 0.05, 1.0))) for h in hits]
    bass_program = int(rng.choice(genre.bass))
    parts = [_bass_part(rng, plan_args, chords_by_bar, sections, f"gm{bass_program}")]
    programs = {"bass": bass_program}
    count = int(rng.integers(2, 4))
    for program in rng.permutation(np.array(genre.others))[:count]:
        program = int(program)
        part = _comping_part(rng, plan_args, chords_by_bar, sections, f"gm{program}", "other", str(rng.choice(_roles(program))))
        part.name = f"gm{program}"
        programs[part.name] = program
        parts.append(part)
    vocal = _vocal_parts(rng, plan_args, key, scale, chords_by_bar, sections)
    lead = vocal[0]
    if rng.random() < 0.5:  # harmony a third above in the choruses
        chorus = [n for n in lead.notes if _section_of_bar(sections, int(n.start / (beats_per_bar * beat))).name == "chorus"]
        if chorus:
            vocal.append(Part("harmony_vocal", "vocals", "harmony", _harmony(chorus, key, scale, 2)))
    if rng.random() < 0.5:
        vocal.append(Part("double_vocal", "vocals", "double", [Note(n.start, n.duration, n.pitch, n.velocity, n.syllable)
                                                                for n in lead.notes]))
    for part in parts + vocal:
        feel = float(rng.normal(0, 0.006))
        part.notes = _humanise(part.notes, rng, feel, 0.006 if part.stem != "vocals" else 0.012, 0.08, beat)
    return RealisticPlan(seed, genre_name, key, scale_name, tempo, beats_per_bar, hits, parts + vocal, programs)


@functools.lru_cache(maxsize=32)
def _kit(name: str, sample_rate: int) -> HydrogenKit:
    return HydrogenKit(name, sample_rate)


def _render_drums(plan: RealisticPlan, rng: np.random.Generator, length: int, sample_rate: int,
                  evaluation: bool) -> tuple[np.ndarray, dict[str, Any]]:
    genre = GENRES[plan.genre]
    installed = set(installed_kits())
    if genre.electronic_drums:
        hydrogen = [k for k in (EVALUATION_ELECTRONIC_KITS if evaluation else TRAIN_ELECTRONIC_KITS) if k in installed]
    else:
        hydrogen = [k for k in (EVALUATION_KITS if evaluation else TRAIN_KITS) if k in installed]
    avl = [AVL_DIR / k for k in (EVALUATION_AVL if evaluation else TRAIN_AVL) if (AVL_DIR / k).is_file()]
    font = MUSESCORE if evaluation else FLUID_R3
    choice = rng.random()
    if hydrogen and (choice < 0.6 or (genre.electronic_drums and choice < 0.8)):
        name = str(rng.choice(hydrogen))
        return _kit(name, sample_rate).render(plan.drum_hits, length), {"hydrogen_kit": name}
    events = [(h.time, h.note, int(np.clip(round(h.velocity * 127), 1, 127))) for h in plan.drum_hits]
    events += [(h.time + 0.8, h.note, 0) for h in plan.drum_hits]
    if avl and not genre.electronic_drums and choice < 0.8:
        path = avl[int(rng.integers(len(avl)))]
        return (soundfont.render_events(events, length, sample_rate, bank=0, program=0, path=path),
                {"avl_kit": path.name})
    style = "electronic" if genre.electronic_drums else ("swing" if plan.genre == "jazz" else plan.genre)
    program = soundfont.drum_kit_program(style if style in soundfont.DRUM_KITS else "pop", font)
    if plan.genre == "orchestral":
        program = 48 if (128, 48) in soundfont._preset_names(font) else program
    return (soundfont.render_events(events, length, sample_rate, bank=128, program=program, channel=9, path=font),
            {"soundfont_kit": f"{font.name}:{program}"})


def _draw_master(rng: np.random.Generator, evaluation: bool) -> Master:
    if evaluation:  # louder, harder-hitting masters than any training song
        return Master(target_lufs=float(rng.uniform(-11, -8)), bus_threshold_db=float(rng.uniform(-22, -14)),
                      bus_ratio=float(rng.uniform(2, 4)), bus_attack_ms=float(rng.uniform(3, 15)),
                      bus_release_ms=float(rng.uniform(60, 200)), ceiling_db=-0.3,
                      limiter_release_ms=float(rng.uniform(20, 80)))
    return Master(target_lufs=float(rng.uniform(-14, -9)), bus_threshold_db=float(rng.uniform(-20, -12)),
                  bus_ratio=float(rng.uniform(1.5, 3)), bus_attack_ms=float(rng.uniform(5, 30)),
                  bus_release_ms=float(rng.uniform(80, 300)), ceiling_db=-1.0,
                  limiter_release_ms=float(rng.uniform(40, 150)))


def render_realistic_song(seed: int, seconds: float, sample_rate: int = 44100, stems: Sequence[str] = FOUR_STEMS,
                          codec_probability: float | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Render one realistic song -> ({stem: (2, time) float32}, metadata); the mixture is the sum of the stems.

    Args:
        seed: the song's seed (>= ``EVALUATION_SEED_BASE``: the held-out evaluation split).
        seconds: length in seconds.
        sample_rate: output rate.
        stems: drums, bass, other, vocals, optionally guitar and piano.
        codec_probability: chance of an MP3/AAC round trip (default 0.25 for training songs, 0 for evaluation).

    Returns:
        The stems and a JSON-able record of every choice (genre, instruments, kit, voices, master, codec).
    """
    stems = tuple(stems)
    if set(FOUR_STEMS) - set(stems) or set(stems) - set(SIX_STEMS):
        raise StemforgeError(f"stems must include {list(FOUR_STEMS)} and may add guitar/piano; got {list(stems)}")
    if seconds <= 0:
        raise StemforgeError(f"song length must be positive, got {seconds} s")
    if seed < 0:
        raise StemforgeError(f"seed must be >= 0, got {seed}")
    evaluation = is_evaluation_seed(seed)
    reason = missing_packages(evaluation)
    if reason:
        raise StemforgeError(f"realistic songs need packages that are missing: {reason}")
    plan = compose_realistic(seed, seconds)
    length = int(round(seconds * sample_rate))
    rng = np.random.default_rng([seed, 13])
    tracks = {name: np.zeros((2, length), np.float32) for name in stems}
    record: dict[str, Any] = {}
    font = MUSESCORE if evaluation else FLUID_R3

    if plan.drum_hits:
        kit_audio, record["drums"] = _render_drums(plan, rng, length, sample_rate, evaluation)
        tracks["drums"] += mixing.set_level(kit_audio, -18.0)

    voices = [v for v in (EVALUATION_VOICES if evaluation else TRAIN_VOICES) if voice_available(v)]
    lead_voice = str(rng.choice(voices))
    other_voice = str(rng.choice(voices))
    sung = sorted({n.syllable or "a" for p in plan.parts if p.stem == "vocals" for n in p.notes})
    for voice in sorted({lead_voice, other_voice}):
        prepare_voice(voice, sung)  # one speech-engine run for all syllables the cache lacks
    vocal_gain = {"lead_vocal": 0.0, "double_vocal": -7.0, "harmony_vocal": -6.0, "backing_vocals": -10.0}
    for part in plan.parts:
        if not part.notes:
            continue
        if part.stem == "vocals":
            pitches = [n.pitch for n in part.notes]
            voice = lead_voice if part.name in ("lead_vocal", "double_vocal") or rng.random() < 0.5 else other_voice
            base = Singer.random(rng, voice, float(min(pitches)))
            if part.name == "double_vocal":
                base = dataclasses.replace(base, timing_ms=float(rng.uniform(-20, 20)),
                                           detune_cents=float(rng.uniform(-10, 10)), formant_shift=base.formant_shift * 1.02)
            lines = monophonic_lines(part.notes)
            for i, line in enumerate(lines):
                mono = sing(line, length, sample_rate, base, rng)
                position = 0.0 if part.name == "lead_vocal" else float(rng.uniform(0.3, 0.8)) * (-1 if i % 2 == 0 else 1)
                level = -18.0 + vocal_gain.get(part.name, -8.0)
                tracks["vocals"] += mixing.set_level(mixing.pan(mono, position), level)
            record[part.name] = {"voice": voice, "singer": dataclasses.asdict(base), "lines": len(lines)}
            continue
        program = plan.programs.get(part.name, 0)
        events = soundfont.note_events(part.notes)
        audio = soundfont.render_events(events, length, sample_rate, bank=0, program=program, path=font)
        stem = "bass" if part.stem == "bass" else _stem_of(program, stems)
        if stem != "bass":
            chain = mixing.random_chain(rng, stem, reverb=False)
            audio = mixing.process(audio, chain, sample_rate, dynamics=False)
            balance = float(rng.uniform(-0.6, 0.6))
            audio = audio * np.array([[np.cos((balance + 1) * np.pi / 4) * np.sqrt(2)],
                                      [np.sin((balance + 1) * np.pi / 4) * np.sqrt(2)]], np.float32)
        else:
            audio = np.repeat(audio.mean(0, keepdims=True), 2, axis=0)  # bass sits in the middle
        tracks[stem] += mixing.set_level(audio, float(rng.uniform(-22, -18)))
        record[part.name] = {"program": program, "stem": stem}

    levels = {"drums": -16.0, "bass": -18.0, "other": -19.0, "vocals": -16.0, "guitar": -20.0, "piano": -20.0}
    for name in stems:
        chain = mixing.random_chain(rng, name)
        tracks[name] = mixing.process(tracks[name], chain, sample_rate)
        width = {"bass": 0.0, "vocals": float(rng.uniform(0.6, 1.2))}.get(name, float(rng.uniform(0.8, 1.5)))
        tracks[name] = stereo_width(tracks[name], width)
        tracks[name] = mixing.set_level(tracks[name], levels[name] + float(rng.uniform(-3, 3)))
        record[f"stem:{name}"] = {**chain.to_dict(), "width": round(width, 3)}

    settings = _draw_master(rng, evaluation)
    tracks, master_report = master_stems(tracks, sample_rate, settings)
    codec = None
    probability = (0.0 if evaluation else 0.25) if codec_probability is None else codec_probability
    if rng.random() < probability:
        codec = {"codec": str(rng.choice(["mp3", "aac"])), "bitrate": int(rng.choice([96000, 128000, 192000]))}
        tracks = {n: codec_round_trip(t, sample_rate, codec["codec"], codec["bitrate"]) if np.any(t) else t
                  for n, t in tracks.items()}
        peak = float(np.max(np.abs(sum(tracks.values()))))
        if peak > 0.99:  # decoded audio may overshoot the limiter's ceiling a little
            tracks = {n: t * np.float32(0.99 / peak) for n, t in tracks.items()}
    fade = min(length, int(0.02 * sample_rate))
    if fade:
        ramp = np.ones(length, np.float32)
        ramp[-fade:] = np.linspace(1, 0, fade, dtype=np.float32)
        tracks = {n: np.ascontiguousarray(t * ramp, dtype=np.float32) for n, t in tracks.items()}
    metadata = {
        "generator": "stemforge.data.synth.realistic",
        "version": 1,
        "split": "evaluation" if evaluation else "train",
        "sample_rate": sample_rate,
        "stems": list(stems),
        "soundfont": font.name,
        "plan": plan.to_dict(),
        "rendering": record,
        "master": {**dataclasses.asdict(settings), **master_report},
        "codec": codec,
    }
    return tracks, metadata


__all__ = ["EVALUATION_SEED_BASE", "GENRES", "compose_realistic", "missing_packages", "render_realistic_song"]
