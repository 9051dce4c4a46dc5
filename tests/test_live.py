"""``stemforge.live`` against a real JACK server: ``jackd -d dummy`` started and stopped by each test.

Every server gets a unique name (``jackd -n``), so tests never collide with each other or with a user's JACK.
CI needs the Debian package jackd2 (and the ``live`` extra: JACK-Client); without them these tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.live import LiveError, LiveOptions, LiveSeparator
from stemforge.models.registry import build
from stemforge.stream import StreamingSeparator, StreamOptions

if shutil.which("jackd") is None:
    pytest.skip("jackd (Debian package jackd2) is not installed", allow_module_level=True)
try:
    import jack
except (ImportError, OSError) as exc:  # OSError: JACK-Client without libjack
    pytest.skip(f"JACK-Client (the 'live' extra) or libjack is missing: {exc}", allow_module_level=True)


def _start_jackd(tmp_path: Path, rate: int = 44100, period: int = 1024) -> tuple[str, subprocess.Popen]:
    name = f"sf-test-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    log = open(tmp_path / f"{name}.log", "w")
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    jack.set_error_function(lambda message: None)
    deadline = time.monotonic() + 15
    while True:
        try:
            jack.Client("probe", no_start_server=True, servername=name).close()
            return name, proc
        except jack.JackOpenError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"jackd did not start: {(tmp_path / f'{name}.log').read_text()}")
            time.sleep(0.1)


@pytest.fixture
def jack_server(tmp_path):
    """A dummy-driver JACK server at 44.1 kHz with a 1024-sample period; yields its name."""
    name, proc = _start_jackd(tmp_path)
    yield name
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("unet-causal", preset="tiny", depth=5).eval()


def test_file_played_through_jack_comes_out_as_the_offline_stream(jack_server, model, tmp_path):
    """A test client plays a file into stemforge's input; another records every port. The recorded stems equal a
    fresh stream of the recorded input (with the periods stemforge ran before the recording started), with the
    gain and mute applied, and the server reported no xrun."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * 44100)) / 44100
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))).astype(np.float32),
             44100, subtype="FLOAT")
    audio, _ = sf.read(song, dtype="float32", always_2d=True)
    audio = audio.T

    live = LiveSeparator(StreamingSeparator(model), LiveOptions(server=jack_server, gains_db={"bass": -6.0},
                                                                muted=["drums"]))
    live.start()
    player = jack.Client("player", no_start_server=True, servername=jack_server)
    recorder = jack.Client("recorder", no_start_server=True, servername=jack_server)
    try:
        play_ports = [player.outports.register(f"out_{c}") for c in "LR"]
        position = [0]
        playing = [False]  # set once every connection is made

        @player.set_process_callback
        def play(frames):
            if not playing[0]:
                for port in play_ports:
                    port.get_array().fill(0.0)
                return
            for c, port in enumerate(play_ports):
                chunk = audio[c, position[0]:position[0] + frames]
                out = port.get_array()
                out.fill(0.0)
                out[:chunk.size] = chunk
            position[0] += frames

        sources = live.separator.sources
        rec_in = [recorder.inports.register(f"in_{c}") for c in "LR"]
        rec_stems = {s: [recorder.inports.register(f"{s}_{c}") for c in "LR"] for s in sources}
        recorded: list[tuple[int, np.ndarray, dict[str, np.ndarray]]] = []

        @recorder.set_process_callback
        def record(frames):
            recorded.append((recorder.last_frame_time, np.stack([p.get_array().copy() for p in rec_in]),
                             {s: np.stack([p.get_array().copy() for p in ports]) for s, ports in rec_stems.items()}))

        recorder.activate()
        player.activate()
        for c in range(2):
            player.connect(play_ports[c], live.inputs[c])
            player.connect(play_ports[c], rec_in[c])  # what stemforge hears, recorded too
            for s in sources:
                recorder.connect(live.outputs[s][c], rec_stems[s][c])
        playing[0] = True
        deadline = time.monotonic() + 30
        while position[0] < audio.shape[1] + live.latency_samples + 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
        player.deactivate()
        recorder.deactivate()
    finally:
        player.close()
        recorder.close()
        live.stop()
    assert live.error is None
    assert live.xruns == 0, f"xruns at periods {live.xrun_periods} of {live.blocks}"
    assert position[0] >= audio.shape[1] + live.latency_samples, "the server did not run in time"

    first = recorded[0][0]
    assert all(frame == first + i * 1024 for i, (frame, _, _) in enumerate(recorded)), "a period was skipped"
    heard = np.concatenate([r[1] for r in recorded], axis=-1)
    got = {s: np.concatenate([r[2][s] for r in recorded], axis=-1) for s in sources}
    # stemforge ran (first - live.first_frame) samples of silence before the recording began.
    ahead = first - live.first_frame
    assert ahead >= 0 and ahead % 1024 == 0
    reference = StreamingSeparator(model)
    reference.process(np.zeros((2, ahead), np.float32))
    expected = reference.process(heard)
    start = int(np.flatnonzero(np.abs(heard).sum(0))[0])  # the file really was played, and heard
    np.testing.assert_allclose(heard[:, start:start + audio.shape[1]], audio, atol=0)
    gains = {"drums": 0.0, "bass": 10 ** (-6 / 20), "other": 1.0, "vocals": 1.0}
    for s in sources:
        np.testing.assert_allclose(got[s], expected[s] * gains[s], atol=1e-5, rtol=0)
    assert np.abs(got["vocals"][:, start + live.latency_samples:]).max() > 1e-3  # stems are not silence


