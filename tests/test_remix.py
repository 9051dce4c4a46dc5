"""``stemforge remix``: gains and pans, loudness matching (EBU R128), the true-peak ceiling, bad stem folders."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from stemforge import audio
from stemforge.cli import main
from stemforge.errors import StemforgeError
from stemforge.remix import loudness, pan_gains, parse_levels, remix, true_peak, true_peak_limit
from stemforge.separate import OutputOptions, Separator
from toy_song import toy_mix, toy_stems

SR = 44100
STEMS = ("drums", "bass", "other", "vocals")


def lufs(x: np.ndarray, rate: int = SR) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(x.T.astype(np.float64))


def ffmpeg_r128(path: Path) -> tuple[float, float]:
    """(integrated loudness LUFS, true peak dBTP) of a file by FFmpeg's own ebur128 meter (true peak 4x)."""
    result = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af",
                             "ebur128=peak=true:metadata=1,ametadata=mode=print", "-f", "null", "-"],
                            capture_output=True, text=True, check=True)
    peaks = [float(v) for v in re.findall(r"lavfi\.r128\.true_peaks_ch\d+=([0-9.]+)", result.stderr)]
    integrated = float(re.findall(r"^\s*I:\s+(-?[0-9.]+) LUFS", result.stderr, re.M)[-1])
    return integrated, 20 * math.log10(max(peaks))


