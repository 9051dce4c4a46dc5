"""Procedural composition: a seed becomes a song plan (key, scale, tempo, meter, chords, sections, parts).

Everything random is drawn from one ``numpy.random.Generator`` in a fixed order, so a seed always gives
the same plan. Times are in seconds; pitches are MIDI note numbers; velocities are in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stemforge.data.synth import drums
from stemforge.data.synth.instruments import BASS_PRESETS, OTHER_PRESETS, preset_pool

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
#: Chord progressions as scale degrees (0-based), one chord per bar; chosen by the scale's mode.
PROGRESSIONS: dict[str, list[list[int]]] = {
    "major": [[0, 4, 5, 3], [0, 3, 4, 3], [5, 3, 0, 4], [0, 5, 3, 4], [1, 4, 0, 0], [0, 3, 0, 4], [3, 0, 4, 5]],
    "minor": [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 6], [0, 3, 6, 2], [0, 5, 3, 4]],
}
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SECTION_FORMS = [
    ["intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"],
    ["intro", "verse", "verse", "chorus", "verse", "chorus", "chorus", "outro"],
    ["verse", "chorus", "verse", "chorus", "bridge", "chorus", "chorus", "outro"],
    ["intro", "chorus", "verse", "chorus", "bridge", "verse", "chorus", "outro"],
]
SYLLABLE_ONSETS = ("", "l", "n", "m", "d", "t", "k", "s", "sh", "h", "b", "w", "r", "v", "f", "g", "y", "p", "z")
VOWELS = ("a", "e", "i", "o", "u")


@dataclasses.dataclass
class Note:
    """One pitched note: onset and length in seconds, MIDI pitch, velocity in [0, 1]."""

    start: float
    duration: float
    pitch: int
    velocity: float
    syllable: str = ""  # vocals only: onset consonant + vowel, e.g. "la", "shi", "o"


@dataclasses.dataclass
class Part:
    """One instrument's notes; ``stem`` is where it is mixed, ``preset`` how it sounds."""

    name: str
    stem: str
    preset: str
    notes: list[Note]


@dataclasses.dataclass
class Section:
    name: str
    start_bar: int
    bars: int


@dataclasses.dataclass
class SongPlan:
    """The full composition of a song; ``to_dict`` is the JSON written next to the audio."""

    seed: int
    seconds: float
    key: int
    scale: str
    tempo: float
    beats_per_bar: int
    progression: list[int]
    sections: list[Section]
    drum_style: str
    drum_hits: list[drums.DrumHit]
    parts: list[Part]

    @property
    def beat(self) -> float:
        return 60.0 / self.tempo

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "seconds": self.seconds,
            "key": NOTE_NAMES[self.key],
            "scale": self.scale,
            "tempo": round(self.tempo, 3),
            "time_signature": f"{self.beats_per_bar}/4",
            "progression_degrees": self.progression,
            "sections": [dataclasses.asdict(s) for s in self.sections],
            "drum_style": self.drum_style,
            "drum_hits": [[round(h.time, 5), h.note, round(h.velocity, 3)] for h in self.drum_hits],
            "parts": [
                {
                    "name": p.name, "stem": p.stem, "preset": p.preset,
                    "notes": [[round(n.start, 5), round(n.duration, 5), n.pitch, round(n.velocity, 3), n.syllable]
                              for n in p.notes],
                }
                for p in self.parts
            ],
        }


def _scale_pitch(key: int, scale: tuple[int, ...], degree: int, octave_base: int) -> int:
    """MIDI pitch of a (possibly negative or >6) scale degree above ``octave_base`` + key."""
    octave, step = divmod(degree, len(scale))
    return octave_base + key + 12 * octave + scale[step]


def _chord(key: int, scale: tuple[int, ...], degree: int, octave_base: int, seventh: bool) -> list[int]:
    """Diatonic triad (or seventh chord) on ``degree``."""
    steps = [0, 2, 4, 6] if seventh else [0, 2, 4]
    return [_scale_pitch(key, scale, degree + s, octave_base) for s in steps]


