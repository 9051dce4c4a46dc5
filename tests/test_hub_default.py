"""The best model by default (``hub.best``): ``stemforge separate`` without ``-n``.

A verified checkpoint in the cache is chosen; one that is missing is downloaded (verified, with a progress bar)
where a server answers; an offline machine falls back to the bundled model at once, with a one-line notice;
``--offline`` and ``STEMFORGE_OFFLINE=1`` force the bundled model; a corrupt cached file is never chosen. The
zoo entry is the test's own: a tiny, real Open-Unmix checkpoint served by a local HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge import hub
from stemforge.cli import main
from stemforge.hub import best, cache, catalogue

TARGETS = ("vocals", "drums", "bass", "other")
# The toy Open-Unmix runs with --segment 1: its default 30 s segment would pad a 0.5 s song 60-fold.


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def send_head(self):  # noqa: ANN201 - http.server API
        _Quiet.requests.append(f"{self.command} {self.path}")
        return super().send_head()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A tiny Open-Unmix checkpoint as it is published: ``<target>-<sha256 prefix>.pth`` per target."""
    from stemforge.models.compat.openunmix import OpenUnmix, OpenUnmixConfig

    torch.manual_seed(1)
    model = OpenUnmix(OpenUnmixConfig(sources=TARGETS, n_fft=512, hop=128, hidden_size=8, nb_layers=1, max_bin=64))
    folder = tmp_path_factory.mktemp("published")
    for target, net in model.target_models.items():
        tmp = folder / f"{target}.tmp"
        torch.save(net.state_dict(), tmp)
        tmp.rename(folder / f"{target}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")
    return folder


@pytest.fixture
def server(published):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(published)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Quiet.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _use_toy(monkeypatch, published: Path, root: str, sha256: dict[str, str] | None = None) -> hub.ZooEntry:
    """Make the test's own catalogue entry ``toyumx`` (files under ``root``) the only preferred model."""
    files = tuple(hub.ZooFile(f"{root}/{f.name}", (sha256 or {}).get(f.name, hashlib.sha256(f.read_bytes()).hexdigest()),
                              f.stat().st_size, "the test") for f in sorted(published.glob("*.pth")))
    entry = hub.ZooEntry("toyumx", "openunmix", TARGETS, files, None, None, None)
    monkeypatch.setattr(catalogue, "CATALOGUE", (entry, *catalogue.CATALOGUE))
    monkeypatch.setattr(best, "PREFERRED", ("toyumx",))
    return entry


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    """An empty zoo cache, no offline switch, no remembered probe."""
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STEMFORGE_OFFLINE", raising=False)
    monkeypatch.setattr(cache, "_probes", {})


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    t = np.arange(22050) / 44100
    sf.write(path, np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32) * 0.3, 44100)
    return path