@pytest.fixture(scope="module")
def separated_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loud toy song (peaks near full scale) separated by the classical model, with the original as mixture.wav.

    Muting the vocals and matching the original loudness pushes the rest's peaks past -1 dBTP: the limiter has
    work to do.
    """
    root = tmp_path_factory.mktemp("remix")
    mix = toy_mix(4.0)
    song = audio.save(root / "song.wav", mix * (0.97 / np.abs(mix).max()), SR, bits=16)
    written = Separator("classical", segment=2.0).separate_file(song, OutputOptions(directory=root, bits="24"))
    folder = written["vocals"].parent
    shutil.copy(song, folder / "mixture.wav")
    return folder


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float64")[0].T


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (Debian package ffmpeg) is not installed")
def test_karaoke_is_the_other_stems_at_the_original_loudness_under_minus_1_dbtp(separated_song: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "karaoke.wav"
    assert main(["remix", str(separated_song), "-o", str(out), "--karaoke"]) == 0
    result, original = read(out), read(separated_song / "mixture.wav")
    rest = sum(read(separated_song / f"{s}.wav") for s in ("drums", "bass", "other"))
    scaled = rest * 10 ** ((lufs(original) - lufs(rest)) / 20)
    assert 20 * math.log10(true_peak(scaled)) > -0.5  # the plain scaled sum would break the ceiling: limiting needed
    # loudness: pyloudnorm and FFmpeg's meter agree that it is the original's, within 0.5 LU
    assert abs(lufs(result) - lufs(original)) < 0.5
    integrated, peak = ffmpeg_r128(out)
    original_integrated, _ = ffmpeg_r128(separated_song / "mixture.wav")
    assert abs(integrated - original_integrated) < 0.5
    # true peak: at most -1 dBTP by FFmpeg's 4x meter and by ours (8x), and not far below (no needless loss)
    assert peak <= -1.0 + 1e-3 and -1.3 < 20 * math.log10(true_peak(result)) <= -1.0
    # content: the non-vocal sum times a gain that is the loudness match (plus the limiter's make-up, under
    # 0.5 dB) most of the time and lower only around the peaks the limiter takes down; no vocals
    loud = np.abs(scaled) > 1e-3
    ratio = result[loud] / scaled[loud]
    assert ratio.min() > 0.5 and ratio.max() < 10 ** (0.5 / 20) and np.median(ratio) > 0.98 * ratio.max()
    vocals = read(separated_song / "vocals.wav")
    assert abs(np.corrcoef(result.ravel(), vocals.ravel())[0, 1]) < abs(np.corrcoef(original.ravel(), vocals.ravel())[0, 1])


def test_quiet_remix_is_exactly_the_scaled_sum_with_gains_and_pans() -> None:
    stems = {k: v * 0.3 for k, v in toy_stems(2.0).items()}
    original = sum(stems.values())
    out = remix(stems, SR, {"drums": 3.0, "vocals": -math.inf}, {"other": -0.3})
    left, right = pan_gains(-0.3)
    expected = stems["drums"] * 10 ** (3 / 20) + stems["bass"] + stems["other"] * np.array([[left], [right]])
    expected = expected * 10 ** ((lufs(original) - lufs(expected)) / 20)  # no reference: the sum of the stems
    assert true_peak(expected) < 10 ** (-1 / 20)  # so no limiting: the result is exactly the scaled mix
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert abs(lufs(out) - lufs(original)) < 0.01
    assert pan_gains(0.0) == pytest.approx((1.0, 1.0)) and pan_gains(-1.0) == pytest.approx((math.sqrt(2), 0.0))


def test_limiter_holds_the_ceiling_and_leaves_quiet_parts_alone() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, SR)) * 0.05
    x[:, SR // 2: SR // 2 + 200] *= 40  # a burst far over full scale
    y = true_peak_limit(x, SR)
    assert true_peak(y) <= 10 ** (-1 / 20)
    np.testing.assert_allclose(y[:, : SR // 4], x[:, : SR // 4], atol=1e-6)  # far from the burst: untouched
    assert np.all(np.abs(y) <= np.abs(x) + 1e-6)  # gain reduction only


def test_parse_levels() -> None:
    assert parse_levels("vocals=-inf,drums=+3") == {"vocals": -math.inf, "drums": 3.0}
    assert parse_levels("other=-0.3", "pan") == {"other": -0.3}
    assert parse_levels(None) == {}
    for spec, kind, message in [("vocals", "gain", "expected STEM=NUMBER"), ("vocals=loud", "gain", "expected"),
                                ("a=1,a=2", "gain", "given twice"), ("other=2", "pan", "between -1"),
                                ("drums=inf", "gain", "-inf"), ("drums=nan", "gain", "-inf")]:
        with pytest.raises(StemforgeError, match=message):
            parse_levels(spec, kind)


def write_folder(folder: Path, seconds: float = 1.0, rate: int = SR, **changes: np.ndarray | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stems = toy_stems(seconds, rate)
    for name, data in {**stems, **changes}.items():
        if data is not None:
            sf.write(folder / f"{name}.wav", data.T, rate, subtype="PCM_24")
    return folder


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


@pytest.mark.parametrize("changes, args, message", [
    ({"vocals": None}, [], "missing vocals"),
    ({"guitar": toy_stems(1.0)["bass"]}, [], "unexpected guitar.wav"),
    ({"bass": toy_stems(1.5)["bass"]}, [], "must be equally long"),
    ({}, ["--gain", "voice=-inf"], "--gain voice: no such stem"),
    ({}, ["--solo", "piano"], "--solo piano: no such stem"),
    ({}, ["--karaoke", "--gain", "vocals=-3"], "contradicts"),
    ({}, ["--pan", "other=3"], "between -1 (left) and 1 (right)"),
])
def test_bad_folders_and_requests_are_one_line_errors(tmp_path: Path, changes: dict, args: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "stems", **changes)
    out = tmp_path / "mix.wav"
    code, err = run_cli(["remix", str(folder), "-o", str(out), *args], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["stems"]


def test_differently_sampled_stems_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "stems")
    sf.write(folder / "bass.wav", toy_stems(1.0, 48000)["bass"].T, 48000, subtype="PCM_24")
    code, err = run_cli(["remix", str(folder), "-o", str(tmp_path / "mix.wav")], capsys)
    assert code == 1 and len(err) == 1 and "48000 Hz" in err[0] and "one sample rate" in err[0], err
    assert not (tmp_path / "mix.wav").exists()


def test_existing_output_is_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "stems")
    out = tmp_path / "mix.wav"
    out.write_bytes(b"mine")
    code, err = run_cli(["remix", str(folder), "-o", str(out), "--no-drums"], capsys)
    assert code == 1 and len(err) == 1 and "already exists" in err[0]
    assert out.read_bytes() == b"mine"
    assert main(["remix", str(folder), "-o", str(out), "--no-drums", "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav", "stems"]  # no temp files left
    stems = toy_stems(1.0)
    rest = stems["bass"] + stems["other"] + stems["vocals"]
    result = read(out)
    gain = result[0] @ rest[0] / (rest[0] @ rest[0])
    assert np.abs(result - gain * rest).max() < 1e-5  # 24-bit: the drumless sum, scaled


def test_solo_and_two_stem_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "four")
    assert main(["remix", str(folder), "-o", str(tmp_path / "bass.wav"), "--solo", "bass"]) == 0
    bass, result = toy_stems(1.0)["bass"], read(tmp_path / "bass.wav")
    assert abs(np.corrcoef(result.ravel(), bass.ravel())[0, 1]) > 0.9999
    stems = toy_stems(1.0)
    two = tmp_path / "two"
    two.mkdir()
    sf.write(two / "vocals.wav", stems["vocals"].T, SR, subtype="FLOAT")
    sf.write(two / "no_vocals.wav", sum(v for k, v in stems.items() if k != "vocals").T, SR, subtype="FLOAT")
    assert main(["remix", str(two), "-o", str(tmp_path / "k.flac"), "--karaoke"]) == 0
    assert abs(loudness(read(tmp_path / "k.flac"), SR) - lufs(sum(stems.values()))) < 0.5


def _remix_cases(root: Path) -> dict[str, tuple[Path, dict, dict]]:
    """Stem folders (32-bit float) with the gains and pans to remix them with, covering each branch of ``remix``."""
    stems = toy_stems(2.0)
    loud = {k: v * 1.5 for k, v in stems.items()}
    cases = {
        "quiet, gains and pans, no mixture": ({k: v * 0.3 for k, v in stems.items()},
                                              {"drums": 3.0, "vocals": -math.inf}, {"other": -0.3}, None),
        "loud karaoke against mixture.wav": (loud, {"vocals": -math.inf}, {}, sum(stems.values()) * 0.9),
        "loud, boosted drums, no mixture": (loud, {"drums": 6.0}, {"bass": 0.5}, None),
        "silent original: limiter only": (loud, {}, {}, np.zeros((2, SR * 2), np.float32)),
        "every stem muted": (loud, {k: -math.inf for k in stems}, {}, None),
    }
    folders = {}
    for i, (name, (arrays, gains, pans, mixture)) in enumerate(cases.items()):
        folder = root / f"case{i}"
        folder.mkdir()
        for stem, x in arrays.items():
            sf.write(folder / f"{stem}.wav", x.T, SR, subtype="FLOAT")
        if mixture is not None:
            sf.write(folder / "mixture.wav", mixture.T, SR, subtype="FLOAT")
        folders[name] = (folder, gains, pans)
    return folders


def test_streamed_remix_equals_the_in_memory_remix(tmp_path: Path) -> None:
    """``remix_folder`` (blocks, several passes) writes what ``remix`` computes on whole arrays, to 1e-5.

    Measured: bit-identical on these folders, for blocks shorter than the limiter's reach and for the default.
    """
    from stemforge.remix import load_stem_folder, remix_folder

    limited = 0
    for name, (folder, gains, pans) in _remix_cases(tmp_path).items():
        loaded = load_stem_folder(folder)
        expected = remix(loaded.stems, SR, gains, pans, loaded.mixture, loaded.mixture_rate)
        plain = sum(x * 10 ** (gains.get(s, 0) / 20) for s, x in loaded.stems.items() if gains.get(s, 0) > -math.inf)
        loud = np.abs(plain) > 1e-3
        limited += bool(loud.any() and np.ptp(expected[loud] / plain[loud]) > 0.01)  # not one gain throughout
        for block in (3000, 1 << 17):
            out = remix_folder(folder, tmp_path / f"{folder.name}_{block}.wav", gains, pans, bits="32f",
                               block_frames=block)
            got = sf.read(out, dtype="float32")[0].T
            assert got.shape == expected.shape, name
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)
            assert true_peak(got) <= 10 ** (-1 / 20) + 1e-6
    assert limited >= 2  # the limiter did work in some cases, not only a gain


def test_streamed_remix_memory_does_not_grow_with_the_track(tmp_path: Path) -> None:
    """Peak traced allocations of ``remix_folder`` for a 9 s track are those of a 3 s one (blocks of 0.2 s),
    and under half the 9 s stems' size."""
    import tracemalloc

    from stemforge.remix import remix_folder

    peaks = {}
    for seconds in (3, 9):
        folder = tmp_path / f"song{seconds}"
        folder.mkdir()
        for stem, x in toy_stems(1.0).items():
            sf.write(folder / f"{stem}.wav", np.tile(x * 1.5, seconds).T, SR, subtype="PCM_16")
        tracemalloc.start()
        remix_folder(folder, tmp_path / f"out{seconds}.wav", {"vocals": -math.inf}, block_frames=1 << 13)
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    stems_bytes = 4 * 2 * 9 * SR * 4  # four stereo float32 stems of 9 s: what the whole-array remix holds
    assert peaks[9] < 1.1 * peaks[3] and peaks[9] < stems_bytes / 2, (peaks, stems_bytes)