def test_no_server_is_one_line(model):
    live = LiveSeparator(StreamingSeparator(model), LiveOptions(server=f"sf-absent-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(LiveError, match="cannot connect to JACK server"):
        live.start()


def test_unknown_port_is_one_line(jack_server, model):
    live = LiveSeparator(StreamingSeparator(model), LiveOptions(server=jack_server, connect_in=["nope:a", "nope:b"]))
    with pytest.raises(LiveError, match="unknown JACK port 'nope:a'.*system:capture_1"):
        live.start()
    assert live.client is None  # closed again


def test_physical_auto_connect(jack_server, model):
    with LiveSeparator(StreamingSeparator(model), LiveOptions(server=jack_server, connect_in=["physical"],
                                                              connect_out={"vocals": ["physical"]})) as live:
        assert {p.name for p in live.client.get_all_connections(live.inputs[0])} == {"system:capture_1"}
        assert {p.name for p in live.client.get_all_connections(live.outputs["vocals"][1])} == {"system:playback_2"}


def test_too_small_period_is_one_line(jack_server):
    """The default U-Net streams by whole segments: a 4 s segment cannot be separated inside a 23 ms period."""
    slow = StreamingSeparator(build("unet", preset="tiny").eval(), StreamOptions(segment=4.0))
    with pytest.raises(LiveError, match="1024-sample period is too small"):
        LiveSeparator(slow, LiveOptions(server=jack_server)).start()


def test_sample_rate_mismatch_is_one_line(tmp_path, model):
    name, proc = _start_jackd(tmp_path, rate=48000)
    try:
        with pytest.raises(LiveError, match="48000 Hz but the model separates at 44100 Hz"):
            LiveSeparator(StreamingSeparator(model), LiveOptions(server=name)).start()
    finally:
        proc.terminate()
        proc.wait(10)


def test_unknown_stem_is_one_line(model):
    with pytest.raises(LiveError, match="unknown stem 'kazoo'"):
        LiveSeparator(StreamingSeparator(model), LiveOptions(muted=["kazoo"]))


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    from stemforge.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("model") / "causal.safetensors"
    save_checkpoint(model, path)
    return path


def test_cli_runs_headless_and_reports(jack_server, checkpoint, capsys):
    from stemforge.cli import main

    assert main(["live", "-n", str(checkpoint), "--server", jack_server, "--no-screen", "--seconds", "0.5",
                 "--connect-in", "physical", "--connect-out", "all=physical", "--gain", "bass=-3", "--mute", "drums"]) == 0
    err = capsys.readouterr().err
    assert "0 xruns" in err and "latency 2047 samples (46.4 ms)" in err


def test_cli_errors_are_one_line(jack_server, checkpoint, capsys):
    from stemforge.cli import main

    assert main(["live", "-n", str(checkpoint), "--server", f"sf-absent-{uuid.uuid4().hex[:8]}", "--no-screen"]) == 1
    assert main(["live", "-n", str(checkpoint), "--server", jack_server, "--no-screen",
                 "--connect-out", "vocals=system:nowhere,system:playback_2"]) == 1
    assert main(["live", "-n", str(checkpoint), "--gain", "bass=loud"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "cannot connect to JACK server" in err[0] and "unknown JACK port 'system:nowhere'" in err[1]
