import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemforge import audio
from stemforge.errors import AudioError

SR = 44100


def sine(seconds: float = 1.0, sr: int = SR, channels: int = 2, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("ext,bits,tol", [("wav", 16, 2**-15), ("wav", 24, 2**-23), ("wav", "32f", 0.0),
                                          ("flac", 16, 2**-15), ("flac", 24, 2**-23)])
def test_lossless_round_trip(tmp_path: Path, ext: str, bits: object, tol: float) -> None:
    x = sine()
    path = audio.save(tmp_path / f"x.{ext}", x, SR, bits=bits)
    y, rate = audio.load(path)
    assert rate == SR and y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - x).max() <= tol


def test_mp3_round_trip_keeps_length_and_signal(tmp_path: Path) -> None:
    x = sine(2.0)
    path = audio.save(tmp_path / "x.mp3", x, SR, mp3_bitrate=320)
    y, rate = audio.load(path)
    assert rate == SR and y.shape == x.shape
    assert np.abs(y - x).max() < 0.01


def test_mp3_bitrate_changes_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, SR * 2))).astype(np.float32)
    small = audio.save(tmp_path / "a.mp3", x, SR, mp3_bitrate=64).stat().st_size
    big = audio.save(tmp_path / "b.mp3", x, SR, mp3_bitrate=320).stat().st_size
    assert big > 3 * small


def _encode_with_pyav(path: Path, x: np.ndarray, codec: str, fmt: str, sr: int = 48000) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("ext,codec,fmt", [("m4a", "aac", "ipod"), ("opus", "libopus", "ogg")])
def test_reads_compressed_formats(tmp_path: Path, ext: str, codec: str, fmt: str) -> None:
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"PyAV build has no {codec} encoder")
    x = sine(1.0, sr=48000)
    path = tmp_path / f"x.{ext}"
    _encode_with_pyav(path, x, codec, fmt)
    y, rate = audio.load(path)
    assert rate == 48000 and y.shape[0] == 2
    assert abs(y.shape[1] - x.shape[1]) < 4096  # codec priming/padding
    # The decoded signal still carries the tone's energy.
    assert 0.5 < np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) < 1.5


def test_aiff_and_ogg_vorbis(tmp_path: Path) -> None:
    import soundfile as sf

    x = sine()
    sf.write(tmp_path / "x.aiff", x.T, SR, subtype="PCM_16")
    y, _ = audio.load(tmp_path / "x.aiff")
    assert np.abs(y - x).max() < 2**-14
    sf.write(tmp_path / "x.ogg", x.T, SR, format="OGG", subtype="VORBIS")
    y, rate = audio.load(tmp_path / "x.ogg")
    assert rate == SR and y.shape == x.shape
    assert np.abs(y - x).max() < 0.05


def test_resample_preserves_tone_and_length() -> None:
    x = sine(1.0, sr=8000, channels=1, freq=440)
    y = audio.resample(x, 8000, 44100)
    assert y.shape == (1, 44100)
    spectrum = np.abs(np.fft.rfft(y[0] * np.hanning(y.shape[1])))
    assert abs(np.argmax(spectrum) * 44100 / y.shape[1] - 440) < 2


def test_stream_resampler_matches_whole_signal() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 48000)).astype(np.float32)
    stream = audio.StreamResampler(48000, 44100, 2)
    parts = [stream.process(x[:, i:i + 3001]) for i in range(0, 48000, 3001)]
    parts.append(stream.process(np.zeros((2, 0), np.float32), last=True))
    y = np.concatenate(parts, axis=1)
    whole = audio.resample(x, 48000, 44100)
    assert y.shape == whole.shape
    assert np.abs(y - whole).max() < 1e-4


@pytest.mark.parametrize("channels_in,channels_out", [(1, 2), (2, 1), (6, 2), (4, 2), (2, 2)])
def test_convert_channels(channels_in: int, channels_out: int) -> None:
    x = np.ones((channels_in, 10), np.float32)
    y = audio.convert_channels(x, channels_out)
    assert y.shape == (channels_out, 10)
    np.testing.assert_allclose(y, 1.0, atol=1e-6)  # a constant signal keeps its level


def test_missing_file() -> None:
    with pytest.raises(AudioError, match="no such file"):
        audio.open_audio("/nonexistent/song.wav")


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory"):
        audio.open_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        audio.open_audio(tmp_path / "empty.wav")


