"""Model zoo: catalogue facts, and downloads against a local HTTP server only (resume, bad hash, 404, timeout)."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import re
import threading
import time
from pathlib import Path

import pytest
import torch

from stemforge import hub as zoo
from stemforge.hub import cache, catalogue
from stemforge.errors import ModelError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /ok.bin (honouring Range), 404 elsewhere, and /slow.bin that stalls mid-body."""

    requests: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        _Handler.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if self.path.endswith("/slow.bin"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            time.sleep(2.0)
            return
        if self.path.endswith("/long.bin"):  # more bytes than the catalogue says, no Content-Length
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(PAYLOAD)
            except OSError:  # the client hung up, as it should
                pass
            return
        if self.path.endswith("/announced.bin"):  # a Content-Length larger than the catalogue's size
            self.send_response(200)
            self.send_header("Content-Length", str(2 * len(PAYLOAD)))
            self.end_headers()
            try:
                self.wfile.write(PAYLOAD * 2)
            except OSError:
                pass
            return
        if not self.path.endswith("/ok.bin"):
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _entry(url: str, sha: str | None) -> zoo.ZooEntry:
    return zoo.ZooEntry(name="toy", architecture="test", stems=("a",), files=(zoo.ZooFile(url, sha, len(PAYLOAD)),),
                        licence=None, sdr=None, sdr_source=None)


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_hash_and_resumes(server, tmp_path) -> None:
    entry = _entry(f"{server}/files/ok.bin", SHA[:8])
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "ok.bin.part").write_bytes(PAYLOAD[:300_000])  # an interrupted earlier download
    assert zoo.download(entry, tmp_path, progress=False) == folder
    assert (folder / "ok.bin").read_bytes() == PAYLOAD
    assert not (folder / "ok.bin.part").exists()
    assert _Handler.requests[-1]["range"] == "bytes=300000-"
    assert zoo.is_downloaded(entry, tmp_path)
    zoo.download(entry, tmp_path, progress=False)  # already there: no new request
    assert len(_Handler.requests) == 1


def test_bad_hash_is_deleted(server, tmp_path) -> None:
    entry = _entry(f"{server}/files/ok.bin", "deadbeef")
    with pytest.raises(ModelError, match="does not match the published deadbeef"):
        zoo.download(entry, tmp_path, progress=False)
    assert not (tmp_path / "toy" / "ok.bin").exists()


def test_404_and_timeout_and_offline(server, tmp_path) -> None:
    with pytest.raises(ModelError, match="HTTP 404"):
        zoo.download(_entry(f"{server}/files/missing.bin", None), tmp_path, progress=False)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="timed out.*run again to resume"):
        zoo.download(_entry(f"{server}/files/slow.bin", None), tmp_path, progress=False, timeout=0.5)
    assert time.perf_counter() - start < 2.0
    assert (tmp_path / "toy" / "slow.bin.part").stat().st_size == 1000  # kept for resuming
    # Nothing listens on this port: a one-line error, no traceback.
    dead = server.rsplit(":", 1)[0] + ":9"
    with pytest.raises(ModelError, match="download of .* failed"):
        zoo.download(_entry(f"{dead}/ok.bin", None), tmp_path, progress=False, timeout=1)


