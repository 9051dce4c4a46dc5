"""Fuzzing ``stemforge separate`` with damaged files: every one ends in stems or a one-line error, never a
traceback or a hang.

220 files are made in the test from one short clip, as wav (16-bit and float), flac, mp3 and .stem.mp4, each
damaged in a seeded way (bit flips in the header or the body, truncation, bogus header and format fields,
zeroed ranges, appended junk, spliced bytes). Each goes through ``stemforge.cli.main`` in-process under a time limit; a handful
also go through a real ``python -m stemforge`` process.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import stemforge
from data_fixtures import write_stem_mp4
from stemforge import audio
from stemforge.cli import main
from toy_song import toy_mix

SR = 44100
PER_FILE_SECONDS = 20
MUTATIONS_PER_FORMAT = 44  # x 5 formats = 220 files
# The default network on short segments; two stems, hard-limited, to spend the time on decoding, not on writing.
MODEL = ["-n", "default", "--segment", "0.5", "--two-stems", "vocals", "--clip-mode", "clamp", "--threads", "1", "-q"]


def base_files(folder: Path) -> dict[str, bytes]:
    """The undamaged clip (0.2 s, stereo) in every container we fuzz."""
    mix = toy_mix(0.2)
    paths = {
        "wav": audio.save(folder / "clip.wav", mix, SR, bits=16),
        "f32.wav": audio.save(folder / "clip.f32.wav", mix, SR, bits="32f"),
        "flac": audio.save(folder / "clip.flac", mix, SR, bits=16),
        "mp3": audio.save(folder / "clip.mp3", mix, SR, mp3_bitrate=64),
    }
    stems = [np.ascontiguousarray(mix.T)] + [np.ascontiguousarray(mix.T) / 4] * 4
    write_stem_mp4(folder / "clip.stem.mp4", stems)
    paths["stem.mp4"] = folder / "clip.stem.mp4"
    return {kind: path.read_bytes() for kind, path in paths.items()}


def mutate(data: bytes, rng: np.random.Generator, kind: int, fmt: str) -> bytes:
    """One seeded kind of damage."""
    buf = bytearray(data)
    n = len(buf)
    if kind == 0:  # a few bit flips anywhere
        for pos in rng.integers(0, n, rng.integers(1, 8)):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # bit flips in the header
        for pos in rng.integers(0, min(n, 128), rng.integers(1, 6)):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 2:  # truncated anywhere (header included)
        del buf[int(rng.integers(1, n)):]
    elif kind == 3:  # bogus 32-bit header fields: sizes, rates, counts set to extremes
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, max(1, min(n, 96) - 4)))
            buf[pos:pos + 4] = struct.pack("<I", int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(0, 2**32))])))
    elif kind == 4:  # a range of zeros or random bytes
        start = int(rng.integers(0, n))
        length = int(rng.integers(1, max(2, n // 4)))
        fill = bytes(length) if rng.random() < 0.5 else rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        buf[start:start + length] = fill
    elif kind == 5:  # junk appended
        buf += rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    elif kind == 6:  # a slice of the file duplicated or removed in the middle
        a, b = sorted(int(x) for x in rng.integers(0, n, 2))
        buf = buf[:a] + buf[a:b] + buf[a:] if rng.random() < 0.5 else buf[:a] + buf[b:]
    elif kind == 7:  # many bit flips: mostly noise
        for pos in rng.integers(0, n, rng.integers(20, 200)):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    else:  # format fields (WAV channels, rate, byte rate, block align, bits; FLAC STREAMINFO) set to extremes
        pos = int(rng.choice(FORMAT_FIELDS.get(fmt, list(range(0, 64, 2)))))
        buf[pos:pos + 2] = struct.pack("<H", int(rng.choice([0, 1, 3, 0xFF, 0xFFFF, int(rng.integers(0, 2**16))])))
    return bytes(buf)


#: Byte offsets of the fields that describe the audio: WAV fmt chunk; FLAC STREAMINFO rate/channels/bits/length.
FORMAT_FIELDS = {"wav": [22, 24, 26, 28, 30, 32, 34, 40, 42], "f32.wav": [22, 24, 26, 28, 30, 32, 34],
                 "flac": [8, 12, 16, 18, 19, 20, 21, 22, 24]}


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    files = []
    for k, (kind, data) in enumerate(base_files(folder).items()):
        for i in range(MUTATIONS_PER_FORMAT):
            rng = np.random.default_rng(1000 * k + i)
            path = folder / f"m{i:02d}.{kind}"
            path.write_bytes(mutate(data, rng, i % 9, kind))
            files.append(path)
    return files


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def check_run(code: int, stderr: str, path: Path, out: Path) -> str:
    """Either stems or exactly one error line for the file (plus the summary); returns "ok" or "error"."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, f"{path}: {stderr}"
    # Nothing else on stderr (fd 2, so C libraries' chatter counts): the error, the summary, one-line warnings.
    # One-line warnings name the file: "warning: FILE: ..." (the CLI's logging) or "FILE: ..." (before it is set up).
    stray = [line for line in lines if not line.startswith(("error: ", f"warning: {path}: ", f"{path}: "))
             and line != "1 of 1 inputs failed"]
    assert stray == [], f"{path}: unexpected output on stderr: {stray}"
    hidden = [p for p in out.rglob("*") if p.name.startswith(".")] if out.exists() else []
    assert hidden == [], f"{path}: temporary files left: {hidden}"
    written = sorted(out.rglob("*.wav")) if out.exists() else []
    if code == 0:
        assert len(written) == 2 and not [line for line in lines if line.startswith("error")], f"{path}: {stderr}"
        return "ok"
    assert code == 1, f"{path}: exit {code}: {stderr}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == "1 of 1 inputs failed", f"{path}: {stderr}"
    assert str(path) in errors[0], f"{path}: the error does not name the file: {errors[0]}"
    assert written == [], f"{path}: failed but left {written}"
    return "error"


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy overflow noise on stderr would be a bug too
def test_damaged_files_give_stems_or_one_line_errors(fuzz_files: list[Path], tmp_path: Path,
                                                    capfd: pytest.CaptureFixture) -> None:
    assert len(fuzz_files) >= 200
    outcomes: dict[str, int] = {}
    previous = signal.signal(signal.SIGALRM, _alarm)
    threads = torch.get_num_threads()  # --threads 1 sets it for the whole process
    try:
        for i, path in enumerate(fuzz_files):
            out = tmp_path / f"out{i}"
            signal.setitimer(signal.ITIMER_REAL, PER_FILE_SECONDS)
            try:
                code = main(["separate", str(path), "-o", str(out), *MODEL])
            except Hang:
                pytest.fail(f"{path}: still running after {PER_FILE_SECONDS} s")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            stderr = capfd.readouterr().err
            outcome = check_run(code, stderr, path, out)
            kind = path.name.split(".", 1)[1]
            outcomes[f"{kind} {outcome}"] = outcomes.get(f"{kind} {outcome}", 0) + 1
    finally:
        signal.signal(signal.SIGALRM, previous)
        torch.set_num_threads(threads)
    print(outcomes)
    # The damage must be varied enough to produce both outcomes.
    assert sum(v for k, v in outcomes.items() if k.endswith("ok")) > 10, outcomes
    assert sum(v for k, v in outcomes.items() if k.endswith("error")) > 10, outcomes


def test_damaged_files_through_a_real_process(fuzz_files: list[Path], tmp_path: Path) -> None:
    chosen = fuzz_files[3::MUTATIONS_PER_FORMAT]  # one per format: each process costs seconds of start-up
    env = {**os.environ, "PYTHONPATH": str(Path(stemforge.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    for i, path in enumerate(chosen):
        out = tmp_path / f"out{i}"
        result = subprocess.run([sys.executable, "-m", "stemforge", "separate", str(path), "-o", str(out), *MODEL],
                                capture_output=True, text=True, env=env, timeout=120)
        check_run(result.returncode, result.stderr, path, out)  # warnings (e.g. truncation) name the file