def test_text_renamed_wav(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("these are my lyrics, not audio\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        audio.open_audio(tmp_path / "notes.wav")


def test_zero_sample_wav(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), SR)
    with pytest.raises(AudioError, match="no audio samples"):
        audio.open_audio(tmp_path / "zero.wav")


def test_truncated_mp3_is_an_error_or_partial_but_never_a_crash(tmp_path: Path) -> None:
    path = audio.save(tmp_path / "x.mp3", sine(2.0), SR)
    data = path.read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[:200])
    try:
        y, _ = audio.load(tmp_path / "cut.mp3")
        assert y.shape[1] < SR * 2
    except AudioError:
        pass


def test_unsupported_output_combinations() -> None:
    with pytest.raises(AudioError, match="flac cannot store 32f"):
        audio.check_output_format("flac", "32f", 2)
    with pytest.raises(AudioError, match="mp3 holds at most 2 channels"):
        audio.check_output_format("mp3", "16", 6)
    with pytest.raises(AudioError, match="unsupported output format"):
        audio.check_output_format("ogg", "16", 2)


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "keep.wav"
    target.write_bytes(b"user data")
    with pytest.raises(AudioError, match="already exists"):
        audio.AudioWriter(target, SR, 2)
    assert target.read_bytes() == b"user data"


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    with pytest.raises(RuntimeError):
        with audio.AudioWriter(target, SR, 2) as writer:
            writer.write(sine(0.1))
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AudioError, match="cannot write output"):
        audio.AudioWriter(blocker / "sub" / "out.wav", SR, 2)


def test_integer_formats_clamp(tmp_path: Path) -> None:
    x = sine() * 4
    y, _ = audio.load(audio.save(tmp_path / "loud.wav", x, SR, bits=16))
    assert np.abs(y).max() <= 1.0


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    path = audio.save(tmp_path / "x.wav", sine(0.1), SR)
    assert path.stat().st_mode & 0o777 == audio.default_file_mode()


def _full_device_mkstemp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make the writer's temp file a link to /dev/full, where every write fails with a real ENOSPC."""
    real = audio.tempfile.mkstemp

    def mkstemp(prefix: str = "", suffix: str = "", dir: str | None = None) -> tuple[int, str]:
        fd, name = real(prefix=prefix, suffix=suffix, dir=dir)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(audio.tempfile, "mkstemp", mkstemp)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_full_disk_is_one_line_error_naming_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    _full_device_mkstemp(monkeypatch, tmp_path)
    target = tmp_path / f"out.{fmt}"
    with pytest.raises(AudioError) as caught:
        with audio.AudioWriter(target, SR, 2, fmt) as writer:
            for _ in range(20):
                writer.write(sine(1.0))
    message = str(caught.value)
    assert "\n" not in message and str(target) in message and "no space left on device" in message
    assert list(tmp_path.iterdir()) == []  # the temp link is gone, no target


