"""``stemforge.web.store.JobStore``: the queue order, writes guarded by the worker's pid, recovery after a stop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stemforge.web.store import DONE, FAILED, QUEUED, RUNNING, JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


def add(store: JobStore, job_id: str) -> None:
    store.add(job_id, f"{job_id}.wav", "input.wav", "default", {"fmt": "wav"}, 1.0)


def test_database_is_wal_and_sound(store: JobStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity() == "ok"


def test_claim_takes_the_oldest_queued_job_once(store: JobStore) -> None:
    for job_id in ("a", "b"):
        add(store, job_id)
    first, second = store.claim(101), store.claim(102)
    assert (first.id, first.state, first.worker, first.attempts) == ("a", RUNNING, 101, 1)
    assert second.id == "b" and store.claim(103) is None
    assert store.waiting() == 0


def test_only_the_claiming_worker_may_report(store: JobStore) -> None:
    add(store, "a")
    store.claim(101)
    assert not store.set_progress("a", 999, 0.5) and not store.finish("a", 999, {"vocals": "x.wav"})
    assert not store.fail("a", "nope", worker=999)
    assert store.get("a").state == RUNNING and store.get("a").progress == 0
    assert store.set_progress("a", 101, 0.5) and store.get("a").progress == 0.5
    assert store.finish("a", 101, {"vocals": "stems/default/vocals.wav"})
    job = store.get("a")
    assert (job.state, job.progress, job.stems, job.worker) == (DONE, 1.0, {"vocals": "stems/default/vocals.wav"}, None)
    assert not store.fail("a", "too late")  # a finished job stays finished


def test_recover_resumes_then_fails_a_job_that_keeps_stopping_the_server(store: JobStore) -> None:
    add(store, "a")
    add(store, "gone")
    store.claim(101)
    store.claim(102)
    assert store.cancel("gone").state == RUNNING and store.get("gone").cancelled  # deleted while running
    assert store.recover(max_attempts=2) == {"resumed": ["a"], "failed": [], "removed": ["gone"]}
    assert store.get("a").state == QUEUED and store.get("a").worker is None and store.get("gone") is None
    assert not store.set_progress("a", 101, 0.9)  # the old worker, had it survived, no longer owns the job
    store.claim(201)
    assert store.recover(max_attempts=2) == {"resumed": [], "failed": ["a"], "removed": []}
    job = store.get("a")
    assert job.state == FAILED and "stopped while separating this file, 2 times" in job.error


def test_clean_shutdown_requeues_without_counting_the_attempt(store: JobStore) -> None:
    add(store, "a")
    store.claim(101)
    assert store.requeue_running() == ["a"]
    assert store.get("a").state == QUEUED and store.get("a").attempts == 0


def test_dead_worker_fails_its_job_only(store: JobStore) -> None:
    for job_id in ("a", "b"):
        add(store, job_id)
    store.claim(101)
    store.claim(102)
    assert store.fail_worker(101, "the worker stopped (killed by signal SIGSEGV)") == ["a"]
    assert store.get("a").state == FAILED and "SIGSEGV" in store.get("a").error
    assert store.get("b").state == RUNNING


def test_cancel_and_expire(store: JobStore) -> None:
    add(store, "a")
    assert store.cancel("a").state == QUEUED and store.get("a") is None  # not running: gone at once
    assert store.cancel("a") is None
    add(store, "b")
    store.fail("b", "bad file")
    assert [j.id for j in store.expired(before=store.get("b").finished + 1)] == ["b"]
    assert store.expired(before=store.get("b").finished - 1) == []


def test_meta_round_trip(store: JobStore) -> None:
    assert store.get_meta("models") is None
    store.set_meta("models", [{"name": "default"}])
    assert store.get_meta("models") == [{"name": "default"}]
