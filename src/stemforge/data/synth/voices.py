"""Human voices: recorded diphone speech (Festival, flite) re-pitched and re-timed onto a melody with WORLD.

Each syllable a song sings ("la", "shi", "o", ...) is spoken once per voice by Festival (``festival`` with the
``festvox-*`` diphone voices) or ``flite``, analysed with the WORLD vocoder (``pyworld``: F0, spectral envelope,
aperiodicity) and cached on disk (``$STEMFORGE_CACHE/voices`` or ``~/.cache/stemforge/voices``, one ``.npz`` per
syllable, read with ``allow_pickle=False``). Singing a line then resynthesises the syllables' envelopes with a
new F0 contour (the melody with portamento, delayed vibrato, drift and jitter) and new timing: the onset
consonant keeps its spoken length and lands just before the beat, the vowel is stretched over the note.

Diphone voices are recorded at 16 kHz (Czech ``dita`` at 32 kHz); above their band the envelope is extended with
a gentle roll-off and fully aperiodic excitation (breath and sibilance), so the vocals are full band at 44.1 kHz.
The speech engines are deterministic, so the cache and every render depend only on the seed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from stemforge.errors import StemforgeError

logger = logging.getLogger(__name__)

FRAME_MS = 5.0
#: Bumped when the analysis changes, so old cache entries are not reused.
CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SpeechVoice:
    """A recorded speech voice: engine ("festival" or "flite"), the engine's voice name, language."""

    name: str
    engine: str
    voice: str
    language: str
    package: str


#: Voices by name. Festival's Hindi voice (festvox-hi-nsk) is not listed: its package lacks hindi_phones.scm.
SPEECH_VOICES: dict[str, SpeechVoice] = {
    "kal": SpeechVoice("kal", "festival", "kal_diphone", "en", "festvox-kallpc16k"),
    "lp": SpeechVoice("lp", "festival", "lp_diphone", "it", "festvox-italp16k"),
    "pc": SpeechVoice("pc", "festival", "pc_diphone", "it", "festvox-itapc16k"),
    "dita": SpeechVoice("dita", "festival", "czech_dita", "cs", "festvox-czech-dita"),
    "slt": SpeechVoice("slt", "flite", "slt", "en", "flite"),
    "rms": SpeechVoice("rms", "flite", "rms", "en", "flite"),
    "awb": SpeechVoice("awb", "flite", "awb", "en", "flite"),
    "kal16": SpeechVoice("kal16", "flite", "kal16", "en", "flite"),
}
#: Training songs sing with these voices; the realistic validation split with the others (held out).
TRAIN_VOICES = ("kal", "lp", "slt", "rms", "kal16")
EVALUATION_VOICES = ("pc", "dita", "awb")

_ENGLISH_VOWELS = {"a": "ah", "e": "eh", "i": "ee", "o": "oh", "u": "oo"}


def syllable_text(syllable: str, language: str) -> str:
    """How to spell ``syllable`` (onset consonant + vowel, e.g. "shi") so a voice of ``language`` says it.

    Args:
        syllable: lower-case onset + one of a, e, i, o, u.
        language: "en", "it" or "cs".

    Returns:
        The text handed to the speech engine.
    """
    onset, vowel = (syllable[:-1], syllable[-1]) if syllable and syllable[-1] in "aeiou" else (syllable, "a")
    if language == "en":
        return onset + _ENGLISH_VOWELS[vowel]
    if language == "it":
        onset = {"sh": "sci" if vowel not in "ie" else "sc", "k": "c" if vowel in "aou" else "ch", "y": "i",
                 "w": "u", "h": "", "g": "g" if vowel in "aou" else "gh"}.get(onset, onset)
        return onset + vowel
    onset = {"sh": "s", "y": "j", "w": "v"}.get(onset, onset)  # Czech: plain ASCII spellings
    return onset + vowel


def missing_engines() -> str | None:
    """None when Festival, flite and pyworld are usable here, else why not (one line)."""
    for tool in ("text2wave", "flite"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install festival flite festvox-kallpc16k ...)"
    try:
        _pyworld()
    except ImportError as exc:
        return f"pyworld is not usable ({exc}); pip install 'stemforge[synth]'"
    return None


def voice_available(name: str) -> bool:
    """Whether voice ``name``'s engine and voice data are installed."""
    voice = SPEECH_VOICES[name]
    if voice.engine == "flite":
        return shutil.which("flite") is not None
    if shutil.which("festival") is None:
        return False
    return any(Path("/usr/share/festival/voices").glob(f"*/{voice.voice}/festvox"))