def test_file_size_limit_is_one_line_error(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes write() fail with EFBIG; Python ignores SIGXFSZ, so it surfaces as an error.
    pytest.importorskip("resource")
    code = ("import resource, sys, numpy as np\n"
            "from stemforge import audio\n"
            "from stemforge.errors import AudioError\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))\n"
            "try:\n"
            "    audio.save(sys.argv[1], np.zeros((2, 441000), np.float32), 44100, bits=16)\n"
            "except AudioError as exc:\n"
            "    print(exc)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(audio.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.wav")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("big.wav: writing failed: file too large"), result.stdout
    assert list(tmp_path.iterdir()) == []


def test_truncated_wav_warns_how_much_is_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = audio.save(tmp_path / "whole.wav", sine(1.0), SR, bits=16)
    cut = tmp_path / "cut.wav"
    data = path.read_bytes()
    cut.write_bytes(data[:44 + 4 * 11025])  # header + a quarter of the frames
    wav, _ = audio.load(cut)
    assert wav.shape == (2, 11025)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and str(cut) in lines[0] and "truncated" in lines[0]
    assert "33075" in lines[0] and "0.750 s missing" in lines[0]
    caplog.clear()
    audio.load(path)  # a whole file says nothing
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_publish_is_exclusive_and_all_or_nothing(tmp_path: Path) -> None:
    first = {tmp_path / f"{n}.wav": audio.AudioWriter(tmp_path / f"{n}.wav", SR, 2) for n in ("a", "b")}
    for w in first.values():
        w.write(sine(0.1))
    parts = {target: w.finish() for target, w in first.items()}
    assert not any(t.exists() for t in parts)  # finished, not yet visible
    (tmp_path / "b.wav").write_bytes(b"someone else's")
    with pytest.raises(AudioError, match="b.wav: already exists"):
        audio.publish(parts)
    assert not (tmp_path / "a.wav").exists()  # rolled back: none of the set appears
    assert (tmp_path / "b.wav").read_bytes() == b"someone else's"
    (tmp_path / "b.wav").unlink()
    audio.publish(parts)
    assert all(audio.load(t)[0].shape == (2, 4410) for t in parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]


def test_staged_folder_publishes_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "song"
    with pytest.raises(KeyboardInterrupt):
        with audio.staged_folder(target, noun="song") as staged:
            assert staged.parent == tmp_path and staged.name.startswith(".") and staged.is_dir()
            (staged / "a.wav").write_bytes(b"half")
            raise KeyboardInterrupt  # an interruption half-way through
    assert list(tmp_path.iterdir()) == []
    with audio.staged_folder(target, noun="song") as staged:
        (staged / "a.wav").write_bytes(b"new")
        assert not target.exists()  # not visible until complete
    assert [p.name for p in tmp_path.iterdir()] == ["song"] and (target / "a.wav").read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == audio.folder_mode()  # not mkdtemp's 0700


def test_staged_folder_refuses_an_existing_target_without_force(tmp_path: Path) -> None:
    target = tmp_path / "song"
    target.mkdir()
    (target / "mine.txt").write_text("mine")
    with pytest.raises(audio.OutputExistsError, match=r"song: already exists \(use --force to replace it\)$"):
        with audio.staged_folder(target):
            pass
    other = tmp_path / "other"
    with pytest.raises(audio.OutputExistsError, match="other: already exists"):
        with audio.staged_folder(other) as staged:
            (staged / "new.txt").write_text("new")
            other.mkdir()  # someone else's folder appears meanwhile: refused, not clobbered
            (other / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "song"]  # no staging folder left
    assert [p.name for p in other.iterdir()] == ["theirs.txt"] and (target / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize("old_kind", ["folder", "file"])
def test_staged_folder_with_force_replaces_the_old_one_only_once_the_new_one_is_there(tmp_path: Path,
                                                                                      old_kind: str) -> None:
    target = tmp_path / "song"
    if old_kind == "folder":
        target.mkdir()
        (target / "old.txt").write_text("old")
    else:
        target.write_text("old")
    with audio.staged_folder(target, force=True) as staged:
        (staged / "new.txt").write_text("new")
        assert (target / "old.txt" if old_kind == "folder" else target).read_text() == "old"  # still there
    assert [p.name for p in tmp_path.iterdir()] == ["song"]  # the old one is gone, nothing aside is left
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_old_song_kept_when_publishing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "song"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(28, "No space left on device")

    with pytest.raises(AudioError, match=r"^\S*song: cannot write the song \(No space left on device\)$"):
        with audio.staged_folder(target, force=True, noun="song") as staged:
            (staged / "new.txt").write_text("new")
            monkeypatch.setattr(audio.os, "rename", full_disk)  # moving the new song into place fails
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["song"]  # the old song is back; no staging, nothing aside
    assert [p.name for p in target.iterdir()] == ["old.txt"] and (target / "old.txt").read_text() == "old"


def test_publish_staged_puts_a_file_back_when_the_move_fails(tmp_path: Path) -> None:
    """The same publication for a single file: a name taken meanwhile is refused, the old file put back."""
    target = tmp_path / "project.rpp"
    target.write_text("old")
    staged = audio.staging_path(target, directory=False, noun="project")
    staged.write_text("new")

    def taken(new: Path, name: Path) -> None:
        raise FileExistsError(17, "File exists")

    with pytest.raises(audio.OutputExistsError, match="project.rpp: already exists"):
        audio.publish_staged(staged, target, taken, force=True, noun="project")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [staged.name, target.name]
    audio.publish_staged(staged, target, os.replace, force=True, noun="project")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_staging_folder_that_cannot_be_made_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio.tempfile, "mkdtemp", read_only)
    with pytest.raises(AudioError, match=r"cache: cannot write the evaluation songs \(Permission denied\)$"):
        with audio.staged_folder(tmp_path / "cache", noun="evaluation songs"):
            pass


def test_sweep_removes_only_temp_files_of_dead_runs(tmp_path: Path) -> None:
    target = tmp_path / "vocals.wav"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".vocals.wav.sf{pid}.abc123.part.wav"
    live = tmp_path / f".vocals.wav.sf{os.getpid()}.def456.part.wav"
    other = tmp_path / f".drums.wav.sf{pid}.abc123.part.wav"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    assert audio.sweep_stale_parts(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


@pytest.mark.parametrize("rate", [1, 100, 0x7FFFFFFF])
def test_implausible_sample_rate_in_header_is_an_error(tmp_path: Path, rate: int) -> None:
    # A corrupt rate field: 1 Hz made a 0.2 s clip into hours of audio to resample (a hang), 2^31 Hz into none.
    data = bytearray(audio.save(tmp_path / "ok.wav", sine(0.2), SR, bits=16).read_bytes())
    data[24:28] = rate.to_bytes(4, "little")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=f"bad.wav: implausible sample rate {rate} Hz"):
        audio.open_audio(bad)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_deferred_signals_hold_the_signal_until_the_block_ends(signum: int) -> None:
    import torch

    torch.ones(1000, 1000) @ torch.ones(1000, 1000)  # torch's worker threads exist: a process signal may land on any
    got: list[str] = []
    previous = signal.signal(signum, lambda s, f: got.append("handled"))
    try:
        with audio.deferred_signals():
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # give the interpreter every chance to run a handler inside the block
                sum(range(100))
            got.append("block done")
        got.append("after")
    finally:
        signal.signal(signum, previous)
    assert got == ["block done", "handled", "after"]
    assert signal.getsignal(signum) is previous


def test_cut_off_mp3_warns_that_it_ended_early(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import av

    whole = tmp_path / "whole.mp3"
    with av.open(str(whole), "w", format="mp3") as container:  # PyAV's LAME writes an Info frame with the count
        stream = container.add_stream("libmp3lame", rate=SR)
        stream.layout, stream.bit_rate = "stereo", 128_000
        x = sine(20.0)
        for start in range(0, x.shape[1], 1152 * 10):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start:start + 1152 * 10]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = SR, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[:100_000])
    wav, _ = audio.load(cut)
    assert 5 * SR < wav.shape[1] < 8 * SR  # 100 kB at 128 kbit/s: about 6 s of the 20
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and str(cut) in lines[0] and "ended early" in lines[0], lines
    assert "promises 20.0" in lines[0]
    caplog.clear()
    full, _ = audio.load(whole)
    assert abs(full.shape[1] - 20 * SR) < 2048
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # a whole file says nothing


