import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from stemforge import audio
from stemforge.checkpoint import save_checkpoint
from stemforge.errors import ModelError, StemforgeError
from stemforge.models import build
from stemforge.models.base import ModelConfig, StemModel
from stemforge.separate import OutputOptions, Separator
from toy_song import toy_mix

SR = 44100


class Exploding(StemModel):
    architecture = "test_exploding"

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def write(tmp_path: Path, wav: np.ndarray, rate: int = SR, name: str = "in.wav") -> Path:
    return audio.save(tmp_path / name, wav, rate, bits="32f")


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator("classical", segment=2.0)


def test_array_stems_sum_to_mixture(separator: Separator) -> None:
    mix = toy_mix(3.0)
    stems = separator.separate_array(mix, SR)
    assert list(stems) == ["drums", "bass", "other", "vocals"]
    assert all(s.shape == mix.shape for s in stems.values())
    assert np.abs(sum(stems.values()) - mix).max() < 1e-4  # mask-based: exact up to float round-off


@pytest.mark.parametrize("channels,rate", [(1, SR), (6, SR), (2, 8000), (2, 192000)])
def test_array_keeps_layout_and_rate(separator: Separator, channels: int, rate: int) -> None:
    mix = np.random.default_rng(0).standard_normal((channels, rate // 2)).astype(np.float32) * 0.1
    stems = separator.separate_array(mix, rate)
    assert all(s.shape == mix.shape and np.all(np.isfinite(s)) for s in stems.values())


def test_file_outputs(tmp_path: Path, separator: Separator, song_file: Path) -> None:
    written = separator.separate_file(song_file, OutputOptions(directory=tmp_path / "out"))
    assert set(written) == {"drums", "bass", "other", "vocals"}
    for stem, path in written.items():
        assert path == tmp_path / "out" / "classical" / "song" / f"{stem}.wav"
        wav, rate = audio.load(path)
        assert rate == SR and wav.shape == (2, 4 * SR)
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_two_stems_sum_to_mixture(tmp_path: Path, separator: Separator) -> None:
    mix = toy_mix(3.0)
    path = write(tmp_path, mix)
    written = separator.separate_file(path, OutputOptions(directory=tmp_path, two_stems="vocals", bits="32f"))
    assert set(written) == {"vocals", "no_vocals"}
    vocals, _ = audio.load(written["vocals"])
    rest, _ = audio.load(written["no_vocals"])
    assert np.abs(vocals + rest - mix).max() < 1e-4


def test_stem_subset_and_bad_names(tmp_path: Path, separator: Separator, song_file: Path) -> None:
    written = separator.separate_file(song_file, OutputOptions(directory=tmp_path, stems=("bass",)))
    assert list(written) == ["bass"]
    with pytest.raises(StemforgeError, match="model's stems are"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path, stems=("guitar",)))
    with pytest.raises(StemforgeError, match="model's stems are"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path, two_stems="piano"))