def _pyworld():  # noqa: ANN202 - the module
    with warnings.catch_warnings():  # pyworld imports pkg_resources, which warns
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def cache_dir() -> Path:
    """``$STEMFORGE_CACHE/voices`` if set, else ``~/.cache/stemforge/voices``."""
    env = os.environ.get("STEMFORGE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stemforge"
    return base / "voices"


def _speak(voice: SpeechVoice, texts: list[str], folder: Path) -> list[Path]:
    """Speak each text to ``folder/<i>.wav`` with one engine process per voice (Festival) or per text (flite)."""
    paths = [folder / f"{i}.wav" for i in range(len(texts))]
    try:
        if voice.engine == "festival":
            script = [f"(voice_{voice.voice})"]
            for text, path in zip(texts, paths):
                script.append(f'(set! u (Utterance Text "{text}")) (utt.synth u) (utt.save.wave u "{path}" \'riff)')
            (folder / "speak.scm").write_text("\n".join(script) + "\n")
            subprocess.run(["festival", "-b", str(folder / "speak.scm")], check=True, capture_output=True, timeout=600)
        else:
            for text, path in zip(texts, paths):
                subprocess.run(["flite", "-voice", voice.voice, "-t", text, "-o", str(path)], check=True,
                               capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StemforgeError(f"speech engine {voice.engine} failed for voice {voice.name}: {exc}") from None
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise StemforgeError(f"speech engine {voice.engine} wrote no audio for voice {voice.name} ({missing[0].name})")
    return paths


def _analyse(x: np.ndarray, fs: int) -> dict[str, np.ndarray]:
    """Speech (time,) -> WORLD F0 (frames,), log spectral envelope and aperiodicity (frames, bins) float32."""
    pw = _pyworld()
    x = x.astype(np.float64)
    f0, t = pw.dio(x, fs, frame_period=FRAME_MS, f0_floor=60.0, f0_ceil=500.0)
    f0 = pw.stonemask(x, f0, t, fs)
    sp = pw.cheaptrick(x, f0, t, fs)
    ap = pw.d4c(x, f0, t, fs)
    return {"f0": f0.astype(np.float32), "log_sp": np.log(np.maximum(sp, 1e-16)).astype(np.float32),
            "ap": ap.astype(np.float32), "fs": np.array(fs)}


def _syllable_file(voice: SpeechVoice, syllable: str) -> Path:
    return cache_dir() / f"v{CACHE_VERSION}" / voice.name / f"{syllable}.npz"


def prepare_voice(name: str, syllables: list[str]) -> None:
    """Speak and analyse the syllables of voice ``name`` that the cache lacks (atomically, one file each).

    Args:
        name: a key of ``SPEECH_VOICES``.
        syllables: the syllables a song sings (onset + vowel).
    """
    voice = SPEECH_VOICES[name]
    todo = sorted({s for s in syllables if not _syllable_file(voice, s).is_file()})
    if not todo:
        return
    target = _syllable_file(voice, todo[0]).parent
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        paths = _speak(voice, [syllable_text(s, voice.language) for s in todo], Path(tmp))
        for syllable, path in zip(todo, paths):
            x, fs = sf.read(str(path), dtype="float64")
            if x.ndim > 1:
                x = x.mean(axis=1)
            temp = Path(tmp) / f"{syllable}.npz"
            np.savez(temp, **_analyse(x, fs))
            os.replace(temp, _syllable_file(voice, syllable))


@functools.lru_cache(maxsize=2048)
def _syllable(name: str, syllable: str) -> dict[str, np.ndarray]:
    path = _syllable_file(SPEECH_VOICES[name], syllable)
    if not path.is_file():
        prepare_voice(name, [syllable])
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise StemforgeError(f"voice cache file {path} is unreadable ({exc}); delete it to rebuild") from None


@functools.lru_cache(maxsize=512)
def syllable_at(name: str, syllable: str, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cached syllable resampled onto ``sample_rate``'s WORLD frequency grid, full band.

    Args:
        name: voice name.
        syllable: onset + vowel.
        sample_rate: synthesis rate (44100).

    Returns:
        (f0 (frames,), log envelope (frames, bins), aperiodicity (frames, bins)) as float32, where
        bins = fft_size // 2 + 1 for ``sample_rate``. Above 90 % of the recording's Nyquist frequency the
        envelope falls 9 dB per octave from its level there and the excitation is noise.
    """
    pw = _pyworld()
    data = _syllable(name, syllable)
    fs = int(data["fs"])
    bins = pw.get_cheaptrick_fft_size(sample_rate) // 2 + 1
    src_freqs = np.linspace(0, fs / 2, data["log_sp"].shape[1])
    freqs = np.linspace(0, sample_rate / 2, bins)
    cutoff = 0.9 * fs / 2
    inside = freqs <= cutoff
    log_sp = np.empty((data["log_sp"].shape[0], bins), np.float32)
    ap = np.empty_like(log_sp)
    for i in range(log_sp.shape[0]):
        log_sp[i, inside] = np.interp(freqs[inside], src_freqs, data["log_sp"][i])
        ap[i, inside] = np.interp(freqs[inside], src_freqs, data["ap"][i])
    edge = log_sp[:, inside][:, -4:].mean(axis=1, keepdims=True)
    octaves = np.log2(freqs[~inside] / cutoff)
    log_sp[:, ~inside] = edge - octaves[None, :] * (9.0 * np.log(10) / 20 * 2)
    ap[:, ~inside] = 0.999
    return data["f0"], log_sp, ap


def voiced_span(f0: np.ndarray) -> tuple[int, int]:
    """First and one-past-last voiced frame of a syllable's F0 (the whole syllable when none is voiced)."""
    voiced = np.flatnonzero(f0 > 0)
    if voiced.size == 0:
        return 0, len(f0)
    return int(voiced[0]), int(voiced[-1]) + 1


@dataclasses.dataclass(frozen=True)
class Singer:
    """One singer: which recorded voice, and how it sings.

    ``formant_shift`` scales the envelope along frequency (> 1: shorter vocal tract); ``timing_ms`` is a
    constant lateness (doubles drag or rush a little); ``breathiness`` raises the aperiodicity.
    """

    voice: str
    formant_shift: float = 1.0
    vibrato_rate: float = 5.5
    vibrato_depth: float = 0.3
    breathiness: float = 0.0
    timing_ms: float = 0.0
    detune_cents: float = 0.0

    @staticmethod
    def random(rng: np.random.Generator, voice: str, pitch_low: float) -> "Singer":
        return Singer(voice=voice,
                      formant_shift=float(rng.uniform(0.96, 1.04) * (1.08 if pitch_low >= 55 else 1.0)),
                      vibrato_rate=float(rng.uniform(4.6, 6.2)), vibrato_depth=float(rng.uniform(0.15, 0.45)),
                      breathiness=float(rng.uniform(0.0, 0.25)), timing_ms=0.0, detune_cents=0.0)


def _smooth(x: np.ndarray, frames: float) -> np.ndarray:
    from scipy import signal

    a = float(np.exp(-1.0 / max(frames, 1e-3)))
    y, _ = signal.lfilter([1 - a], [1, -a], x, axis=0, zi=x[:1] * a)
    return y


def sing(notes: list, length: int, sample_rate: int, singer: Singer, rng: np.random.Generator) -> np.ndarray:
    """A monophonic line of notes (start, duration, MIDI pitch, velocity, syllable) -> (length,) float32.

    Args:
        notes: non-overlapping notes with ``syllable`` set (onset consonant + vowel).
        length: output length in samples.
        sample_rate: output rate.
        singer: who sings.
        rng: draws vibrato phase, drift and jitter.

    Returns:
        (length,) mono float32, breaths before phrases included.
    """
    pw = _pyworld()
    prepare_voice(singer.voice, [n.syllable or "a" for n in notes])  # one engine run for the uncached syllables
    fp = FRAME_MS / 1000
    frames = int(length / sample_rate / fp) + 2
    bins = pw.get_cheaptrick_fft_size(sample_rate) // 2 + 1
    log_sp = np.full((frames, bins), -40.0, np.float32)
    ap = np.full((frames, bins), 0.999, np.float32)
    pitch = np.full(frames, np.nan)
    voiced = np.zeros(frames, bool)
    gain_db = np.full(frames, -120.0)
    vib_ramp = np.zeros(frames)
    shift = singer.timing_ms / 1000
    last_end = -10.0
    freqs = np.linspace(0, sample_rate / 2, bins)
    for note in sorted(notes, key=lambda n: n.start):
        f0_s, sp_s, ap_s = syllable_at(singer.voice, note.syllable or "a", sample_rate)
        v0, v1 = voiced_span(f0_s)
        onset = min(v0, int(0.15 / fp))  # consonant frames kept at their spoken length (at most 150 ms)
        start = max(0, int(round((note.start + shift) / fp)))  # a rushed double may not start before the song
        n_vowel = max(1, int(round(note.duration / fp)))
        first = max(0, start - onset)
        if first >= frames:
            continue
        # Index map: consonant frames as spoken, then the vowel (its first 40 ms as spoken, the rest stretched).
        head = min(int(0.04 / fp), v1 - v0)
        body = np.linspace(v0 + head, max(v0 + head, v1 - 1), max(1, n_vowel - head))
        index = np.concatenate([np.arange(v0 - onset, v0), np.arange(v0, v0 + head), body]).astype(int)
        index = np.clip(index, 0, len(f0_s) - 1)
        stop = min(frames, first + len(index))
        index = index[: stop - first]
        log_sp[first:stop] = sp_s[index]
        ap[first:stop] = ap_s[index]
        is_voiced = f0_s[index] > 0
        is_voiced[onset:] = True  # the vowel is sung even where the speech analysis lost the pitch
        voiced[first:stop] = is_voiced
        pitch[first:stop] = note.pitch
        level = 20 * np.log10(max(float(note.velocity), 1e-3))  # the speech keeps its own syllable levels
        gain_db[first:stop] = level
        tail = max(1, min(int(0.06 / fp), stop - first))
        gain_db[stop - tail:stop] += np.linspace(0, -30, tail)  # release
        vib_ramp[start:stop] = np.clip((np.arange(stop - start) * fp - 0.18) / 0.3, 0, 1) if stop > start else 0
        if note.start - last_end > 0.6 and note.start > 0.4:
            _breath(log_sp, ap, gain_db, voiced, first, sp_s[v0:v1], fp, level)
        last_end = note.start + note.duration
    if not np.isfinite(pitch).any():
        return np.zeros(length, np.float32)
    filled = np.where(np.isfinite(pitch), np.arange(frames), 0)
    np.maximum.accumulate(filled, out=filled)
    first_valid = int(np.argmax(np.isfinite(pitch)))
    pitch = pitch[filled]
    pitch[:first_valid] = pitch[first_valid]
    pitch = _smooth(pitch, 0.03 / fp)  # portamento
    t = np.arange(frames) * fp
    vibrato = _smooth(vib_ramp, 0.08 / fp) * singer.vibrato_depth * np.sin(
        2 * np.pi * singer.vibrato_rate * t + rng.uniform(0, 2 * np.pi))
    drift = _smooth(rng.standard_normal(frames), 0.25 / fp) * 0.6 + rng.standard_normal(frames) * 0.03
    f0 = 440.0 * 2 ** ((pitch + vibrato + drift + singer.detune_cents / 100 - 69) / 12)
    f0 = np.where(voiced, f0, 0.0)
    gain = 10 ** (_smooth(gain_db, 0.01 / fp) / 20)
    # Formant shift: a peak at f moves to f * shift (linear interpolation along frequency, same for all frames).
    position = np.clip(freqs / singer.formant_shift, 0, freqs[-1]) / freqs[1]
    lower = np.minimum(position.astype(int), bins - 2)
    weight = (position - lower)[None, :]
    active = gain > 1e-4
    out = np.zeros(length, np.float32)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):  # synthesize each phrase on its own (rests cost nothing)
        a, b = max(0, a - 2), min(frames, b + 2)
        sp = np.exp(log_sp[a:b].astype(np.float64)) * (gain[a:b, None] ** 2)
        sp = sp[:, lower] * (1 - weight) + sp[:, lower + 1] * weight
        aperiodicity = np.clip(ap[a:b].astype(np.float64) + singer.breathiness * (1 - ap[a:b]), 0.0, 0.999)
        y = pw.synthesize(np.ascontiguousarray(f0[a:b]), np.ascontiguousarray(sp),
                          np.ascontiguousarray(aperiodicity), sample_rate, FRAME_MS)
        s0 = int(round(a * fp * sample_rate))
        n = min(len(y), length - s0)
        if n > 0:
            out[s0:s0 + n] += y[:n].astype(np.float32)
    return out


def _breath(log_sp: np.ndarray, ap: np.ndarray, gain_db: np.ndarray, voiced: np.ndarray, before: int,
            vowel: np.ndarray, fp: float, level: float) -> None:
    """An in-breath ending at frame ``before``: the vowel's envelope, unvoiced, 25 dB down, 250 ms."""
    n = int(0.25 / fp)
    a = max(0, before - n - int(0.05 / fp))
    b = max(a, before - int(0.05 / fp))
    if b <= a or len(vowel) == 0:
        return
    envelope = vowel.mean(axis=0)
    log_sp[a:b] = envelope[None, :]
    ap[a:b] = 0.999
    voiced[a:b] = False
    gain_db[a:b] = level - 25 + 20 * np.log10(np.sin(np.linspace(0.05, np.pi - 0.05, b - a)))


def cache_key(name: str) -> str:
    """A short hash naming the voice and analysis version (goes into song metadata)."""
    return hashlib.sha256(f"{name}:{CACHE_VERSION}:{FRAME_MS}".encode()).hexdigest()[:12]