def _plant(published: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "cache" / "toyumx"
    shutil.copytree(published, folder)
    return folder


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_a_verified_cached_checkpoint_is_chosen(tmp_path, published, song, monkeypatch, capsys):
    _use_toy(monkeypatch, published, "http://127.0.0.1:9")  # nothing listens there: the cache alone must do
    _plant(published, tmp_path)
    assert hub.best_model() == "toyumx" and cache._probes == {}  # no network asked
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--segment", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "toyumx" / "song").iterdir()) == sorted(f"{t}.wav" for t in TARGETS)
    assert _warnings(capsys.readouterr().err) == []
    assert not (tmp_path / "out" / "default").exists()


def test_downloaded_on_first_use_verified_with_a_progress_bar(tmp_path, published, server, song, monkeypatch, capsys):
    _use_toy(monkeypatch, published, server)
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--segment", "1"]) == 0
    err = capsys.readouterr().err
    assert _warnings(err) == ["warning: downloading toyumx (0 MiB) once, the best model for separating; --offline "
                              "uses the bundled model instead"]
    assert "vocals-" in err and "B/s" in err  # tqdm's download bar
    for file in published.glob("*.pth"):
        cached = tmp_path / "cache" / "toyumx" / file.name
        assert cached.read_bytes() == file.read_bytes() and cached.with_name(file.name + ".verified.json").is_file()
    assert (tmp_path / "out" / "toyumx" / "song" / "vocals.wav").is_file()
    assert sum(r.startswith("GET") for r in _Quiet.requests) == len(TARGETS)
    # The second run finds it in the cache: no request at all.
    monkeypatch.setattr(cache, "_probes", {})
    _Quiet.requests = []
    assert hub.best_model() == "toyumx" and _Quiet.requests == []


def test_a_download_that_fails_its_hash_falls_back_to_the_bundled_model(tmp_path, published, server, monkeypatch, caplog):
    entry = _use_toy(monkeypatch, published, server, sha256={f.name: "0" * 64 for f in published.glob("vocals-*")})
    assert hub.best_model(progress=False) == hub.DEFAULT_MODEL
    assert any("download of toyumx failed" in r.getMessage() and "does not match" in r.getMessage() for r in caplog.records)
    assert not any((tmp_path / "cache" / "toyumx" / f.name).exists() for f in entry.files if f.name.startswith("vocals"))


def test_no_network_falls_back_at_once_with_a_notice(tmp_path, published, song, monkeypatch, capsys):
    """A resolver that hangs (DNS configured, no route) costs the probe's 1.5 s, not the system's timeout."""
    _use_toy(monkeypatch, published, "https://zoo.example.org/files")
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):  # noqa: ANN001, ANN202
        if host == "zoo.example.org":
            time.sleep(10)
            raise socket.gaierror("timed out")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    start = time.perf_counter()
    assert main(["separate", str(song), "-o", str(tmp_path / "out")]) == 0
    assert time.perf_counter() - start < 10  # separation included; the choice itself is timed below
    err = capsys.readouterr().err
    assert _warnings(err) == [
        "warning: using the bundled model: toyumx separates better but is not downloaded and there is no network to "
        f"fetch it; run 'stemforge models download toyumx' where there is internet (or copy its files into "
        f"{tmp_path / 'cache' / 'toyumx'}), then separate again; --offline or STEMFORGE_OFFLINE=1 hides this notice"]
    assert (tmp_path / "out" / "default" / "song" / "vocals.wav").is_file()
    monkeypatch.setattr(cache, "_probes", {})
    start = time.perf_counter()
    assert hub.best_model() == hub.DEFAULT_MODEL
    assert time.perf_counter() - start < 2.0
    start = time.perf_counter()
    assert hub.best_model() == hub.DEFAULT_MODEL  # remembered for the run: no second probe
    assert time.perf_counter() - start < 0.1


def test_offline_flag_and_environment_force_the_bundled_model(tmp_path, published, server, song, monkeypatch, capsys):
    _use_toy(monkeypatch, published, server)
    _plant(published, tmp_path)
    assert main(["separate", str(song), "-o", str(tmp_path / "a"), "--offline"]) == 0
    monkeypatch.setenv("STEMFORGE_OFFLINE", "1")
    assert hub.best_model() == hub.DEFAULT_MODEL
    assert main(["separate", str(song), "-o", str(tmp_path / "b")]) == 0
    monkeypatch.setenv("STEMFORGE_OFFLINE", "0")
    assert hub.best_model() == "toyumx"
    assert main(["separate", str(song), "-o", str(tmp_path / "c"), "-n", "default"]) == 0  # asked for by name
    for run in ("a", "b", "c"):
        assert [p.name for p in (tmp_path / run).iterdir()] == ["default"]
    assert _warnings(capsys.readouterr().err) == [] and _Quiet.requests == []


def test_a_corrupt_cached_file_is_never_chosen(tmp_path, published, server, monkeypatch, caplog):
    _use_toy(monkeypatch, published, server)
    folder = _plant(published, tmp_path)
    victim = next(folder.glob("drums-*.pth"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off
    victim.write_bytes(bytes(data))
    assert hub.best_model() == hub.DEFAULT_MODEL
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("using the bundled model, not toyumx: ")
    assert str(victim) in messages[0] and "does not match" in messages[0]
    assert victim.read_bytes() == bytes(data)  # left alone, as verify does, for the user to look at
    assert _Quiet.requests == []  # and nothing fetched over it
