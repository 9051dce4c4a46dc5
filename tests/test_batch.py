"""``stemforge batch``: library walking, the manifest, the local pool and a real local Ray cluster.

The Ray tests start one cluster per module (a head and a worker node on 127.0.0.1, one CPU each, a private
``--temp-dir``), each ``ray start --block`` our own child, and stop it by those processes' ids afterwards (never
``ray stop``, which would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import soundfile

import stemforge
from stemforge import audio
from stemforge.batch.driver import run_batch
from stemforge.batch.library import Track, walk_library
from stemforge.batch.runners import LocalRunner, make_runner
from stemforge.batch.store import ManifestStore
from stemforge.batch.worker import SeparationSpec
from stemforge.cli import main
from stemforge.errors import StemforgeError
from stemforge.extras import MissingExtraError
from toy_song import toy_mix

SR = 44100
SRC = str(Path(stemforge.__file__).parents[1])  # this checkout's code, for Ray's worker processes
FAST = ["-n", "hpss", "--segment", "1"]  # hpss pads each segment to its default 10 s otherwise
GOOD = {"a.wav": 1.0, "b.wav": 1.5, "c.wav": 1.0, "sub/d.wav": 1.0, "sub/e.wav": 1.5}
CORRUPT = "sub/broken.wav"


def make_library(root: Path) -> Path:
    """Six songs: five short good ones (two in a subfolder) and one corrupt file."""
    for i, (name, seconds) in enumerate(GOOD.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        audio.save(root / name, toy_mix(seconds, seed=i), SR, bits=16)
    (root / CORRUPT).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    return root


def files(folder: Path) -> dict[str, bytes]:
    """Every visible file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*.wav")}