def _sections(rng: np.random.Generator, total_bars: int) -> list[Section]:
    form = SECTION_FORMS[rng.integers(len(SECTION_FORMS))]
    sections: list[Section] = []
    bar = 0
    index = 0
    while bar < total_bars:
        name = form[index % len(form)]
        bars = 4 if name in ("intro", "outro", "bridge") else int(rng.choice([4, 8]))
        bars = min(bars, total_bars - bar)
        sections.append(Section(name, bar, bars))
        bar += bars
        index += 1
    return sections


def _section_of_bar(sections: list[Section], bar: int) -> Section:
    for section in sections:
        if section.start_bar <= bar < section.start_bar + section.bars:
            return section
    return sections[-1]


#: (seconds per beat, beats per bar, drum style) shared by the part writers.
Meter = tuple[float, int, str]


def _bass_part(rng: np.random.Generator, plan_args: Meter, chords_by_bar: list[list[int]],
               sections: list[Section], preset: str) -> Part:
    """A bass line on the chord roots, in one of several patterns (walking for swing)."""
    beat, beats_per_bar, style = plan_args
    pattern = str(rng.choice(["whole", "eighths", "root_fifth", "syncopated", "walking", "octaves"]))
    if style == "swing":
        pattern = "walking"
    if style == "electronic" and rng.random() < 0.6:
        pattern = "octaves"
    notes: list[Note] = []
    for bar, chord in enumerate(chords_by_bar):
        section = _section_of_bar(sections, bar)
        if section.name == "intro" and rng.random() < 0.5:
            continue
        root = chord[0]
        while root > 40:
            root -= 12
        while root < 28:
            root += 12
        t0 = bar * beats_per_bar * beat
        vel = 0.75 if section.name != "chorus" else 0.9
        if pattern == "whole":
            notes.append(Note(t0, beats_per_bar * beat * 0.95, root, vel))
        elif pattern == "eighths":
            for i in range(beats_per_bar * 2):
                notes.append(Note(t0 + i * beat / 2, beat / 2 * 0.85, root, vel * (1.0 if i % 2 == 0 else 0.8)))
        elif pattern == "root_fifth":
            for i in range(beats_per_bar):
                pitch = root if i % 2 == 0 else root + 7
                notes.append(Note(t0 + i * beat, beat * 0.9, pitch, vel))
        elif pattern == "syncopated":
            for step in (0, 3, 6, 8, 10, 14):  # 16th-note steps; those past the bar's end are dropped
                if step >= beats_per_bar * 4:
                    continue
                pitch = root + int(rng.choice([0, 0, 0, 12, 7, 10 if rng.random() < 0.3 else 0]))
                notes.append(Note(t0 + step * beat / 4, beat / 4 * 1.6, pitch, vel * float(rng.uniform(0.8, 1.0))))
        elif pattern == "walking":
            tones = [root, chord[1] - 12 * ((chord[1] - root) // 12), root + 7, root + 5]
            for i in range(beats_per_bar):
                notes.append(Note(t0 + i * beat, beat * 0.9, int(tones[i % len(tones)]), vel))
        else:  # octaves
            for i in range(beats_per_bar * 2):
                notes.append(Note(t0 + i * beat / 2, beat / 2 * 0.6, root + (12 if i % 2 else 0), vel))
    return Part("bass", "bass", preset, notes)


def _comping_part(rng: np.random.Generator, plan_args: Meter, chords_by_bar: list[list[int]],
                  sections: list[Section], preset: str, stem: str, role: str) -> Part:
    """Chord accompaniment: sustained, strummed, arpeggiated, block or off-beat stabs; some sections rest."""
    beat, beats_per_bar, style = plan_args
    notes: list[Note] = []
    active_sections = {s for s in ("intro", "verse", "chorus", "bridge", "outro") if rng.random() < 0.8} | {"chorus"}
    octave_shift = int(rng.choice([0, 12])) if role in ("arpeggio", "stabs") else 0
    arp_order = rng.permutation(4)
    for bar, chord in enumerate(chords_by_bar):
        section = _section_of_bar(sections, bar)
        if section.name not in active_sections:
            continue
        t0 = bar * beats_per_bar * beat
        vel = float(rng.uniform(0.55, 0.8)) * (1.1 if section.name == "chorus" else 1.0)
        voicing = [p + octave_shift for p in chord]
        if role == "sustain":
            for p in voicing:
                notes.append(Note(t0, beats_per_bar * beat, p, vel * 0.8))
        elif role == "strum":
            strum_steps = [0, 3, 6, 8, 10, 12, 14] if style in ("funk", "pop") else [0, 4, 8, 12]
            for step in strum_steps:
                if step >= beats_per_bar * 4:
                    continue
                down = step % 4 == 0
                order = voicing if down else voicing[::-1]
                for j, p in enumerate(order):
                    notes.append(Note(t0 + step * beat / 4 + j * 0.012, beat / 4 * 1.8, p, vel * (1.0 if down else 0.75)))
        elif role == "arpeggio":
            for i in range(beats_per_bar * 2):
                p = voicing[int(arp_order[i % len(arp_order)]) % len(voicing)]
                notes.append(Note(t0 + i * beat / 2, beat / 2 * 0.95, p, vel))
        elif role == "block":
            for i in range(beats_per_bar):
                for p in voicing:
                    notes.append(Note(t0 + i * beat, beat * 0.9, p, vel * (1.0 if i == 0 else 0.8)))
        else:  # stabs on off-beats
            for i in range(beats_per_bar):
                for p in voicing:
                    notes.append(Note(t0 + (i + 0.5) * beat, beat * 0.3, p, vel))
    return Part(preset, stem, preset, notes)


def _vocal_parts(rng: np.random.Generator, plan_args: Meter, key: int, scale: tuple[int, ...],
                 chords_by_bar: list[list[int]], sections: list[Section]) -> list[Part]:
    """Lead melody (stepwise, chord tones on downbeats, a repeated rhythmic motif, one syllable per note)
    in verses, choruses and bridges, plus sustained backing "ooh/aah" chords in some choruses."""
    beat, beats_per_bar, _ = plan_args
    low = int(rng.choice([50, 55, 57]))  # voice range: male-ish to female-ish
    high = low + 17
    rhythms = [
        [(0, 1), (1, 1), (2, 1), (3, 1)],
        [(0, 0.5), (0.5, 0.5), (1, 1), (2, 0.5), (2.5, 1.5)],
        [(0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 2)],
        [(0, 1.5), (1.5, 0.5), (2, 1), (3, 1)],
        [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 2)],
        [(0, 2), (2, 2)],
    ]
    lead: list[Note] = []
    backing: list[Note] = []
    want_backing = rng.random() < 0.6
    motif = [rhythms[i] for i in rng.integers(len(rhythms), size=4)]
    degree = int(rng.integers(0, 5))
    # Songs repeat themselves: a chorus comes back with its melody and words, a verse with its melody
    # and new words. ``memory`` holds each (section, bar-in-section) line the first time it is written.
    memory: dict[tuple[str, int], list[tuple[float, float, int, float, str]]] = {}
    for bar, chord in enumerate(chords_by_bar):
        section = _section_of_bar(sections, bar)
        if section.name not in ("verse", "chorus", "bridge"):
            continue
        rel = bar - section.start_bar
        t0 = bar * beats_per_bar * beat
        remembered = memory.get((section.name, rel)) if section.name != "bridge" else None
        if remembered is not None:
            for onset, length, pitch, vel, syllable in remembered:
                if section.name == "verse":
                    syllable = str(rng.choice(SYLLABLE_ONSETS)) + str(rng.choice(VOWELS))
                lead.append(Note(t0 + onset * beat, length * beat * 0.92, pitch, vel, syllable))
        elif rel % 4 == 3 and rng.random() < 0.7:  # breathe at the end of a 4-bar phrase
            memory[(section.name, rel)] = []
        else:
            line = []
            rhythm = motif[rel % 4] if section.name != "bridge" else rhythms[int(rng.integers(len(rhythms)))]
            for onset, length in rhythm:
                if onset >= beats_per_bar:
                    continue
                length = min(length, beats_per_bar - onset)
                degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
                pitch = _scale_pitch(key, scale, degree, 60)
                if onset == 0:  # strong beat: snap to nearest chord tone
                    pitch = min((c + 12 * o for c in chord for o in range(-2, 3)), key=lambda c: abs(c - pitch))
                while pitch > high:
                    pitch -= 12
                    degree -= len(scale)
                while pitch < low:
                    pitch += 12
                    degree += len(scale)
                syllable = str(rng.choice(SYLLABLE_ONSETS)) + str(rng.choice(VOWELS))
                vel = float(rng.uniform(0.7, 0.95))
                line.append((onset, length, int(pitch), vel, syllable))
                lead.append(Note(t0 + onset * beat, length * beat * 0.92, int(pitch), vel, syllable))
            memory[(section.name, rel)] = line
        if want_backing and section.name == "chorus":
            vowel = str(rng.choice(["a", "o", "u"]))
            for p in chord[1:3]:
                backing.append(Note(t0, beats_per_bar * beat * 0.95, p + (12 if p < low else 0), 0.5, vowel))
    parts = [Part("lead_vocal", "vocals", "lead_voice", lead)]
    if backing:
        parts.append(Part("backing_vocals", "vocals", "backing_voice", backing))
    return parts


def compose(seed: int, seconds: float, evaluation: bool = False) -> SongPlan:
    """Compose a song of at least ``seconds`` seconds from ``seed``.

    ``evaluation`` draws instruments from the held-out evaluation presets instead of the training ones.
    """
    rng = np.random.default_rng(seed)
    scale_name = str(rng.choice(list(SCALES)))
    scale = SCALES[scale_name]
    key = int(rng.integers(12))
    style = str(rng.choice(drums.STYLES))
    tempo_range = {"rock": (95, 150), "pop": (85, 130), "funk": (90, 118), "electronic": (118, 132),
                   "swing": (100, 170), "half_time": (120, 160)}[style]
    tempo = float(rng.uniform(*tempo_range))
    beats_per_bar = 3 if (style in ("pop", "rock", "swing") and rng.random() < 0.15) else 4
    beat = 60.0 / tempo
    total_bars = int(np.ceil(seconds / (beats_per_bar * beat))) + 1
    mode = "major" if scale_name in ("major", "mixolydian") else "minor"
    progressions = PROGRESSIONS[mode]
    progression = progressions[int(rng.integers(len(progressions)))]
    sevenths = bool(rng.random() < 0.35)
    chords_by_bar = [_chord(key, scale, progression[b % len(progression)], 48, sevenths) for b in range(total_bars)]
    sections = _sections(rng, total_bars)
    plan_args = (beat, beats_per_bar, style)

    drum_hits = drums.groove(rng, style, beat, beats_per_bar, [(s.name, s.start_bar, s.bars) for s in sections])
    parts = [_bass_part(rng, plan_args, chords_by_bar, sections, str(rng.choice(preset_pool(BASS_PRESETS, evaluation))))]
    pool = preset_pool(OTHER_PRESETS, evaluation)
    count = int(rng.integers(2, 4))
    chosen = [pool[i] for i in rng.permutation(len(pool))[:count]]
    for preset in chosen:
        family = OTHER_PRESETS[preset]
        roles = {"piano": ["block", "arpeggio", "sustain"], "guitar": ["strum", "arpeggio", "stabs"],
                 "pad": ["sustain"], "strings": ["sustain"], "organ": ["sustain", "stabs"],
                 "synth": ["arpeggio", "stabs", "sustain"]}[family]
        stem = family if family in ("piano", "guitar") else "other"
        parts.append(_comping_part(rng, plan_args, chords_by_bar, sections, preset, stem, str(rng.choice(roles))))
    parts.extend(_vocal_parts(rng, plan_args, key, scale, chords_by_bar, sections))
    return SongPlan(seed, float(seconds), key, scale_name, tempo, beats_per_bar, progression, sections, style,
                    drum_hits, parts)
