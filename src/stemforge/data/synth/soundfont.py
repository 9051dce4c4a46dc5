"""General MIDI SoundFont rendering through FluidSynth (``pyfluidsynth`` + the ``libfluidsynth3`` library).

The SoundFont comes from a Debian package (``timgm6mb-soundfont``, ``fluid-soundfont-gm`` or
``musescore-general-soundfont*``) or from ``$STEMFORGE_SOUNDFONT``. Rendering is offline and
sample-accurate: events are applied between blocks written with ``fluid_synth_write_float`` (no dither,
FluidSynth's own reverb and chorus off), so the output is deterministic. When FluidSynth or a
SoundFont is missing, ``available()`` says why and the renderer falls back to numpy synthesis.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Iterable

import numpy as np

#: Searched in order after $STEMFORGE_SOUNDFONT.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
)
INSTALL_HINT = "apt-get install -y libfluidsynth3 timgm6mb-soundfont && pip install 'stemforge[synth]'"

#: stemforge preset -> General MIDI program (0-based).
GM_PROGRAMS = {
    "finger_bass": 33, "pick_bass": 34, "synth_bass": 38, "sub_bass": 39, "fm_bass": 35,
    "grand_piano": 0, "bright_piano": 1, "electric_piano": 4, "upright_piano": 3,
    "clean_guitar": 27, "acoustic_guitar": 25, "overdrive_guitar": 29, "muted_guitar": 28,
    "warm_pad": 89, "bright_pad": 90, "string_section": 48, "chamber_strings": 49,
    "drawbar_organ": 16, "jazz_organ": 17, "saw_lead": 81, "square_pluck": 80, "bell_synth": 11,
}
#: drum style -> GM drum-kit programs (bank 128) to try in order.
DRUM_KITS = {"rock": (16, 8, 0), "pop": (0,), "funk": (8, 0), "electronic": (25, 24, 0), "swing": (40, 32, 0),
             "half_time": (16, 8, 0)}


def find_soundfont() -> Path | None:
    """The SoundFont to use: ``$STEMFORGE_SOUNDFONT`` if set, else the first packaged one found."""
    override = os.environ.get("STEMFORGE_SOUNDFONT")
    if override:
        return Path(override) if Path(override).is_file() else None
    for candidate in SOUNDFONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when SoundFont rendering works here, else the reason it does not (one line)."""
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError) as exc:  # pyfluidsynth raises ImportError when libfluidsynth is absent
        return f"FluidSynth is not usable ({exc}); install with: {INSTALL_HINT}"
    if find_soundfont() is None:
        return f"no General MIDI SoundFont found (looked in $STEMFORGE_SOUNDFONT, {', '.join(SOUNDFONT_PATHS)}); " \
               f"install with: {INSTALL_HINT}"
    return None


class SoundFontSynth:
    """One FluidSynth instance with a loaded SoundFont.

    Use a fresh instance for every ``render`` (``render_events`` does): FluidSynth keeps state between
    calls (the position inside its 64-sample block, voice history) that ``system_reset`` does not clear,
    so reusing an instance would make the output depend on what was rendered before.
    """

    def __init__(self, path: Path, sample_rate: int, dynamic: bool = False) -> None:
        import fluidsynth

        self.path = path
        self.sample_rate = sample_rate
        self._fs = fluidsynth.Synth(samplerate=float(sample_rate), gain=0.4)
        if dynamic:  # load only the samples the selected preset plays: 0.03 s instead of 15 s for an .sf3
            self._fs.setting("synth.dynamic-sample-loading", 1)
        self._fs.setting("synth.reverb.active", 0)
        self._fs.setting("synth.chorus.active", 0)
        self._fs.setting("synth.polyphony", 256)
        self._sfid = self._fs.sfload(str(path))
        interp = fluidsynth._fl.fluid_synth_set_interp_method
        interp.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        interp(self._fs.synth, -1, 1)  # linear interpolation on all channels: ~2x faster, inaudible here
        if self._sfid < 0:
            raise OSError(f"FluidSynth cannot load {path}")
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._write.restype = ctypes.c_int

    def render(self, events: Iterable[tuple[float, int, int]], length: int, bank: int, program: int,
               channel: int = 0) -> np.ndarray:
        """events (time s, key, velocity 0..127; velocity 0 = note off) -> (2, length) float32."""
        fs = self._fs
        fs.program_select(channel, self._sfid, bank, program)
        out = np.zeros((length, 2), np.float32)
        position = 0
        for time, key, velocity in sorted(events, key=lambda e: (e[0], e[2] != 0)):
            target = min(length, max(position, int(round(time * self.sample_rate))))
            self._generate(out, position, target)
            position = target
            if position >= length:
                break
            if velocity > 0:
                fs.noteon(channel, int(key), int(velocity))
            else:
                fs.noteoff(channel, int(key))
        self._generate(out, position, length)
        return np.ascontiguousarray(out.T)

    def close(self) -> None:
        self._fs.delete()

    def _generate(self, out: np.ndarray, start: int, stop: int) -> None:
        if stop <= start:
            return
        view = out[start:stop]
        pointer = view.ctypes.data
        self._write(self._fs.synth, stop - start, pointer, 0, 2, pointer + 4, 0, 2)


def render_events(events: Iterable[tuple[float, int, int]], length: int, sample_rate: int, bank: int, program: int,
                  channel: int = 0, path: Path | None = None) -> np.ndarray:
    """Render events with a fresh synth (deterministic): -> (2, length) float32.

    ``path`` picks a SoundFont (loaded lazily, only the preset's samples); default: ``find_soundfont()``.
    """
    dynamic = path is not None
    path = path or find_soundfont()
    if path is None:
        raise OSError(available() or "no SoundFont")
    synth = SoundFontSynth(path, sample_rate, dynamic=dynamic)
    try:
        return synth.render(events, length, bank, program, channel)
    finally:
        synth.close()


@functools.lru_cache(maxsize=8)
def _preset_names(path: Path | None = None) -> dict[tuple[int, int], str]:
    """(bank, program) -> preset name for the GM banks of ``path`` (default: the installed SoundFont)."""
    synth = SoundFontSynth(path or find_soundfont(), 44100, dynamic=path is not None)  # type: ignore[arg-type]
    try:
        names = {}
        for bank in (0, 128):
            for program in range(128):
                name = synth._fs.sfpreset_name(synth._sfid, bank, program)
                if name:
                    names[(bank, program)] = name
        return names
    finally:
        synth.close()


def note_events(notes: Iterable, velocity_scale: float = 127.0) -> list[tuple[float, int, int]]:
    """Notes (start, duration, pitch, velocity in [0, 1]) -> note-on/off events."""
    events = []
    for note in notes:
        velocity = int(np.clip(round(note.velocity * velocity_scale), 1, 127))
        events.append((note.start, note.pitch, velocity))
        events.append((note.start + note.duration, note.pitch, 0))
    return events


def drum_kit_program(style: str, path: Path | None = None) -> int:
    """The first GM drum kit for ``style`` that the SoundFont has (0, the standard kit, otherwise)."""
    names = _preset_names(path)
    for program in DRUM_KITS.get(style, (0,)):
        if (128, program) in names:
            return program
    return 0