def batch_json(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["batch", *args, *FAST, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def by_input(report: dict, library: Path) -> dict[str, dict]:
    return {Path(t["input"]).relative_to(library.resolve()).as_posix(): t for t in report["inputs"]}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, library: Path) -> dict[str, bytes]:
    """What ``stemforge separate LIBRARY -n hpss`` writes (it reports the corrupt file and exits 1)."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["separate", str(library), "-o", str(out), *FAST, "-q"]) == 1
    written = files(out)
    assert len(written) == 2 * len(GOOD)  # hpss: drums and other for each good song
    return written


# ------------------------------------------------------------------------------------------------ library

def test_library_folders_musdb_tree_and_manifests(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("x.wav", "deep/y.flac", "notes.txt", "train/Song A/mixture.wav", "train/Song A/vocals.wav",
                 "train/Song A/drums/kit.wav", "test/Song B/mixture.wav", "test/Song B/bass.wav"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"")
    found = [(t.path.relative_to(lib.resolve()).as_posix(), t.relpath, t.song) for t in walk_library(lib)]
    assert found == [("x.wav", ".", False), ("deep/y.flac", "deep", False),
                     ("test/Song B/mixture.wav", "test/Song B", True),
                     ("train/Song A/mixture.wav", "train/Song A", True)]
    song = walk_library(lib / "train" / "Song A")  # a single song folder as the library: named after it
    assert [(t.relpath, t.template(None)) for t in song] == [("Song A", "{relpath}/{stem}.{ext}")]
    assert Track(Path("x.wav"), ".").template(None) == "{track}/{stem}.{ext}"  # separate's default
    assert song[0].template("{trackext}/{stem}.{ext}") == "{trackext}/{stem}.{ext}"  # --filename wins

    (tmp_path / "list.csv").write_text("path,comment\nlib/x.wav,one\n/abs/z.wav,two\nlib/x.wav,again\n")
    assert [(str(t.path), t.relpath) for t in walk_library(tmp_path / "list.csv")] == [
        (str(lib.resolve() / "x.wav"), "lib"), ("/abs/z.wav", ".")]  # repeated once; outside it: "."
    (tmp_path / "list.json").write_text(json.dumps({"tracks": ["lib/x.wav", {"path": "lib/deep/y.flac"}]}))
    assert [t.relpath for t in walk_library(tmp_path / "list.json")] == ["lib", "lib/deep"]


@pytest.mark.parametrize("name, content, message", [
    ("missing", None, "does not exist"),
    ("bad.csv", "name,other\nx,y\n", "needs a 'path' (or 'mixture') column"),
    ("bad.json", '{"songs": 3}', "expected a list of paths"),
    ("bad2.json", "[1, 2]", "entry 1 has no path"),
    ("broken.json", "[", "cannot read manifest"),
    ("song.wav", "RIFF", "neither a folder nor a .csv/.json manifest"),
])
def test_bad_library_is_one_line(tmp_path: Path, name: str, content: str | None, message: str,
                                 capsys: pytest.CaptureFixture) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    assert main(["batch", str(tmp_path / name), "-o", str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_same_named_tracks_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for folder in ("one", "two"):
        (tmp_path / "lib" / folder).mkdir(parents=True)
        audio.save(tmp_path / "lib" / folder / "song.wav", toy_mix(0.5), SR, bits=16)
    assert main(["batch", str(tmp_path / "lib"), "-o", str(tmp_path / "out"), *FAST, "-q"]) == 1
    err = capsys.readouterr().err
    assert "would both be written to" in err and "{relpath}" in err and "Traceback" not in err
    assert files(tmp_path / "out") == {}


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "no Ray cluster answers there"),
                                              ("nonsense", "expected 'auto', 'local' or the head's host:port")])
def test_an_unreachable_ray_address_is_one_line_in_seconds(tmp_path: Path, address: str, message: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("ray", reason="needs the cluster extra (pip install 'stemforge[cluster]')")
    (tmp_path / "lib").mkdir()
    audio.save(tmp_path / "lib" / "a.wav", toy_mix(0.5), SR, bits=16)
    started = time.monotonic()
    assert main(["batch", str(tmp_path / "lib"), "-o", str(tmp_path / "out"), "--ray", address, *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert time.monotonic() - started < 30  # ray.init alone keeps retrying for minutes


def test_ray_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"stemforge\[cluster\]"):
        make_runner("auto")
    assert isinstance(make_runner("local", workers=1), LocalRunner)  # the pool needs no Ray


@pytest.mark.parametrize("damage", ["not sqlite", "other table", "bad row"])
def test_a_damaged_manifest_is_one_line(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture) -> None:
    import sqlite3

    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    out.mkdir()
    audio.save(lib / "a.wav", toy_mix(0.5), SR, bits=16)
    store = out / ".stemforge-batch.sqlite"
    if damage == "not sqlite":
        store.write_bytes(b"this is not a database" * 100)
    else:
        db = sqlite3.connect(store)
        if damage == "other table":
            db.execute("CREATE TABLE tracks (x INTEGER)")
        else:
            ManifestStore(out).close()
            db.execute("INSERT INTO tracks VALUES (?, '.', 'hpss', '[1]', '{}', 'done', '{}', NULL, NULL, NULL, "
                       "NULL, 1, 0)", (str((lib / "a.wav").resolve()),))
        db.commit()
        db.close()
    assert main(["batch", str(lib), "-o", str(out), *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "move it away" in err[0], err


# ------------------------------------------------------------------------------------------- local pool

def test_local_pool_matches_separate_reports_the_corrupt_file_and_reruns_nothing(
        tmp_path: Path, library: Path, reference: dict[str, bytes], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, report, err = batch_json(capsys, str(library), "-o", str(out), "--ray", "local", "--workers", "2")
    assert code == 1 and "error: 1 of 6 tracks failed" in err and "Traceback" not in err
    assert (report["done"], report["failed"], report["runner"]) == (5, 1, "local pool")
    tracks = by_input(report, library)
    assert "not a readable audio file" in tracks[CORRUPT]["error"]
    assert files(out) == reference  # byte for byte what `separate` writes, same layout
    before = mtimes(out)

    code, again, _ = batch_json(capsys, str(library), "-o", str(out), "--workers", "2")
    assert code == 1 and (again["done"], again["unchanged"], again["failed"]) == (0, 5, 1)
    assert mtimes(out) == before  # nothing rewritten
    with ManifestStore(out) as store:
        rows = {Path(r.input).name: r for r in store.records()}
    assert rows["a.wav"].status == "done" and rows["a.wav"].runs == 1  # recorded once, never redone
    assert rows["broken.wav"].status == "failed" and rows["broken.wav"].runs == 2  # a failure is retried


def test_rerun_redoes_changed_inputs_options_and_outputs_and_never_overwrites_others(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, seed in (("a.wav", 0), ("b.wav", 1), ("c.wav", 2)):
        audio.save(lib / name, toy_mix(0.5, seed=seed), SR, bits=16)
    out = tmp_path / "out"
    common = [str(lib), "-o", str(out), "--workers", "1"]
    assert batch_json(capsys, *common)[1]["done"] == 3

    audio.save(lib / "a.wav", toy_mix(0.5, seed=7), SR, bits=16)  # changed input
    (out / "hpss" / "b" / "drums.wav").unlink()  # a lost output
    (out / "hpss" / "c" / "other.wav").write_bytes(b"edited by hand")  # an output that is no longer ours
    code, report, _ = batch_json(capsys, *common)
    tracks = by_input(report, lib)
    assert (tracks["a.wav"]["status"], tracks["b.wav"]["status"], tracks["c.wav"]["status"]) == ("done", "done", "failed")
    assert "was not written by this batch" in tracks["c.wav"]["error"] and "--force" in tracks["c.wav"]["error"]
    assert (out / "hpss" / "c" / "other.wav").read_bytes() == b"edited by hand"
    reference = tmp_path / "ref"
    assert main(["separate", str(lib / "a.wav"), str(lib / "b.wav"), "-o", str(reference), *FAST, "-q"]) == 0
    assert {k: v for k, v in files(out).items() if not k.startswith("hpss/c/")} == files(reference)

    code, report, _ = batch_json(capsys, *common, "--force")  # asked: c is overwritten
    assert code == 0 and report["done"] == 3
    assert (out / "hpss" / "c" / "other.wav").read_bytes() != b"edited by hand"
    code, report, _ = batch_json(capsys, *common, "--bits", "24")  # another option: every track again
    assert code == 0 and report["done"] == 3
    assert soundfile.info(str(out / "hpss" / "a" / "drums.wav")).subtype == "PCM_24"


def test_a_new_bundled_model_redoes_its_tracks(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundled model's file is part of what a track was made with: a stemforge upgrade that replaces it (a new
    default) redoes the tracks it separated; an unchanged one leaves them alone."""
    from stemforge.batch.driver import checkpoint_file
    from stemforge.hub import bundled_checkpoint

    assert checkpoint_file("default") == bundled_checkpoint("default") is not None
    assert checkpoint_file("lowlatency") == bundled_checkpoint("lowlatency") is not None
    assert checkpoint_file("hpss") is None and checkpoint_file("htdemucs") is None
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"")
    assert checkpoint_file(str(mine)) == mine

    lib = tmp_path / "lib"
    lib.mkdir()
    audio.save(lib / "a.wav", toy_mix(0.5), SR, bits=16)
    common = ["batch", str(lib), "-o", str(tmp_path / "out"), "--workers", "1", "-n", "lowlatency", "--json"]

    def batch() -> dict:
        capsys.readouterr()
        assert main(common) == 0
        return json.loads(capsys.readouterr().out)

    assert batch()["done"] == 1
    assert batch()["unchanged"] == 1
    from safetensors.numpy import load_file, save_file

    from stemforge.checkpoint import read_metadata

    meta = read_metadata(bundled_checkpoint("lowlatency"))  # the same model with one more line in its header
    upgraded = tmp_path / "upgraded.safetensors"
    save_file(load_file(str(bundled_checkpoint("lowlatency"))), str(upgraded),
              metadata={"stemforge": json.dumps({**meta, "note": "a later release"})})
    monkeypatch.setattr("stemforge.hub.bundled_checkpoint", lambda name="default": upgraded)
    assert batch()["done"] == 1


