"""``stemforge serve`` as a real process on 127.0.0.1: ``kill -9`` in the middle of a job, and a load of
concurrent uploads (``stemforge.web.worker``'s pool and the restart path of ``stemforge.web.app``)."""

from __future__ import annotations

import concurrent.futures
import io
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'stemforge[web]')")

from toy_song import toy_mix  # noqa: E402
from web_helpers import ServeProcess, alive, rss_kb  # noqa: E402

SR = 44100


def clip(seconds: float, seed: int, rate: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, toy_mix(seconds, rate, seed).T, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def upload(url: str, data: bytes, name: str) -> dict:
    r = httpx.post(f"{url}/api/jobs", files={"file": (name, data)}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def job_of(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()


def wait_for(url: str, job_id: str, states: tuple[str, ...], timeout: float = 180.0, progress: float = 0.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = job_of(url, job_id)
        if job["state"] in states and job["progress"] >= progress:
            return job
        assert job["state"] not in ("done", "failed") or job["state"] in states, job
        assert time.monotonic() < deadline, f"job stayed {job['state']} ({job['progress']})"
        time.sleep(0.05)


def leftovers(folder: Path) -> list[str]:
    """Temporary or lock files (anything hidden or ``.part``) under a job folder."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or ".part" in p.name)


def integrity(data: Path) -> str:
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def assert_complete_stems(folder: Path, job: dict, mix: np.ndarray) -> None:
    """Every stem there, whole (the input's length), and together the input (mask-based model)."""
    assert job["state"] == "done" and job["stems"] == ["drums", "bass", "other", "vocals"], job
    total = np.zeros_like(mix)
    for stem in job["stems"]:
        audio, rate = sf.read(folder / "stems" / "default" / f"{stem}.wav", dtype="float32")
        assert rate == SR and audio.shape == mix.shape
        total += audio
    assert np.abs(total - mix).max() < 4 / 32768
    assert leftovers(folder) == []


def kill_mid_job(serve: ServeProcess, job_id: str) -> None:
    """Wait until the job is being separated, then ``kill -9`` the server; its workers must die with it."""
    wait_for(serve.url, job_id, ("running",), progress=0.05)
    workers = serve.children()
    assert len(workers) >= 2  # the worker(s), and multiprocessing's resource tracker
    serve.kill9()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its server"
        time.sleep(0.05)


def worker_pids(serve: ServeProcess) -> list[int]:
    return [pid for pid in serve.children() if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]


def test_kill_9_mid_job_then_restart_completes_it(tmp_path: Path) -> None:
    """A worker killed mid-job fails that job (with the reason) and is replaced; a server killed mid-job resumes
    the job on its next start and completes it; no half-written file, the database intact."""
    data, log = tmp_path / "data", tmp_path / "server.log"
    song = clip(8.0, seed=1)
    serve = ServeProcess(data, log, "--workers", "2").wait_ready()
    try:
        victim = upload(serve.url, clip(8.0, seed=4), "victim.wav")
        wait_for(serve.url, victim["id"], ("running",), progress=0.05)
        with sqlite3.connect(data / "jobs.sqlite3") as db:
            [worker] = db.execute("SELECT worker FROM jobs WHERE id = ?", (victim["id"],)).fetchone()
        assert worker in worker_pids(serve)
        os.kill(worker, signal.SIGKILL)  # as the kernel's OOM killer or a decoder crash would
        failed = wait_for(serve.url, victim["id"], ("failed",), timeout=30)
        assert "worker separating this file stopped (killed by signal SIGKILL)" in failed["error"], failed
        job = upload(serve.url, song, "song.wav")  # taken by the other worker while the dead one is replaced
        kill_mid_job(serve, job["id"])
    finally:
        serve.stop()
    folder = data / "jobs" / job["id"]
    assert [p.name for p in folder.glob("stems/default/*") if not p.name.startswith(".")] == [], \
        "a stem was published by a run that was killed"
    assert leftovers(folder)  # it was writing: the hidden temporary files of the killed worker are there
    assert integrity(data) == "ok"
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job["id"],)).fetchone() == ("running", 1)

    serve = ServeProcess(data, log, "--workers", "1").wait_ready()
    try:
        done = wait_for(serve.url, job["id"], ("done", "failed"))
        assert_complete_stems(folder, done, sf.read(io.BytesIO(song), dtype="float32")[0])
    finally:
        serve.stop()
    assert integrity(data) == "ok"


@pytest.mark.slow
def test_job_killed_twice_is_failed_with_a_reason_and_the_queue_goes_on(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    song, short = clip(8.0, seed=2), clip(2.0, seed=3)
    serve = ServeProcess(data, log, "--workers", "1").wait_ready()
    try:
        job = upload(serve.url, song, "song.wav")
        after = upload(serve.url, short, "short.wav")  # queued behind it
        kill_mid_job(serve, job["id"])
        serve = ServeProcess(data, log, "--workers", "1").wait_ready()
        kill_mid_job(serve, job["id"])  # resumed, and killed again
        serve = ServeProcess(data, log, "--workers", "1").wait_ready()
        failed = job_of(serve.url, job["id"])
        assert failed["state"] == "failed" and "stopped while separating this file, 2 times" in failed["error"]
        r = httpx.get(f"{serve.url}/api/jobs/{job['id']}/zip")
        assert r.status_code == 409 and "2 times" in r.json()["error"]
        done = wait_for(serve.url, after["id"], ("done", "failed"))
        assert_complete_stems(data / "jobs" / after["id"], done, sf.read(io.BytesIO(short), dtype="float32")[0])
        assert leftovers(data / "jobs" / job["id"]) == []  # the killed runs' temporary files were swept
    finally:
        serve.stop()
    assert integrity(data) == "ok"


@pytest.mark.slow
def test_twenty_concurrent_uploads_and_a_bad_file(tmp_path: Path) -> None:
    """20 short clips and one file with NaN samples, uploaded at once to a 2-worker server: the 20 come back
    right, the bad one fails alone with its reason, and memory stays bounded."""
    data, log = tmp_path / "data", tmp_path / "server.log"
    clips = {f"clip{i:02d}.wav": clip(1.0, seed=10 + i) for i in range(20)}
    bad = toy_mix(1.0, SR, 99).T.copy()
    bad[1000, 1] = np.nan
    buf = io.BytesIO()
    sf.write(buf, bad, SR, format="WAV", subtype="FLOAT")
    uploads = {**clips, "bad.wav": buf.getvalue()}
    serve = ServeProcess(data, log, "--workers", "2", "--queue", "32").wait_ready()
    peaks = {"server": 0, "workers": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["server"] = max(peaks["server"], rss_kb(serve.proc.pid))
            peaks["workers"] = max(peaks["workers"], sum(rss_kb(p) for p in serve.children()))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        before = rss_kb(serve.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(len(uploads)) as pool:
            jobs = dict(zip(uploads, pool.map(lambda item: upload(serve.url, item[1], item[0]), uploads.items())))
        finished = {name: wait_for(serve.url, job["id"], ("done", "failed"), timeout=300) for name, job in jobs.items()}
        stop.set()
        sampler.join()
        assert finished["bad.wav"]["state"] == "failed" and "NaN" in finished["bad.wav"]["error"]
        assert "bad.wav" in finished["bad.wav"]["error"] and str(data) not in finished["bad.wav"]["error"]
        for name, data_bytes in clips.items():
            assert_complete_stems(data / "jobs" / jobs[name]["id"], finished[name],
                                  sf.read(io.BytesIO(data_bytes), dtype="float32")[0])
        after = rss_kb(serve.proc.pid)
        print(f"server RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB (peak {peaks['server'] / 1024:.0f}); "
              f"workers' peak {peaks['workers'] / 1024:.0f} MiB")
        assert peaks["server"] < 250 * 1024  # the server holds no audio and no torch: uploads stream to disk
        assert after - before < 60 * 1024
        assert peaks["workers"] < 2 * 1200 * 1024
    finally:
        stop.set()
        serve.stop()
    assert integrity(data) == "ok"


@pytest.mark.slow
def test_clean_stop_puts_the_running_job_back(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) stops the server cleanly: the running job's temporary files go, the job waits in the
    queue without the attempt counting, and the next start completes it."""
    data, log = tmp_path / "data", tmp_path / "server.log"
    song = clip(150.0, seed=5)  # long enough that a fast machine cannot finish it before the stop lands
    serve = ServeProcess(data, log, "--workers", "1").wait_ready()
    job = upload(serve.url, song, "song.wav")
    wait_for(serve.url, job["id"], ("running",), progress=0.05)
    serve.stop()
    assert serve.proc.returncode == 0, log.read_text()
    folder = data / "jobs" / job["id"]
    assert leftovers(folder) == [] and not (folder / "stems" / "default").exists()
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job["id"],)).fetchone() == ("queued", 0)
    serve = ServeProcess(data, log, "--workers", "1").wait_ready()
    try:
        done = wait_for(serve.url, job["id"], ("done", "failed"))
        assert_complete_stems(folder, done, sf.read(io.BytesIO(song), dtype="float32")[0])
        assert done["started"] > job["created"]
    finally:
        serve.stop()
