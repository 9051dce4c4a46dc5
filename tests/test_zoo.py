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

from stemforge import zoo
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
    monkeypatch.setattr(zoo, "CATALOGUE", (_entry("https://example.invalid/x/ok.bin", SHA),))
    parser = argparse.ArgumentParser()
    zoo.register_subcommands(parser.add_subparsers())
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
    with pytest.raises(ModelError, match=r"not downloaded: run 'stemforge models download htdemucs'.*955717e8"):
        zoo.resolve_model("htdemucs")
    assert zoo.resolve_model("not-a-model-or-file") is None
    from stemforge.models.compat import load_pretrained

    with pytest.raises(ModelError, match="neither a file nor a zoo model"):
        load_pretrained("not-a-model-or-file")


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
    monkeypatch.setattr(zoo, "CATALOGUE", (entry,))
    model = zoo.resolve_model("mmi", cache_dir=tmp_path)
    assert model is not None and model.architecture == "hdemucs" and model.default_segment == 44
    assert zoo.resolve_model(folder / f"75fc33f5-{digest}.th") is not None