def test_stems_that_decode_to_different_lengths_write_nothing(tmp_path: Path) -> None:
    """The headers agreed when the folder was checked; a stem that then ends early is an error, not a short mix."""
    from stemforge.remix import RemixError, check_folder, remix_folder

    folder = write_folder(tmp_path / "stems")
    checked = check_folder(folder)
    sf.write(folder / "bass.wav", toy_stems(0.5)["bass"].T, SR, subtype="PCM_24")  # replaced after the check
    with pytest.raises(RemixError, match=r"stems of different lengths: bass.wav ends after 22050 frames"):
        remix_folder(checked, tmp_path / "mix.wav", block_frames=4096)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"]


def test_more_than_five_channels_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """BS.1770 weighs 1 to 5 channels; 7.1 stems are refused up front (pyloudnorm raised a ValueError)."""
    folder = tmp_path / "stems"
    folder.mkdir()
    for name, x in toy_stems(0.5).items():
        sf.write(folder / f"{name}.wav", np.tile(x, (4, 1)).T, SR, subtype="PCM_16")
    code, err = run_cli(["remix", str(folder), "-o", str(tmp_path / "mix.wav")], capsys)
    assert code == 1 and len(err) == 1 and "8 channels; loudness (BS.1770) is defined for 1 to 5" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"]