def test_the_overlap_is_recorded_as_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Without ``--overlap`` the model's own is recorded (0.25 for hpss), so asking for that same value changes nothing
    and another value redoes the track."""
    lib = tmp_path / "lib"
    lib.mkdir()
    audio.save(lib / "a.wav", toy_mix(0.5), SR, bits=16)
    common = [str(lib), "-o", str(tmp_path / "out"), "--workers", "1"]
    assert batch_json(capsys, *common)[1]["done"] == 1
    assert batch_json(capsys, *common, "--overlap", "0.25")[1]["unchanged"] == 1
    assert batch_json(capsys, *common, "--overlap", "0.5")[1]["done"] == 1
    with ManifestStore(tmp_path / "out") as store:
        assert [r.options["overlap"] for r in store.records()] == [0.5]


def test_a_musdb_tree_gives_one_folder_per_song(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lib = tmp_path / "musdb"
    for split, song, seed in (("train", "Song A", 0), ("test", "Song B", 1)):
        (lib / split / song).mkdir(parents=True)
        audio.save(lib / split / song / "mixture.wav", toy_mix(0.5, seed=seed), SR, bits=16)
        audio.save(lib / split / song / "vocals.wav", toy_mix(0.5, seed=seed + 5), SR, bits=16)  # not a track
    code, report, _ = batch_json(capsys, str(lib), "-o", str(tmp_path / "out"), "--workers", "1")
    assert code == 0 and report["done"] == 2
    assert sorted(files(tmp_path / "out")) == ["hpss/test/Song B/drums.wav", "hpss/test/Song B/other.wav",
                                               "hpss/train/Song A/drums.wav", "hpss/train/Song A/other.wav"]


def test_outputs_of_another_run_are_refused_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    audio.save(lib / "a.wav", toy_mix(0.5), SR, bits=16)
    out = tmp_path / "out"
    assert main(["separate", str(lib), "-o", str(out), *FAST, "-q"]) == 0
    before = files(out)
    code, report, _ = batch_json(capsys, str(lib), "-o", str(out), "--workers", "1")
    assert code == 1 and "already exists and was not written by this batch" in report["inputs"][0]["error"]
    code, report, _ = batch_json(capsys, str(lib), "-o", str(out), "--workers", "1", "--skip-existing")
    assert code == 0 and report["skipped"] == 1 and files(out) == before


def test_a_killed_pool_worker_costs_a_bounded_retry(tmp_path: Path, library: Path,
                                                     reference: dict[str, bytes]) -> None:
    """A pool process SIGKILLed mid-track: with one retry every good track completes; with none, it is listed."""
    from stemforge.separate import OutputOptions

    tracks = walk_library(library)
    for retries, out in ((1, tmp_path / "retried"), (0, tmp_path / "given_up")):
        spec = SeparationSpec("hpss", OutputOptions(directory=out), segment=1.0, threads=1)
        runner = LocalRunner(workers=1, retries=retries)
        killed: list[int] = []

        def killer() -> None:  # the pool's process, once it is writing a track's temporary files
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                if out.exists() and any(".part" in p.name for p in out.rglob(".*")):
                    for child in __import__("multiprocessing").active_children():
                        os.kill(child.pid, signal.SIGKILL)
                        killed.append(child.pid)
                time.sleep(0.002)

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            report = run_batch(tracks, spec, runner)
        finally:
            thread.join()
            runner.close()
        assert killed, "no worker was caught mid-track"
        status = {Path(t.input).name: t for t in report.tracks}
        if retries:
            assert report.count("done") == 5 and report.failed == 1
            assert files(out) == reference
        else:  # the killed track is reported, the other good ones complete
            died = [t for t in report.tracks if t.status == "failed" and "died 1 time(s)" in (t.error or "")]
            assert len(died) == 1 and report.count("done") == 4, [t.error for t in report.tracks]
            assert status["broken.wav"].status == "failed"
            # a re-run redoes exactly the failed tracks; the killed worker's temporary files are swept
            again = run_batch(tracks, spec, LocalRunner(workers=1, retries=0))
            assert again.count("done") == 1 and again.count("unchanged") == 4
            assert files(out) == reference
            assert not [p for p in out.rglob("*.part*")]


# --------------------------------------------------------------------------------------------------- Ray

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(marker: str) -> list[int]:
    """Ids of the processes started for this test's cluster (they inherit the marker in their environment)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if f"STEMFORGE_TEST_RAY={marker}".encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A head and a worker node on 127.0.0.1 (one CPU each); yields ``(address, marker)``."""
    ray = pytest.importorskip("ray", reason="needs the cluster extra (pip install 'stemforge[cluster]')")
    exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if exe is None:
        pytest.skip("the `ray` command is not installed")
    marker = uuid.uuid4().hex
    # Ray's AF_UNIX socket paths must stay under 107 bytes: pytest's tmp paths (longer still under xdist) do not.
    temp = Path(tempfile.mkdtemp(prefix="sfray-", dir="/tmp"))
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "STEMFORGE_TEST_RAY": marker}
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats",
              "--object-store-memory=100000000"]  # 100 MB each, not 30% of the machine's memory
    nodes = [subprocess.Popen([exe, "start", "--head", f"--port={address.split(':')[1]}",
                               "--include-dashboard=false", *common], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(temp / "head.log", "w"))]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([exe, "health-check", "--address", address], capture_output=True, env=env).returncode:
            assert nodes[0].poll() is None and time.monotonic() < deadline, (temp / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        nodes.append(subprocess.Popen([exe, "start", f"--address={address}", *common], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(temp / "worker.log", "w")))
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        try:
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                assert nodes[1].poll() is None and time.monotonic() < deadline, (temp / "worker.log").read_text()[-2000:]
                time.sleep(0.2)
        finally:
            ray.shutdown()
        yield address, marker
    finally:
        for node in reversed(nodes):  # `ray start --block` stops its node's processes on SIGTERM
            node.send_signal(signal.SIGTERM)
        for node in reversed(nodes):
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                node.kill()
        time.sleep(1)
        for pid in _marked(marker):  # anything left of this cluster, by its own process id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow  # a two-node cluster takes 20-50 s to start on 2 loaded cores
def test_ray_matches_separate_reports_the_corrupt_file_and_reruns_nothing(
        tmp_path: Path, library: Path, reference: dict[str, bytes], ray_cluster: tuple[str, str],
        capsys: pytest.CaptureFixture) -> None:
    address, _ = ray_cluster
    out = tmp_path / "out"
    code, report, err = batch_json(capsys, str(library), "-o", str(out), "--ray", address)
    assert code == 1 and "Traceback" not in err
    assert (report["done"], report["failed"], report["workers"]) == (5, 1, 2)
    assert report["runner"].startswith("ray ")
    assert "not a readable audio file" in by_input(report, library)[CORRUPT]["error"]
    assert files(out) == reference
    assert len({t["worker"] for t in report["inputs"] if t["status"] == "done"}) >= 2  # the work was spread
    before = mtimes(out)
    code, again, _ = batch_json(capsys, str(library), "-o", str(out), "--ray", address)
    assert (again["done"], again["unchanged"], again["failed"]) == (0, 5, 1)
    assert mtimes(out) == before


@pytest.mark.slow
def test_ray_killed_worker_is_retried_and_every_good_track_completes(
        tmp_path: Path, library: Path, reference: dict[str, bytes], ray_cluster: tuple[str, str],
        capsys: pytest.CaptureFixture) -> None:
    address, marker = ray_cluster
    out = tmp_path / "out"
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # the first of our cluster's workers seen running a track
        while not stop.is_set() and not killed:
            for pid in _marked(marker):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(b"ray::separate_track"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        code, report, err = batch_json(capsys, str(library), "-o", str(out), "--ray", address, "--retries", "2")
    finally:
        stop.set()
        thread.join()
    assert killed, "no worker was caught running a track"
    assert (report["done"], report["failed"]) == (5, 1), report
    assert killed[0] not in {int(t["worker"].rsplit(":", 1)[1]) for t in report["inputs"] if "worker" in t}
    assert files(out) == reference


def test_the_bundled_model_runs_torch_free_in_workers_and_writes_what_separate_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stemforge.batch.worker import separator_for
    from stemforge.separate import LiteSeparator, OutputOptions, Separator

    output = OutputOptions(directory=str(tmp_path))
    assert isinstance(separator_for(SeparationSpec(model="default", output=output)), LiteSeparator)
    assert isinstance(separator_for(SeparationSpec(model="default", output=output, backend="torch")), Separator)
    assert isinstance(separator_for(SeparationSpec(model="default", output=output, shifts=1)), Separator)

    library = tmp_path / "library"
    library.mkdir()
    audio.save(library / "song.wav", toy_mix(2.5, seed=3), SR, bits=16)
    assert main(["separate", str(library / "song.wav"), "-o", str(tmp_path / "separate"), "-q"]) == 0
    capsys.readouterr()
    assert main(["batch", str(library), "-o", str(tmp_path / "batch"), "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 1
    written = files(tmp_path / "batch")
    assert {k: v for k, v in written.items() if k.endswith(".wav")} == files(tmp_path / "separate")
    assert len([k for k in written if k.endswith(".wav")]) == 4