def _pyav_layout(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        return container.streams.audio[0].layout.name


@pytest.mark.parametrize("mask,layout", [(None, "5.1"), (0x60F, "5.1(side)")])
def test_multichannel_wav_says_which_speaker_each_channel_is(tmp_path: Path, mask: int | None, layout: str) -> None:
    path = tmp_path / "six.wav"
    with audio.AudioWriter(path, SR, 6, "wav", "16", channel_mask=mask) as writer:
        writer.write(sine(0.2, channels=6))
    data = path.read_bytes()
    fmt = data.index(b"fmt ") + 8
    assert int.from_bytes(data[fmt:fmt + 2], "little") == 0xFFFE  # WAVE_FORMAT_EXTENSIBLE
    assert int.from_bytes(data[fmt + 20:fmt + 24], "little") == (mask or 0x3F)  # dwChannelMask
    assert _pyav_layout(path) == layout  # FFmpeg (and ffprobe) name the layout instead of "6 channels"
    assert audio.open_audio(path).info.channel_mask == (mask or 0x3F)


@pytest.mark.parametrize("layout,mask", [("5.1(side)", 0x60F), ("5.1", 0x3F), ("7.1", 0x63F), ("stereo", 0x3),
                                         ("6 channels", None)])
def test_channel_mask_from_an_ffmpeg_layout(layout: str, mask: int | None) -> None:
    import av

    channels = 6 if layout == "6 channels" else len(av.AudioLayout(layout).channels)
    assert audio._layout_mask(av.AudioLayout(layout), channels) == mask


@pytest.mark.parametrize("bitrate", [0, 7, 321, 500])
def test_mp3_bitrate_out_of_range_is_refused(bitrate: int) -> None:
    with pytest.raises(AudioError, match=f"--mp3-bitrate {bitrate}: mp3 bitrate must be between 8 and 320"):
        audio.check_mp3_bitrate(bitrate)
