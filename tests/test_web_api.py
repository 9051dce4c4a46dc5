"""``stemforge.web.app`` through httpx (FastAPI's TestClient): every route, the limits and the errors.

One app with one real worker process serves the module (jobs really are separated, by the CLI's engine);
the limit, token and queue tests use apps whose lifespan is not entered, so no worker ever takes their jobs.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'stemforge[web]')")
pytest.importorskip("filetype", reason="the web extra is not installed (pip install 'stemforge[web]')")
with warnings.catch_warnings():  # starlette's TestClient asks for httpx2 over httpx; httpx is what we test with
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

import stemforge  # noqa: E402
from stemforge.audio import save  # noqa: E402
from stemforge.errors import StemforgeError  # noqa: E402
from stemforge.web.app import create_app  # noqa: E402
from stemforge.web.config import ServeConfig  # noqa: E402
from stemforge.web.worker import MODELS_KEY  # noqa: E402
from toy_song import toy_mix  # noqa: E402

SR = 44100
SRC = str(Path(stemforge.__file__).parents[1])
MODELS = [{"name": "default", "stems": ["drums", "bass", "other", "vocals"], "sample_rate": SR, "default": True},
          {"name": "repet", "stems": ["vocals", "other"], "sample_rate": SR, "default": False}]


def wav_bytes(seconds: float, seed: int = 0, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, toy_mix(seconds, SR, seed).T, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


def post(client: TestClient, data: bytes, name: str = "song.wav", **fields: str):
    return client.post("/api/jobs", files={"file": (name, data, "application/octet-stream")}, data=fields)


def wait_done(client: TestClient, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout} s"
        time.sleep(0.1)


def assert_error(response, status: int, code: str, words: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert words.lower() in body["error"].lower(), body["error"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """An app with one worker process, its client and its config."""
    config = ServeConfig(data=tmp_path_factory.mktemp("serve"), workers=1, threads=1, max_upload_mb=2.0,
                         max_seconds=25.0, queue=8)
    with TestClient(create_app(config)) as client:
        yield client, config


def idle_app(tmp_path: Path, **settings) -> tuple[TestClient, object]:
    """An app whose workers never start: jobs stay queued. The model list is published by hand."""
    app = create_app(ServeConfig(data=tmp_path / "data", **settings))
    server = app.state.server
    server.open()
    server.store.set_meta(MODELS_KEY, MODELS)
    return TestClient(app), server


def test_upload_separate_download(live) -> None:
    """A song goes in; stems that add up to it come out, one by one and zipped, named after the upload."""
    client, config = live
    data = wav_bytes(2.0)
    r = post(client, data, "My Song.wav")
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["state"] == "queued" and job["seconds"] == pytest.approx(2.0) and job["filename"] == "My Song.wav"
    assert sorted(p.name for p in (config.jobs_dir / job["id"]).iterdir()) == ["input.wav"]  # generated names only
    job = wait_done(client, job["id"])
    assert job["state"] == "done" and job["progress"] == 1 and job["error"] is None, job
    assert job["stems"] == ["drums", "bass", "other", "vocals"]
    mix = sf.read(io.BytesIO(data), dtype="float32")[0]
    total = np.zeros_like(mix)
    files = {}
    for stem in job["stems"]:
        r = client.get(job["links"]["stems"][stem])
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert f"My Song-{stem}.wav" in unquote(r.headers["content-disposition"])
        audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
        assert rate == SR and audio.shape == mix.shape
        total += audio
        files[stem] = r.content
    assert np.abs(total - mix).max() < 4 / 32768  # mask-based stems sum back to the mix (16-bit round-off)
    r = client.get(job["links"]["zip"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == {f"My Song/{s}.wav": b for s, b in files.items()}


def test_events_stream_progress_until_the_end(live) -> None:
    client, _ = live
    job = post(client, wav_bytes(6.0, seed=1), "six.wav").json()
    events = []
    with client.stream("GET", job["links"]["events"]) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    assert events[-1][0] == "end" and events[-1][1]["state"] == "done"
    assert all(name == "progress" for name, _ in events[:-1])
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and len(events) >= 2
    r = client.get(job["links"]["events"])  # a finished job: one "end" event, then the stream closes
    assert r.text.startswith("event: end\n")


def test_options_two_stems_and_flac(live) -> None:
    client, _ = live
    job = post(client, wav_bytes(1.5, seed=2), "k.flac.wav", two_stems="vocals", format="flac", bits="24").json()
    job = wait_done(client, job["id"])
    assert job["state"] == "done" and job["stems"] == ["vocals", "no_vocals"], job
    r = client.get(job["links"]["stems"]["no_vocals"])
    assert r.headers["content-type"] == "audio/flac"
    assert sf.info(io.BytesIO(r.content)).subtype == "PCM_24"


def test_content_is_sniffed_not_the_extension(live) -> None:
    """A wav named .mp3 is stored and read as wav; a text file named .wav is refused."""
    client, config = live
    r = post(client, wav_bytes(1.0, seed=3), "really-a-wav.mp3")
    assert r.status_code == 201, r.text
    assert (config.jobs_dir / r.json()["id"] / "input.wav").is_file()
    assert wait_done(client, r.json()["id"])["state"] == "done"
    assert_error(post(client, b"just some text, not audio\n" * 50, "song.wav"), 415, "unsupported", "not an audio file")
    assert_error(post(client, b"\x89PNG\r\n\x1a\n" + bytes(2000), "cover.mp3"), 415, "unsupported")


def test_corrupt_empty_and_bad_options_are_422_and_leave_nothing(live) -> None:
    client, config = live
    before = set(config.jobs_dir.iterdir())
    good = wav_bytes(1.0)
    assert_error(post(client, b"", "empty.wav"), 422, "empty", "empty")
    assert_error(post(client, b"fLaC" + bytes(range(256)) * 8, "broken.flac"), 422, "corrupt")
    assert_error(post(client, good, model="../../etc/passwd"), 422, "invalid", "unknown model")
    assert_error(post(client, good, model="unet"), 422, "invalid", "this server runs: default")
    assert_error(post(client, good, stems="vocals,kazoo"), 422, "invalid", "kazoo")
    assert_error(post(client, good, two_stems="kazoo"), 422, "invalid", "kazoo")
    assert_error(post(client, good, stems="vocals", two_stems="vocals"), 422, "invalid", "not both")
    assert_error(post(client, good, format="mp3", bits="24"), 422, "invalid", "mp3")
    assert_error(post(client, good, mp3_bitrate="128"), 422, "invalid", "mp3 only")
    assert_error(post(client, good, format="mp3", mp3_bitrate="1000"), 422, "invalid", "bitrate")
    assert_error(post(client, good, format="ogg"), 422, "invalid", "format")
    assert_error(client.post("/api/jobs", data={"model": "default"}), 422, "invalid", "file")
    assert set(config.jobs_dir.iterdir()) == before


def test_size_and_duration_limits_are_413(live) -> None:
    client, config = live
    assert_error(post(client, bytes(2_200_000), "huge.wav"), 413, "too_large", "2 MB")  # by Content-Length
    # Under the framing allowance but over the file limit: caught while copying.
    assert_error(post(client, b"RIFF" + bytes(2_030_000), "big.wav"), 413, "too_large", "2 MB")

    def chunked():  # no Content-Length: caught as the body streams in
        boundary = b"xyz"
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(22):
            yield bytes(100_000)
        yield b"\r\n--" + boundary + b"--\r\n"

    r = client.post("/api/jobs", content=chunked(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(r, 413, "too_large")
    long_float = io.BytesIO()
    sf.write(long_float, np.zeros((int(30 * 8000), 1), np.float32), 8000, format="WAV", subtype="PCM_U8")
    assert_error(post(client, long_float.getvalue(), "long.wav"), 413, "too_long", "30 s")


def test_failed_job_reports_its_reason_without_server_paths(live) -> None:
    """A file that passes the upload checks but cannot be separated fails alone, with a readable reason."""
    client, config = live
    mix = toy_mix(1.0, SR).T.copy()
    mix[SR // 2, 0] = np.nan
    buf = io.BytesIO()
    sf.write(buf, mix, SR, format="WAV", subtype="FLOAT")
    job = post(client, buf.getvalue(), "nan.wav").json()
    job = wait_done(client, job["id"])
    assert job["state"] == "failed" and "NaN" in job["error"] and "nan.wav" in job["error"], job
    assert str(config.data) not in job["error"]
    assert_error(client.get(f"/api/jobs/{job['id']}/zip"), 409, "job_failed", "NaN")
    assert_error(client.get(f"/api/jobs/{job['id']}/stems/vocals"), 409, "job_failed")
    ok = wait_done(client, post(client, wav_bytes(1.0, seed=4)).json()["id"])  # the worker goes on
    assert ok["state"] == "done"


def test_not_found_and_bad_ids(live) -> None:
    client, _ = live
    assert_error(client.get("/api/jobs/" + "0" * 32), 404, "not_found", "no job")
    assert_error(client.get("/api/jobs/..%2F..%2Fjobs.sqlite3"), 404, "not_found")
    assert_error(client.get("/api/jobs/" + "0" * 32 + "/zip"), 404, "not_found")
    assert_error(client.delete("/api/jobs/" + "0" * 32), 404, "not_found")
    assert_error(client.get("/api/nothing"), 404, "not_found", "/api/nothing")
    assert_error(client.put("/api/models"), 405, "method_not_allowed")
    job = wait_done(client, post(client, wav_bytes(1.0, seed=5)).json()["id"])
    assert_error(client.get(f"/api/jobs/{job['id']}/stems/kazoo"), 404, "not_found", "drums, bass, other, vocals")
    assert_error(client.get(f"/api/jobs/{job['id']}/stems/..%2F..%2Finput.wav"), 404, "not_found")


def test_delete_done_and_running_jobs(live) -> None:
    client, config = live
    job = wait_done(client, post(client, wav_bytes(1.0, seed=6)).json()["id"])
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert not (config.jobs_dir / job["id"]).exists()
    assert_error(client.get(f"/api/jobs/{job['id']}"), 404, "not_found")
    long = io.BytesIO()  # 10 s (long enough to catch it running) in few bytes: 8-bit mono at 8 kHz
    sf.write(long, toy_mix(10.0, 8000, 7)[0], 8000, format="WAV", subtype="PCM_U8")
    job = post(client, long.getvalue(), "long.wav").json()
    deadline = time.monotonic() + 60
    while client.get(f"/api/jobs/{job['id']}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert_error(client.get(f"/api/jobs/{job['id']}"), 404, "not_found")  # gone at once for the API
    while (config.jobs_dir / job["id"]).exists():  # the worker stops and removes the files
        assert time.monotonic() < deadline, "the worker did not stop the deleted job"
        time.sleep(0.05)
    while client.app.state.server.store.get(job["id"]) is not None:
        assert time.monotonic() < deadline, "the deleted job's row stayed"
        time.sleep(0.05)


def test_models_server_docs_and_page(live) -> None:
    client, _ = live
    models = client.get("/api/models").json()
    names = [m["name"] for m in models]
    assert names[0] == "default" and models[0]["default"] and "classical" in names and "unet" not in names
    assert all(set(m) == {"name", "stems", "sample_rate", "default"} for m in models)
    info = client.get("/api/server").json()
    assert info["auth"] is False and info["limits"]["max_upload_mb"] == 2.0 and info["version"] == stemforge.__version__
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/stems/{stem}",
            "/api/jobs/{job_id}/zip", "/api/models", "/api/server"} <= set(paths)
    assert set(paths["/api/jobs/{job_id}"]) == {"get", "delete"}
    for page_url in ("/docs", "/redoc"):  # every script and style from this server: works offline
        docs = client.get(page_url).text
        assets = re.findall(r'(?:href|src)="([^"]+)"', docs)
        assert assets and all(a.startswith("/") for a in assets) and "cdn" not in docs, (page_url, assets)
        assert all(client.get(a).status_code == 200 for a in assets)
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"]


def test_token(tmp_path: Path) -> None:
    client, _ = idle_app(tmp_path, token="s3cret-token")
    assert_error(client.get("/api/models"), 401, "unauthorized", "needs a token")
    assert client.get("/api/models").headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/api/models", headers={"Authorization": "Bearer wrong-token"}), 401, "unauthorized",
                 "wrong token")
    assert_error(post(client, wav_bytes(0.5)), 401, "unauthorized")
    assert_error(client.get("/api/jobs/" + "0" * 32), 401, "unauthorized")  # no telling which jobs exist
    ok = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/api/models", headers=ok).status_code == 200
    assert client.get("/api/server").json()["auth"] is True  # the page learns it must ask for one
    assert client.get("/").status_code == 200


def test_queue_full_is_503_and_queued_jobs_are_not_ready(tmp_path: Path) -> None:
    client, server = idle_app(tmp_path, queue=2)
    ids = [post(client, wav_bytes(0.5, seed=i)).json()["id"] for i in range(2)]
    r = post(client, wav_bytes(0.5))
    assert_error(r, 503, "busy", "busy")
    assert r.headers["retry-after"] == "30"
    assert len(list(server.config.jobs_dir.iterdir())) == 2  # the refused upload left nothing
    assert_error(client.get(f"/api/jobs/{ids[0]}/zip"), 409, "not_ready", "queued")
    assert client.delete(f"/api/jobs/{ids[0]}").status_code == 204  # a queued job goes at once, with its files
    assert not (server.config.jobs_dir / ids[0]).exists()
    assert post(client, wav_bytes(0.5)).status_code == 201  # room again


def test_keep_days_expires_old_jobs(tmp_path: Path) -> None:
    client, server = idle_app(tmp_path, keep_days=2)
    old, new = (post(client, wav_bytes(0.5, seed=i)).json()["id"] for i in range(2))
    for job_id in (old, new):
        server.store.fail(job_id, "test")
    import sqlite3

    with sqlite3.connect(server.config.database) as db:
        db.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time() - 3 * 86400, old))
    assert server.expire() == [old]
    assert not (server.config.jobs_dir / old).exists() and (server.config.jobs_dir / new).exists()
    assert_error(client.get(f"/api/jobs/{old}"), 404, "not_found")


def test_one_server_per_data_folder(tmp_path: Path) -> None:
    _, server = idle_app(tmp_path)
    with pytest.raises(StemforgeError, match="another stemforge serve is using this folder"):
        create_app(ServeConfig(data=tmp_path / "data")).state.server.open()
    server.stop()
    create_app(ServeConfig(data=tmp_path / "data")).state.server.open()  # released


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "error: --workers 0: needs at least 1"),
    (["--max-upload-mb", "0"], "error: --max-upload-mb 0: must be positive"),
    (["--token", "short"], "error: --token: use at least 8 characters"),
    (["--port", "70000"], "error: --port 70000"),
])
def test_serve_command_refuses_bad_settings_in_one_line(argv: list[str], message: str, tmp_path: Path) -> None:
    from stemforge.cli import main

    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["serve", "--data", str(tmp_path / "d"), *argv]) == 1
    assert err.getvalue().strip() == message or err.getvalue().startswith(message), err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1


def test_server_process_imports_no_torch() -> None:
    """The app (and the serve command) load without torch: only the workers load models."""
    code = "import sys, stemforge.web.app, stemforge.commands.serve; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_serve_command_refuses_a_taken_port_or_data_folder_in_one_line(tmp_path: Path) -> None:
    import contextlib
    import socket

    from stemforge.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["-q", "serve", "--data", str(tmp_path / "d"), "--port", str(port)]) == 1
        assert err.getvalue().startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and \
            len(err.getvalue().splitlines()) == 1, err.getvalue()
    assert not (tmp_path / "d").exists()  # refused before anything was created
    _, server = idle_app(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["-q", "serve", "--data", str(server.config.data), "--port", "0"]) == 1
    assert err.getvalue() == f"error: --data {server.config.data}: another stemforge serve is using this folder\n"


def test_start_sweeps_orphan_folders_and_temporary_files(tmp_path: Path) -> None:
    """What a killed server leaves (an upload never queued, temporary stems, a half-built zip) goes at the next
    start; the jobs' own files stay."""
    client, server = idle_app(tmp_path)
    job = post(client, wav_bytes(0.5)).json()
    folder = server.config.jobs_dir / job["id"]
    temporary = [folder / "stems" / "default" / ".vocals.wav.sf4242.abcd.part.wav", folder / ".stems.zip.x1.part",
                 folder / "stems" / "default" / ".stemforge-0123456789abcdef.lock"]
    for path in temporary:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    orphan = server.config.jobs_dir / ("f" * 32)
    orphan.mkdir()
    (orphan / "input.part").write_bytes(b"half an upload")
    server.stop()
    create_app(ServeConfig(data=server.config.data)).state.server.open()
    assert not orphan.exists() and not any(p.exists() for p in temporary)
    assert (folder / "input.wav").is_file()