def test_mirror_and_cli(server, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(catalogue, "CATALOGUE", (_entry("https://example.invalid/x/ok.bin", SHA),))
    parser = argparse.ArgumentParser()
    from stemforge.commands.models import register_subcommands

    register_subcommands(parser.add_subparsers())
    args = parser.parse_args(["download", "toy", "--cache-dir", str(tmp_path), "--mirror", f"{server}/m", "-q"])
    assert args.func(args) == 0
    assert (tmp_path / "toy" / "ok.bin").read_bytes() == PAYLOAD
    args = parser.parse_args(["list", "-v", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "yes" in out and SHA in out
    with pytest.raises(ModelError, match="unknown zoo model"):
        args = parser.parse_args(["download", "nope"])
        args.func(args)


def test_catalogue_facts_come_from_the_reference_packages() -> None:
    """Every demucs / openunmix URL and hash prefix in the catalogue appears in the reference package sources."""
    import importlib.util

    specs = [importlib.util.find_spec(name) for name in ("demucs", "openunmix")]
    if None in specs:
        pytest.skip("reference packages demucs / openunmix not installed")
    demucs_dir = Path(specs[0].origin).parent
    files_txt = (demucs_dir / "remote" / "files.txt").read_text()
    root_url = re.search(r'ROOT_URL = "([^"]+)"', (demucs_dir / "pretrained.py").read_text()).group(1)
    umx_init = Path(specs[1].origin).read_text()
    for entry in zoo.list_checkpoints():
        if entry.architecture not in ("htdemucs", "hdemucs", "openunmix"):
            continue
        assert entry.files and entry.stems
        for file in entry.files:
            if entry.architecture == "openunmix":
                assert file.url in umx_init
            else:
                assert file.url == root_url + "hybrid_transformer/" + file.name and file.name in files_txt
            assert file.name.rsplit("-", 1)[1].startswith(file.sha256)
        if entry.manifest:
            remote = demucs_dir / "remote" / entry.manifest[0]
            import yaml

            assert yaml.safe_load(remote.read_text()) == yaml.safe_load(entry.manifest[1])


def test_not_downloaded_names_say_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match=r"not downloaded: stemforge.hub.download\('htdemucs'\).*955717e8") as info:
        zoo.resolve_model("htdemucs")
    assert "run 'stemforge models download htdemucs'" in info.value.cli_message  # what the CLI prints
    assert zoo.resolve_model("not-a-model-or-file") is None
    from stemforge.models.compat import load_pretrained

    with pytest.raises(ModelError, match="checkpoint not found"):
        load_pretrained("not-a-model-or-file")  # files only: names are the hub's


def test_resolve_downloaded_zoo_name(tmp_path, monkeypatch) -> None:
    """A downloaded demucs entry (package + generated bag yaml) resolves to our model with the yaml's segment."""
    pytest.importorskip("demucs.hdemucs")
    from demucs.hdemucs import HDemucs as RefHDemucs
    from demucs.states import get_state

    kwargs = dict(sources=["drums", "bass", "other", "vocals"], channels=4, depth=6)
    ref = RefHDemucs(**kwargs)
    folder = tmp_path / "mmi"
    folder.mkdir()
    package = folder / "x.th"
    torch.save({"klass": RefHDemucs, "args": (), "kwargs": kwargs, "state": get_state(ref, None, True)}, package)
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:8]
    package.rename(folder / f"75fc33f5-{digest}.th")
    entry = zoo.ZooEntry("mmi", "hdemucs", ("drums", "bass", "other", "vocals"),
                         (zoo.ZooFile(f"https://example.invalid/75fc33f5-{digest}.th", digest),), None, None, None,
                         manifest=("mmi.yaml", "models: ['75fc33f5']\nsegment: 44\n"))
    monkeypatch.setattr(catalogue, "CATALOGUE", (entry,))
    model = zoo.resolve_model("mmi", cache_dir=tmp_path)
    assert model is not None and model.architecture == "hdemucs" and model.default_segment == 44
    assert zoo.resolve_model(folder / f"75fc33f5-{digest}.th") is not None


def test_every_entry_is_complete_and_loadable_by_name() -> None:
    """Names unique, https URLs, hashes hex with a stated origin, SDR with a source, a file to load."""
    import json

    entries = zoo.list_checkpoints()
    assert len({e.name for e in entries}) == len(entries)
    archs = {e.architecture for e in entries}
    assert {"htdemucs", "hdemucs", "openunmix", "compat_roformer", "mdxnet_onnx"} <= archs
    for entry in entries:
        names = [f.name for f in entry.files]
        assert len(set(names)) == len(names) and entry.stems
        for file in entry.files:
            assert file.url.startswith("https://")
            if file.sha256 is not None:
                assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", file.sha256)
                assert len(file.sha256) == 8 or file.sha256_source  # a full hash says who published it
        assert (entry.sdr is None) == (entry.sdr_source is None)
        if entry.load_file:
            assert entry.load_file in names
        if entry.architecture == "compat_roformer":
            assert entry.load_file.endswith(".ckpt") and entry.config_file in names and entry.config_file.endswith(".yaml")
            assert re.search(r"/[0-9a-f]{40}/configs/", next(f.url for f in entry.files if f.name.endswith(".yaml")))
        if entry.architecture == "mdxnet_onnx":
            settings = json.loads(entry.manifest[1])
            assert entry.manifest[0] == entry.load_file.replace(".onnx", ".json")
            assert (settings["target"], settings["complement"]) == entry.stems
            assert settings["dim_f"] <= settings["n_fft"] // 2 + 1 and settings["dim_t"] in (256, 512)


def _as_placed(monkeypatch, entry: zoo.ZooEntry, folder: Path) -> None:
    """Make the catalogue's ``entry`` describe the stand-in files a test put in its folder (their real hashes)."""
    import dataclasses

    files = tuple(dataclasses.replace(f, sha256=hashlib.sha256((folder / f.name).read_bytes()).hexdigest(),
                                      size=(folder / f.name).stat().st_size) for f in entry.files)
    monkeypatch.setattr(catalogue, "CATALOGUE", tuple(dataclasses.replace(e, files=files) if e.name == entry.name else e
                                                for e in catalogue.CATALOGUE))


def test_downloaded_mdxnet_entry_gets_uvr_settings(tmp_path, monkeypatch) -> None:
    """A catalogued UVR graph placed in the cache loads with the entry's n_fft, dim_t and compensate."""
    pytest.importorskip("onnxruntime")
    entry = zoo.find("mdx_kara_2")
    folder = zoo.entry_dir(entry, tmp_path)
    folder.mkdir(parents=True)

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1.0

    torch.onnx.export(Identity(), (torch.randn(1, 4, 2048, 256),), str(folder / entry.load_file),
                      input_names=["input"], output_names=["output"], dynamo=False)
    _as_placed(monkeypatch, entry, folder)  # a stand-in graph, not UVR's file
    model = zoo.load_zoo("mdx_kara_2", tmp_path)
    config = model.config
    assert (config.n_fft, config.hop, config.dim_f, config.dim_t, config.compensate) == (5120, 1024, 2048, 256, 1.065)
    assert model.sources == ["instrumental", "vocals"]
    assert (folder / "UVR_MDXNET_KARA_2.json").is_file()


MEL_SMALL_YAML = """\
audio: {chunk_size: 352800, num_channels: 2, sample_rate: 44100}
model: {dim: 16, depth: 1, stereo: true, num_stems: 1, time_transformer_depth: 1, freq_transformer_depth: 1,
  num_bands: 60, dim_head: 8, heads: 2, attn_dropout: 0, ff_dropout: 0, flash_attn: true, dim_freqs_in: 1025,
  sample_rate: 44100, stft_n_fft: 2048, stft_hop_length: 441, stft_win_length: 2048, stft_normalized: false,
  mask_estimator_depth: 2}
training: {instruments: [vocals, other], target_instrument: vocals}
"""


def test_downloaded_roformer_entry_finds_its_differently_named_yaml(tmp_path, monkeypatch) -> None:
    """mel_roformer_kim's checkpoint and config have unrelated names; the entry still loads from its folder."""
    import yaml

    from parity_helpers import require
    from stemforge.models.compat.io import config_yaml_loader as _config_yaml_loader
    from stemforge.models.compat.roformer import RoFormer

    require("bs_roformer")
    from bs_roformer import MelBandRoformer

    entry = zoo.find("mel_roformer_kim")
    folder = zoo.entry_dir(entry, tmp_path)
    folder.mkdir(parents=True)
    config_name = next(f.name for f in entry.files if f.name.endswith(".yaml"))
    (folder / config_name).write_text(MEL_SMALL_YAML)
    kwargs = yaml.load(MEL_SMALL_YAML, Loader=_config_yaml_loader())["model"]
    # The community configs come from a code base whose Mel-RoFormer defaults to no linear attention layers.
    reference = MelBandRoformer(**kwargs, linear_transformer_depth=0)
    torch.save({"state_dict": reference.state_dict()}, folder / entry.load_file)
    assert zoo.is_downloaded(entry, tmp_path)
    _as_placed(monkeypatch, entry, folder)  # stand-in weights, not the published checkpoint
    model = zoo.resolve_model("mel_roformer_kim", tmp_path)
    assert isinstance(model, RoFormer) and model.sources == ["vocals", "other"] and model.config.bands == "mel"
    (folder / config_name).write_text("model: [dim: 16\n")  # a damaged config is named as such, not searched past
    with pytest.raises(ModelError, match=f"{re.escape(config_name)}: .*the catalogue says"):
        zoo.resolve_model("mel_roformer_kim", tmp_path)  # refused by the cache check before the loader reads it
    _as_placed(monkeypatch, entry, folder)
    with pytest.raises(ModelError, match=f"cannot read config .*{re.escape(config_name)}"):
        zoo.resolve_model("mel_roformer_kim", tmp_path)


# ------------------------------------------------------------- verified publishing, size limits, load checks, TLS


@pytest.fixture
def publishes(monkeypatch):
    """Every rename done with Path.replace, as (target name, sha256 of the bytes published)."""
    seen: list[tuple[str, str]] = []
    original = Path.replace

    def spy(self, target):
        seen.append((Path(target).name, hashlib.sha256(Path(self).read_bytes()).hexdigest()))
        return original(self, target)

    monkeypatch.setattr(Path, "replace", spy)
    return seen


def test_only_verified_files_get_the_final_name(server, tmp_path, publishes) -> None:
    with pytest.raises(ModelError, match="does not match the published deadbeef"):
        zoo.download(_entry(f"{server}/files/ok.bin", "deadbeef"), tmp_path, progress=False)
    assert [name for name, _ in publishes if name == "ok.bin"] == []  # never published, not published-then-deleted
    assert not list((tmp_path / "toy").glob("ok.bin*"))
    zoo.download(_entry(f"{server}/files/ok.bin", SHA), tmp_path, progress=False)
    assert ("ok.bin", SHA) in publishes


def test_more_bytes_than_the_catalogue_says_is_refused(server, tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError, match=f"sent more than the expected {len(PAYLOAD)} bytes"):
        zoo.download(_entry(f"{server}/files/long.bin", None), tmp_path, progress=False)
    assert time.perf_counter() - start < 5.0
    with pytest.raises(ModelError, match=f"offers {2 * len(PAYLOAD)} bytes, the catalogue says {len(PAYLOAD)}"):
        zoo.download(_entry(f"{server}/files/announced.bin", None), tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == []


def test_hand_placed_file_with_the_wrong_hash_is_refused(tmp_path) -> None:
    """A valid ONNX graph put in the cache by hand, but not the catalogue's file: load refuses it in one line."""
    pytest.importorskip("onnxruntime")
    entry = zoo.find("mdx_kara_2")
    folder = zoo.entry_dir(entry, tmp_path)
    folder.mkdir(parents=True)
    torch.onnx.export(torch.nn.Identity(), (torch.randn(1, 4, 2048, 256),), str(folder / entry.load_file),
                      input_names=["input"], output_names=["output"], dynamo=False)
    with pytest.raises(ModelError) as info:
        zoo.load_zoo("mdx_kara_2", tmp_path)
    message = str(info.value)
    assert "\n" not in message and entry.load_file in message
    assert re.search("the catalogue says 52786726|does not match the published bf32e151", message)
    assert (folder / entry.load_file).exists()  # the user's file is left alone


def test_load_checks_hash_once_per_file_state(tmp_path, monkeypatch) -> None:
    """An unchanged file is not hashed again (stamp: size, mtime, ctime); a changed one is, and is refused."""
    import os

    folder = tmp_path / "toy"
    folder.mkdir()
    path = folder / "ok.bin"
    path.write_bytes(PAYLOAD)
    file = zoo.ZooFile("https://example.invalid/ok.bin", SHA, len(PAYLOAD))
    hashed = []
    original = cache._sha256
    monkeypatch.setattr(cache, "_sha256", lambda p: hashed.append(p) or original(p))
    assert zoo.verify(file, path) == SHA
    assert zoo.verify(file, path) == SHA
    assert len(hashed) == 1
    stat = path.stat()
    path.write_bytes(PAYLOAD[::-1])  # same size, different bytes, mtime put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ModelError, match="does not match the published"):
        zoo.verify(file, path)
    assert len(hashed) == 2


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate made here (not trusted by the client)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_tls_failure_says_so(tls_server, tmp_path) -> None:
    with pytest.raises(ModelError) as info:
        zoo.download(_entry(f"{tls_server}/files/ok.bin", SHA), tmp_path / "cache", progress=False, timeout=5)
    message = str(info.value)
    assert "TLS certificate verification failed for 127.0.0.1" in message
    assert "offline" not in message and "\n" not in message
    assert not (tmp_path / "cache" / "toy" / "ok.bin").exists()
