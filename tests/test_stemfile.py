"""NI Stems files: ``separate --format stem.mp4`` (AAC, ALAC with --bits 24), the ``stem`` box, our reader."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from stemforge import audio
from stemforge.cli import main
from stemforge.data.songs import discover_songs, read_stems
from stemforge.data.stemmp4 import decode_stream, probe_stream
from stemforge.errors import StemforgeError
from stemforge.stemfile import ni_metadata, read_stem_metadata, write_stem_file
from toy_song import toy_mix

SR = 44100
ORDER = ["mixture", "drums", "bass", "other", "vocals"]
FAST = ["-n", "classical", "--segment", "2", "-q"]


@pytest.fixture(scope="module")
def separated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 3 s song separated three ways: 24-bit wavs, an ALAC stem file and an AAC stem file."""
    root = tmp_path_factory.mktemp("stemfile")
    song = audio.save(root / "song.wav", toy_mix(3.0), SR, bits=16)
    assert main(["separate", str(song), "-o", str(root / "wav"), "--bits", "24", *FAST]) == 0
    assert main(["separate", str(song), "-o", str(root / "alac"), "--format", "stem.mp4", "--bits", "24", *FAST]) == 0
    assert main(["separate", str(song), "-o", str(root / "aac"), "--format", "stem.mp4", *FAST]) == 0
    return {"song": song, "wavs": root / "wav" / "classical" / "song",
            "alac": root / "alac" / "classical" / "song.stem.mp4", "aac": root / "aac" / "classical" / "song.stem.mp4"}