@pytest.mark.parametrize("channels,keep,expected", [(1, False, 2), (1, True, 1), (6, False, 2), (6, True, 6)])
def test_channel_layouts(tmp_path: Path, separator: Separator, channels: int, keep: bool, expected: int) -> None:
    mix = np.random.default_rng(1).standard_normal((channels, SR // 2)).astype(np.float32) * 0.1
    written = separator.separate_file(write(tmp_path, mix), OutputOptions(directory=tmp_path, keep_channels=keep))
    wav, _ = audio.load(written["drums"])
    assert wav.shape == (expected, SR // 2)


@pytest.mark.parametrize("rate", [8000, 192000, 22050])
def test_odd_rates(tmp_path: Path, separator: Separator, rate: int) -> None:
    mix = np.random.default_rng(2).standard_normal((2, rate // 2)).astype(np.float32) * 0.1
    path = write(tmp_path, mix, rate)
    kept = separator.separate_file(path, OutputOptions(directory=tmp_path / "kept", keep_rate=True, bits="32f"))
    wav, got = audio.load(kept["other"])
    assert got == rate and wav.shape == mix.shape
    total = sum(audio.load(p)[0] for p in kept.values())
    round_trip = audio.resample(audio.resample(mix, rate, SR), SR, rate)  # what resampling alone does
    assert np.abs(total - round_trip).max() < 1e-3
    default = separator.separate_file(path, OutputOptions(directory=tmp_path / "model"))
    wav, got = audio.load(default["other"])
    assert got == SR and abs(wav.shape[1] - SR // 2) <= 1


def test_silence_gives_silence(tmp_path: Path, separator: Separator) -> None:
    written = separator.separate_file(write(tmp_path, np.zeros((2, SR), np.float32)), OutputOptions(directory=tmp_path))
    for path in written.values():
        wav, _ = audio.load(path)
        assert wav.shape == (2, SR) and np.all(wav == 0)


def test_very_short_clip(tmp_path: Path, separator: Separator) -> None:
    mix = toy_mix(0.1)
    written = separator.separate_file(write(tmp_path, mix), OutputOptions(directory=tmp_path, bits="32f"))
    total = sum(audio.load(p)[0] for p in written.values())
    assert total.shape == mix.shape and np.abs(total - mix).max() < 1e-4


def test_refuses_to_overwrite_without_force(tmp_path: Path, separator: Separator, song_file: Path) -> None:
    separator.separate_file(song_file, OutputOptions(directory=tmp_path))
    target = tmp_path / "classical" / "song" / "vocals.wav"
    target.write_bytes(b"precious")
    with pytest.raises(StemforgeError, match="already exists"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path))
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in target.parent.iterdir()) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    separator.separate_file(song_file, OutputOptions(directory=tmp_path, force=True))
    assert audio.load(target)[0].shape == (2, 4 * SR)


def test_incomplete_earlier_output_is_completed_not_refused(tmp_path: Path, separator: Separator, song_file: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # What an interrupted run used to leave: one stem of four. A re-run writes the other three, keeps that one.
    target = tmp_path / "classical" / "song" / "vocals.wav"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"precious")
    written = separator.separate_file(song_file, OutputOptions(directory=tmp_path))
    assert target.read_bytes() == b"precious"
    assert all(p.exists() for p in written.values()) and len(written) == 4
    assert sorted(p.name for p in target.parent.iterdir()) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert "left 1 of 4 stems" in caplog.text


def test_failure_mid_separation_leaves_nothing(tmp_path: Path, song_file: Path) -> None:
    separator = Separator(Exploding(ModelConfig()))
    with pytest.raises(RuntimeError, match="boom"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path / "out"))
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    assert not (tmp_path / "out").exists()  # nor the empty folders it made


def test_rescale_and_clamp(tmp_path: Path, separator: Separator) -> None:
    loud = 3 * toy_mix(1.0)
    path = write(tmp_path, loud)
    rescaled = separator.separate_file(path, OutputOptions(directory=tmp_path / "r", two_stems="vocals"))
    clamped = separator.separate_file(path, OutputOptions(directory=tmp_path / "c", two_stems="vocals", clip="clamp"))
    r, _ = audio.load(rescaled["no_vocals"])
    c, _ = audio.load(clamped["no_vocals"])
    assert np.abs(r).max() < 1.0  # scaled down, not clipped
    assert np.isclose(np.abs(c).max(), 1.0, atol=1e-4)  # hard-limited
    assert np.corrcoef(r.ravel(), c.ravel())[0, 1] > 0.9


def test_progress_callback(tmp_path: Path, separator: Separator, song_file: Path) -> None:
    seen: list[tuple[float, float | None]] = []
    separator.separate_file(song_file, OutputOptions(directory=tmp_path), callback=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and abs(done[-1] - 4.0) < 1e-6 and seen[-1][1] == 4.0


def test_filename_template(tmp_path: Path, separator: Separator, song_file: Path) -> None:
    written = separator.separate_file(song_file, OutputOptions(directory=tmp_path, filename="{track}_{stem}.{ext}", fmt="flac"))
    assert written["bass"] == tmp_path / "classical" / "song_bass.flac" and written["bass"].exists()
    with pytest.raises(StemforgeError, match="same file name"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path, filename="{track}.{ext}"))


def test_checkpoint_as_model(tmp_path: Path, song_file: Path) -> None:
    save_checkpoint(build("classical"), tmp_path / "mine.safetensors")
    separator = Separator(tmp_path / "mine.safetensors")
    assert separator.name == "mine" and separator.sources == ["drums", "bass", "other", "vocals"]
    with pytest.raises(ModelError, match="unknown model"):
        Separator("no-such-model")
    with pytest.raises(ModelError, match="not found"):
        Separator(tmp_path / "missing.safetensors")


def test_wiener_option(tmp_path: Path) -> None:
    from stemforge.models import build

    network = build("unet", preset="tiny")
    separator = Separator(network, segment=1.0, wiener=1)
    assert separator.model.wiener_iterations == 1
    stems = separator.separate_array(toy_mix(1.0), SR)
    assert np.abs(sum(stems.values()) - toy_mix(1.0)).max() < 1e-3  # Wiener gains sum to identity
    with pytest.raises(StemforgeError, match="no Wiener post-filter"):
        Separator("classical", wiener=2)


def test_track_lock_makes_runs_take_turns_and_leaves_no_file(tmp_path: Path) -> None:
    import threading
    import time

    from stemforge.separate import TrackLock

    lock = tmp_path / "model" / ".stemforge-x.lock"
    order: list[str] = []

    def second() -> None:
        with TrackLock(lock):
            order.append("second in")

    with TrackLock(lock):
        order.append("first in")
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert order == ["first in"]  # the second waits (flock conflicts between open files, even in one process)
        order.append("first out")
    thread.join(10)
    assert order == ["first in", "first out", "second in"]
    assert list(lock.parent.iterdir()) == []


def test_interrupt_leaves_no_temp_files(tmp_path: Path, song_file: Path) -> None:
    calls = []

    def interrupt(done: float, total: float | None) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    separator = Separator("classical", segment=1.0)
    with pytest.raises(KeyboardInterrupt):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path / "out"), callback=interrupt)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    assert not (tmp_path / "out").exists()  # nor the empty folders it made


def test_absurdly_loud_float_input_gives_an_error_not_nan_stems(tmp_path: Path, separator: Separator) -> None:
    # Bit flips in a float wav's exponents make samples ~1e38: finite, but the separation overflows on them.
    mix = toy_mix(1.0)
    mix[:, SR // 2:SR // 2 + 100] = 3e38
    path = write(tmp_path, mix)
    with pytest.raises(StemforgeError, match="NaN or infinite samples .* reach 3e\\+38"):
        separator.separate_file(path, OutputOptions(directory=tmp_path / "out"))
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    with pytest.raises(StemforgeError, match="NaN or infinite"):
        separator.separate_array(mix, SR)


def test_non_finite_array_is_refused(separator: Separator) -> None:
    mix = toy_mix(1.0)
    mix[1, 100] = np.nan
    with pytest.raises(StemforgeError, match="NaN or infinite samples"):
        separator.separate_array(mix, SR)


def test_input_too_short_for_the_model_rate_is_an_error(tmp_path: Path, separator: Separator) -> None:
    path = write(tmp_path, np.full((2, 1), 0.1, np.float32), rate=192000)  # 1 frame: under one sample at 44.1 kHz
    with pytest.raises(StemforgeError, match=r"in.wav: too short to separate \(1 frames at 192000 Hz"):
        separator.separate_file(path, OutputOptions(directory=tmp_path / "out"))
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_stems_are_encoded_in_parallel_and_the_same_as_one_by_one(tmp_path: Path, separator: Separator,
                                                                  song_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    write = audio.AudioWriter.write
    together = [None]  # with jobs=4, each stem's first block waits until all four stems are being encoded at once

    def spy(self: audio.AudioWriter, block: np.ndarray) -> None:
        if self.fmt == "flac":
            name = threading.current_thread().name
            if together[0] is not None and name not in threads:
                threads.add(name)
                together[0].wait()  # BrokenBarrierError after 20 s if the stems were encoded one after another
            threads.add(name)
        write(self, block)

    monkeypatch.setattr(audio.AudioWriter, "write", spy)
    one = separator.separate_file(song_file, OutputOptions(directory=tmp_path / "one", fmt="flac", jobs=1))
    assert len(threads) == 1
    threads.clear()
    together[0] = threading.Barrier(4, timeout=20)
    four = separator.separate_file(song_file, OutputOptions(directory=tmp_path / "four", fmt="flac", jobs=4))
    assert len(threads) == 4 and all(t.startswith("stemforge-encode") for t in threads)
    assert all(one[s].read_bytes() == four[s].read_bytes() for s in one)


def test_a_failing_stem_stops_the_others_and_leaves_nothing(tmp_path: Path, separator: Separator, song_file: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write = audio.AudioWriter.write

    def failing(self: audio.AudioWriter, block: np.ndarray) -> None:
        if self.fmt == "flac" and self.path.stem == "bass":
            raise audio.AudioError(f"{self.path}: writing failed: no space left on device")
        write(self, block)

    monkeypatch.setattr(audio.AudioWriter, "write", failing)
    with pytest.raises(audio.AudioError, match="bass.flac: writing failed"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path / "out", fmt="flac", jobs=4))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mask,layout", [(None, "5.1"), (0x60F, "5.1(side)")])
def test_keep_channels_writes_the_input_speaker_layout(tmp_path: Path, separator: Separator, mask: int | None,
                                                      layout: str) -> None:
    import av
    import soundfile as sf

    mix = np.concatenate([toy_mix(1.0), 0.5 * toy_mix(1.0), 0.25 * toy_mix(1.0)])
    path = tmp_path / "six.wav"
    if mask is None:  # a plain WAVE header: no layout, so the usual one for six channels
        sf.write(str(path), mix.T, SR, subtype="PCM_16", format="WAV")
    else:
        with audio.AudioWriter(path, SR, 6, "wav", "16", channel_mask=mask) as writer:
            writer.write(mix)
    written = separator.separate_file(path, OutputOptions(directory=tmp_path / "out", keep_channels=True))
    for stem in written.values():
        with av.open(str(stem)) as container:
            assert container.streams.audio[0].layout.name == layout  # ffprobe names it too, not "6 channels"
        assert audio.open_audio(stem).info.channel_mask == (mask or 0x3F)


@pytest.mark.parametrize("options,message", [
    (dict(fmt="mp3", bits="24"), "--bits 24 does not apply to mp3"),
    (dict(fmt="mp3", mp3_bitrate=500), "--mp3-bitrate 500"),
    (dict(fmt="ogg"), "--format ogg"),
    (dict(fmt="flac", bits="32f"), "flac cannot store 32f"),
    (dict(clip="soft"), "--clip-mode soft"),
    (dict(stems=("vocals",), two_stems="vocals"), "not both"),
])
def test_output_options_are_validated_before_reading(tmp_path: Path, separator: Separator, options: dict,
                                                     message: str) -> None:
    with pytest.raises(StemforgeError, match=message):
        OutputOptions(**options).validate()
    with pytest.raises(StemforgeError, match=message):  # even for a file that does not exist: nothing is read
        separator.separate_file(tmp_path / "missing.wav", OutputOptions(directory=tmp_path / "out", **options))
    assert not (tmp_path / "out").exists()


def test_decoding_and_writing_overlap_the_model_and_stop_with_it(tmp_path: Path, separator: Separator,
                                                                 song_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading runs in a reader thread and the stems' writing in a writer thread, beside the model (#18).

    An error in either surfaces in the caller as usual, and no thread outlives the call.
    """
    names: dict[str, set[str]] = {"read": set(), "write": set()}
    blocks, write = audio._SoundFileReader.blocks, audio.AudioWriter.write

    def spy_blocks(self, frames: int):
        for block in blocks(self, frames):
            if self.info.path == song_file:  # not the staging files read back for rescaling
                names["read"].add(threading.current_thread().name)
            yield block

    def spy_write(self: audio.AudioWriter, block: np.ndarray) -> None:
        if self.fmt == "wav" and self.bits == "32f":  # the staging files the stems stream into
            names["write"].add(threading.current_thread().name)
        write(self, block)

    monkeypatch.setattr(audio._SoundFileReader, "blocks", spy_blocks)
    monkeypatch.setattr(audio.AudioWriter, "write", spy_write)
    separator.separate_file(song_file, OutputOptions(directory=tmp_path / "out"))
    assert names == {"read": {"stemforge-read"}, "write": {"stemforge-write"}}

    def failing(self: audio.AudioWriter, block: np.ndarray) -> None:
        raise audio.AudioError(f"{self.path}: writing failed: no space left on device")

    monkeypatch.setattr(audio.AudioWriter, "write", failing)
    with pytest.raises(audio.AudioError, match="writing failed: no space left"):
        separator.separate_file(song_file, OutputOptions(directory=tmp_path / "fail"))
    assert not (tmp_path / "fail").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith(("stemforge-read", "stemforge-write"))]


def test_precision_int8_quantises_a_copy_and_warns_when_it_changes_nothing(caplog) -> None:
    """``Separator(model, precision="int8")`` runs the Transformer Linear layers in int8 on a copy: the caller's
    model stays float32; a model without Transformer layers runs unchanged, with one warning saying so."""
    import logging

    from stemforge.models.compat.roformer import RoFormer, RoFormerConfig

    torch.manual_seed(0)
    model = RoFormer(RoFormerConfig(sources=("vocals", "other"), dim=16, depth=1, dim_head=8, heads=2,
                                    complement=True)).eval()
    fast = Separator(model, precision="int8", segment=1.0)
    int8 = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(m, int8) for m in fast.model.modules())
    assert not any(isinstance(m, int8) for m in model.modules())
    mix = np.random.default_rng(0).standard_normal((2, SR)).astype(np.float32) * 0.1
    exact = Separator(model, segment=1.0).separate_array(mix, SR)
    approx = fast.separate_array(mix, SR)
    for stem in exact:
        noise = np.sum((exact[stem] - approx[stem]) ** 2)
        assert 10 * np.log10(np.sum(exact[stem] ** 2) / noise) > 35
    with caplog.at_level(logging.WARNING, logger="stemforge"):
        Separator("classical", precision="int8")
    assert "changes nothing" in caplog.text
    with pytest.raises(StemforgeError, match="precision"):
        Separator("classical", precision="int4")
    with pytest.raises(StemforgeError, match="torch backend only"):
        Separator(model, precision="int8", backend="onnx")


def test_precision_int8_applies_to_every_spelling_of_the_cpu() -> None:
    """``device="cpu:0"`` is the CPU too: int8 used to be skipped silently there (the check compared the string)."""
    from stemforge.models.compat.roformer import RoFormer, RoFormerConfig

    model = RoFormer(RoFormerConfig(sources=("vocals", "other"), dim=16, depth=1, dim_head=8, heads=2,
                                    complement=True)).eval()
    fast = Separator(model, precision="int8", device="cpu:0", segment=1.0)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in fast.model.modules())


def test_open_separator_runs_the_bundled_unet_without_torch_only_where_it_is_exact(tmp_path: Path) -> None:
    """``auto`` picks the torch-free runtime for plain U-Net checkpoints at the default engine options, else torch."""
    from stemforge.separate import LiteSeparator, open_separator

    lite = open_separator("default", threads=1)
    assert isinstance(lite, LiteSeparator) and lite.name == "default"
    assert lite.sources == Separator("default").sources and lite.sample_rate == SR and lite.channels == 2
    unet = build("unet", preset="tiny").eval()
    save_checkpoint(unet, tmp_path / "mine.safetensors")
    assert isinstance(open_separator(tmp_path / "mine.safetensors"), LiteSeparator)
    assert open_separator(tmp_path / "mine.safetensors").name == "mine"
    for options in ({"backend": "torch"}, {"shifts": 1}, {"segment": 5.0}, {"overlap": 0.5}, {"wiener": 1},
                    {"batch_size": 2}, {"precision": "int8"}, {"backend": "onnx"}):
        assert type(open_separator("default", **options)) is Separator, options
    assert type(open_separator("classical")) is Separator
    save_checkpoint(build("bilstm", preset="tiny").eval(), tmp_path / "bilstm.safetensors")
    assert type(open_separator(tmp_path / "bilstm.safetensors")) is Separator
    with pytest.raises(StemforgeError, match="threads must be >= 1"):  # the torch path's own error
        open_separator("default", threads=0)
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray((tmp_path / "mine.safetensors").read_bytes())
    data[-5] ^= 0x40
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match their recorded sha256"):  # refused as the torch path refuses it
        open_separator(tampered)


@pytest.mark.parametrize("backend,needs,expected", [
    ("auto", "files", "auto"), ("auto", "plan", "auto"), ("auto", "separator", "torch"),
    ("torch", "files", "torch"), ("torch", "plan", "torch"), ("torch", "separator", "torch"),
    ("onnx", "files", "onnx"), ("onnx", "plan", "torch"), ("onnx", "separator", "onnx"),
    ("compile", "files", "compile"), ("compile", "plan", "torch"), ("compile", "separator", "compile"),
])
def test_separator_backend_is_the_one_place_that_decides(backend: str, needs: str, expected: str) -> None:
    """Torch-free only for "auto" and a caller that needs no ``Separator``; planning never builds an export."""
    from stemforge.separate import separator_backend

    assert separator_backend(backend, needs) == expected


def test_open_separator_opens_what_the_caller_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    import stemforge.export
    from stemforge.separate import LiteSeparator, open_separator

    assert isinstance(open_separator("default", needs="plan"), LiteSeparator)
    assert type(open_separator("default", needs="separator")) is Separator  # NI Stems output
    assert type(open_separator("default", needs="files", backend="torch")) is Separator

    def no_export(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("a planning separator must not build a backend")

    monkeypatch.setattr(stemforge.export, "load_backend", no_export)
    planner = open_separator("default", needs="plan", backend="onnx")
    assert type(planner) is Separator and planner.sources == ["drums", "bass", "other", "vocals"]
    with pytest.raises(StemforgeError, match="open_separator needs one of files, plan, separator, not 'lite'"):
        open_separator("default", needs="lite")


@pytest.mark.parametrize("channels,rate,seconds,keep", [(2, SR, 11.3, False), (1, SR, 3.3, False),
                                                        (6, 48000, 2.1, True), (2, 22050, 0.05, False)])
def test_torch_free_path_writes_the_torch_paths_stems(tmp_path: Path, channels: int, rate: int, seconds: float,
                                                      keep: bool) -> None:
    """The bundled model through ``stemforge.lite``: same files, same lengths, samples within 1e-4 of the torch path.

    Odd lengths, mono, 5.1 kept as three stereo pairs, resampling both ways, more than one segment (10 s, 25 %
    overlap) and a clip far shorter than one."""
    from stemforge.separate import open_separator

    song = toy_mix(seconds, rate) if channels == 2 else np.random.default_rng(channels).standard_normal(
        (channels, int(seconds * rate))).astype(np.float32) * 0.2
    path = write(tmp_path, song, rate, name="odd song.wav")
    output = dict(bits="32f", keep_channels=keep, keep_rate=rate != SR)
    done: list[float] = []
    lite = open_separator("default").separate_file(path, OutputOptions(directory=tmp_path / "lite", **output),
                                                    callback=lambda seconds_done, total: done.append(seconds_done))
    torch_path = Separator("default").separate_file(path, OutputOptions(directory=tmp_path / "torch", **output))
    assert [p.relative_to(tmp_path / "lite") for p in lite.values()] == [p.relative_to(tmp_path / "torch") for p in torch_path.values()]
    assert done and done[-1] == pytest.approx(song.shape[1] / rate, abs=2 / SR)  # the progress callback as before
    for stem in lite:
        ours, ours_rate = audio.load(lite[stem])
        theirs, their_rate = audio.load(torch_path[stem])
        assert ours.shape == theirs.shape and ours_rate == their_rate
        assert ours.shape == ((channels if keep else 2), int(seconds * rate) if rate != SR else song.shape[1])
        assert np.abs(theirs).max() > 3e-4  # not silence
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert [p for p in (tmp_path / "lite").rglob("*") if p.name.startswith(".")] == []


def test_torch_free_path_refuses_bad_input_with_the_same_error(tmp_path: Path) -> None:
    from stemforge.separate import open_separator

    lite, torch_path = open_separator("default"), Separator("default")
    loud = toy_mix(1.0)
    loud[:, SR // 2:SR // 2 + 100] = 3e38
    nan = toy_mix(1.0)
    nan[0, 500] = np.nan
    for wav, rate in ((loud, SR), (nan, SR), (np.full((2, 1), 0.1, np.float32), 192000)):
        path = write(tmp_path, wav, rate)
        messages = []
        for separator, out in ((lite, "lite"), (torch_path, "torch")):
            with pytest.raises(StemforgeError) as info, warnings.catch_warnings():
                warnings.simplefilter("error")  # the one-line error only, no numpy overflow warnings on the way
                separator.separate_file(path, OutputOptions(directory=tmp_path / out))
            messages.append(str(info.value))
            assert [p for p in (tmp_path / out).rglob("*") if p.is_file()] == []
        assert messages[0] == messages[1] and "\n" not in messages[0]
    missing = tmp_path / "missing.wav"
    with pytest.raises(StemforgeError, match="missing.wav"):
        lite.separate_file(missing, OutputOptions(directory=tmp_path / "lite"))


def test_without_onnxruntime_the_default_model_runs_on_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from stemforge.separate import open_separator

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    separator = open_separator("default")
    assert type(separator) is Separator and separator.name == "default"


def test_torch_free_separate_array_equals_the_torch_path() -> None:
    from stemforge.separate import open_separator

    mix = toy_mix(2.0, 48000)[:, :95_999]  # another rate, an odd length
    ours, theirs = open_separator("default").separate_array(mix, 48000), Separator("default").separate_array(mix, 48000)
    assert list(ours) == list(theirs)
    for stem in ours:
        assert ours[stem].shape == theirs[stem].shape == mix.shape
        np.testing.assert_allclose(ours[stem], theirs[stem], atol=1e-5)


def test_torch_free_defaults_are_the_separators() -> None:
    """``open_separator`` hands the torch path anything but ``Separator``'s defaults: the two lists must agree."""
    import inspect

    from stemforge.separate import _LITE_DEFAULTS

    defaults = {k: p.default for k, p in inspect.signature(Separator.__init__).parameters.items()}
    assert {k: defaults[k] for k in _LITE_DEFAULTS} == _LITE_DEFAULTS