def ffprobe_streams(path: Path) -> list[dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["streams"]


def boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """An independent minimal MP4 box walk: {type: (payload start, end)} of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    found = {}
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        found.setdefault(kind, (start + 8, start + size))
        start += size
    return found


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian package ffmpeg) is not installed")
@pytest.mark.parametrize("kind, codec", [("alac", "alac"), ("aac", "aac")])
def test_five_streams_in_ni_order_seen_by_ffprobe_and_pyav(separated: dict[str, Path], kind: str, codec: str) -> None:
    streams = ffprobe_streams(separated[kind])
    assert [s["codec_type"] for s in streams] == ["audio"] * 5
    assert [s["codec_name"] for s in streams] == [codec] * 5
    assert [s["tags"]["handler_name"].lower() for s in streams] == ORDER
    assert [s["channels"] for s in streams] == [2] * 5 and {s["sample_rate"] for s in streams} == {str(SR)}
    # only the master is an enabled track (a plain player plays the mix); the stems are there for DJ software
    assert [s["disposition"]["default"] for s in streams] == [1, 0, 0, 0, 0]
    if codec == "alac":
        assert {s["bits_per_raw_sample"] for s in streams} == {"24"}
    with av.open(str(separated[kind])) as container:
        assert [s.type for s in container.streams] == ["audio"] * 5
        assert [s.metadata.get("handler_name", "").lower() for s in container.streams.audio] == ORDER
        assert [s.codec_context.name for s in container.streams.audio] == [codec] * 5


@pytest.mark.parametrize("kind", ["alac", "aac"])
def test_stem_box_holds_ni_json(separated: dict[str, Path], kind: str) -> None:
    data = separated[kind].read_bytes()
    top = boxes(data)
    assert data[top[b"ftyp"][0]:top[b"ftyp"][0] + 4] == b"M4A "
    udta = boxes(data, *top[b"moov"])[b"udta"]
    start, end = boxes(data, *udta)[b"stem"]
    document = json.loads(data[start:end])
    assert document == read_stem_metadata(separated[kind]) == ni_metadata()
    assert document["version"] == 1
    assert [s["name"] for s in document["stems"]] == ["Drums", "Bass", "Other", "Vocals"]
    assert [s["color"] for s in document["stems"]] == ["#009E73", "#D55E00", "#CC79A7", "#56B4E9"]
    compressor, limiter = document["mastering_dsp"]["compressor"], document["mastering_dsp"]["limiter"]
    assert set(compressor) == {"enabled", "ratio", "input_gain", "output_gain", "attack", "release", "threshold",
                               "hp_cutoff", "dry_wet"}
    assert set(limiter) == {"enabled", "threshold", "release", "ceiling"}
    assert compressor["enabled"] is False and limiter["enabled"] is False


def test_alac_is_bit_exact_to_the_24_bit_stems(separated: dict[str, Path]) -> None:
    for index, name in enumerate(ORDER):
        source = separated["song"] if name == "mixture" else separated["wavs"] / f"{name}.wav"
        expected = sf.read(source, dtype="int32")[0].T >> 8  # 24-bit integers (16-bit for the input song)
        with av.open(str(separated["alac"])) as container:
            stream = container.streams.audio[index]
            decoded = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        assert decoded.dtype == np.int32
        assert np.array_equal(decoded >> 8, expected), name
        # our reader, through floats, gives what soundfile gives for the 24-bit wav
        ours, rate = decode_stream(str(separated["alac"]), index)
        assert rate == SR and np.array_equal(ours, sf.read(source, dtype="float32")[0].T)


def test_our_reader_reads_both_back(separated: dict[str, Path]) -> None:
    stems = {name: sf.read(separated["wavs"] / f"{name}.wav", dtype="float32")[0].T for name in ORDER[1:]}
    frames = 3 * SR
    for kind in ("alac", "aac"):
        for index in range(5):
            assert probe_stream(str(separated[kind]), index) == (SR, frames, 2)
            assert decode_stream(str(separated[kind]), index)[0].shape == (2, frames)  # AAC's padding trimmed
        songs = discover_songs(separated[kind].parent)
        assert [s.name for s in songs] == ["song"] and songs[0].length == frames
        read = read_stems(songs[0], ORDER[1:], 0, frames, SR)
        for i, name in enumerate(ORDER[1:]):
            if kind == "alac":
                assert np.array_equal(read[i], stems[name]), name
            else:  # 256 kbit/s AAC: close, and in time (no encoder delay left in)
                error = read[i] - stems[name]
                snr = 10 * np.log10(np.sum(stems[name] ** 2) / np.sum(error ** 2))
                assert snr > 12, (name, snr)


def test_existing_stem_file_is_kept_unless_forced(separated: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    target = out / "classical" / "song.stem.mp4"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"mine")
    assert main(["separate", str(separated["song"]), "-o", str(out), "--format", "stem.mp4", *FAST]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert target.read_bytes() == b"mine"
    assert [p.name for p in target.parent.iterdir()] == ["song.stem.mp4"]  # no staging or temp files left
    assert main(["separate", str(separated["song"]), "-o", str(out), "--format", "stem.mp4", "--skip-existing",
                 *FAST]) == 0
    assert target.read_bytes() == b"mine"
    assert main(["separate", str(separated["song"]), "-o", str(out), "--format", "stem.mp4", "--force", *FAST]) == 0
    assert read_stem_metadata(target) == ni_metadata()
    assert [p.name for p in target.parent.iterdir()] == ["song.stem.mp4"]


def test_mono_48k_input_gets_a_stereo_44k_master_as_long_as_the_stems(tmp_path: Path) -> None:
    mono = toy_mix(2.0, 48000)[:1]
    song = audio.save(tmp_path / "mono.wav", mono, 48000, bits=16)
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--format", "stem.mp4", "--bits", "24",
                 *FAST]) == 0
    path = str(tmp_path / "out" / "classical" / "mono.stem.mp4")
    assert {probe_stream(path, i) for i in range(5)} == {(SR, 2 * SR, 2)}
    master = decode_stream(path, 0)[0]
    expected = audio.resample(np.repeat(mono, 2, axis=0), 48000, SR)[:, : 2 * SR]
    assert np.abs(master - expected).max() < 1e-4  # the input, resampled once, duplicated to stereo, 24-bit


def test_without_a_model_name_the_best_available_model_writes_it(tmp_path: Path) -> None:
    """No -n: the model separate would choose (offline in the tests: the bundled one), not 'None'."""
    song = audio.save(tmp_path / "song.wav", toy_mix(2.0, SR), SR, bits=16)
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--format", "stem.mp4", "-q"]) == 0
    assert (tmp_path / "out" / "default" / "song.stem.mp4").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--bits", "16"], "--bits 16 does not apply"),
    (["--stems", "vocals"], "--stems does not apply"),
    (["-n", "hpss"], "needs a model with the stems drums, bass, other, vocals"),
])
def test_bad_stem_file_requests_are_one_line_errors(separated: dict[str, Path], tmp_path: Path, extra: list[str],
                                                    message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["separate", str(separated["song"]), "-o", str(tmp_path / "out"), "--format", "stem.mp4", *FAST, *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*.mp4")) and not list((tmp_path / "out").rglob(".*"))


def test_surround_input_with_keep_channels_is_refused_before_separating(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    surround = audio.save(tmp_path / "six.wav", np.zeros((6, SR), np.float32), SR, bits=16)
    args = ["separate", str(surround), "-o", str(tmp_path / "out"), "--format", "stem.mp4", "--keep-channels", *FAST]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "6-channel stems" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_writer_refuses_mismatched_sources(separated: dict[str, Path], tmp_path: Path) -> None:
    sources = {name: separated["wavs"] / f"{name}.wav" for name in ORDER[1:]}
    short = audio.save(tmp_path / "short.wav", toy_mix(1.0), SR, bits=16)
    with pytest.raises(StemforgeError, match="frames"):
        write_stem_file(tmp_path / "x.stem.mp4", {"mixture": short, **sources})
    with pytest.raises(StemforgeError, match="exactly mixture, drums, bass, other, vocals"):
        write_stem_file(tmp_path / "x.stem.mp4", sources)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.wav"]


def test_file_without_stem_box_is_reported(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp4"
    with av.open(str(plain), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=SR, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 4096), np.float32), format="fltp", layout="stereo")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(StemforgeError, match="no NI stem metadata"):
        read_stem_metadata(plain)
    (tmp_path / "junk.stem.mp4").write_bytes(b"\x00\x00\x00\x10moov\x00\x00\x00\xffudta")
    with pytest.raises(StemforgeError, match="not a valid NI Stems file"):
        read_stem_metadata(tmp_path / "junk.stem.mp4")


def test_a_file_named_twice_is_separated_once(separated: dict[str, Path], tmp_path: Path) -> None:
    song = str(separated["song"])
    assert main(["separate", song, song, "-o", str(tmp_path), "--format", "stem.mp4", *FAST]) == 0
    assert [p.name for p in (tmp_path / "classical").iterdir()] == ["song.stem.mp4"]


def test_the_cli_spells_the_format_as_the_module_does() -> None:
    from stemforge.commands.separate import STEM_FORMAT as CLI_FORMAT
    from stemforge.stemfile import STEM_FORMAT

    assert CLI_FORMAT == STEM_FORMAT == "stem.mp4"
