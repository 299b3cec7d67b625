"""Training jobs: lifecycle, atomic claims under concurrency, requeue of a dead worker's job."""

from __future__ import annotations

import threading
import time

import pytest

from annotations.errors import JobError
from annotations.store import AnnotationStore


def test_job_lifecycle(store):
    job_id = store.enqueue_job("rl", {"base": "v1", "steps": 10})
    assert store.get_job(job_id).status == "queued"
    assert store.claim_job("w1", kinds=("eval",)) is None  # wrong kind
    job = store.claim_job("w1")
    assert (job.id, job.status, job.worker_id, job.attempts) == (job_id, "running", "w1", 1)
    assert job.params == {"base": "v1", "steps": 10}
    assert store.claim_job("w2") is None
    assert store.heartbeat(job_id, "w1") and not store.heartbeat(job_id, "w2")
    store.update_job(job_id, progress=0.5, metrics={"reward": 0.1}, message="step 5")
    job = store.update_job(job_id, progress=0.8, metrics={"loss": 2.0})
    assert job.metrics == {"reward": 0.1, "loss": 2.0} and job.message == "step 5"
    with pytest.raises(JobError, match="progress must be a number in"):
        store.update_job(job_id, progress=1.5)
    done = store.finish_job(job_id, {"version": "v2"})
    assert (done.status, done.progress, done.result) == ("succeeded", 1.0, {"version": "v2"})
    with pytest.raises(JobError, match="is succeeded, not running"):
        store.fail_job(job_id, "late")
    assert not store.heartbeat(job_id, "w1")


def test_fail_and_listing(store):
    a, b = store.enqueue_job("rl", {}), store.enqueue_job("rl", {})
    store.claim_job("w")
    store.fail_job(a, "CUDA out of memory")
    assert store.get_job(a).error == "CUDA out of memory"
    assert [j.id for j in store.list_jobs()] == [b, a]
    assert [j.id for j in store.list_jobs(status="queued")] == [b]
    assert store.get_job(999) is None
    with pytest.raises(JobError, match="does not exist"):
        store.finish_job(999, {})
    with pytest.raises(Exception, match="JSON-serialisable"):
        store.enqueue_job("rl", {"x": object()})


def test_stale_job_is_requeued_then_failed_after_max_attempts(store):
    job_id = store.enqueue_job("rl", {}, max_attempts=2)
    store.claim_job("dead-1")
    time.sleep(0.05)
    assert store.requeue_stale_jobs(timeout_s=10) == []  # still fresh
    assert store.requeue_stale_jobs(timeout_s=0.01) == [job_id]
    job = store.get_job(job_id)
    assert (job.status, job.worker_id, job.attempts) == ("queued", None, 1)
    assert "requeued" in job.message
    assert store.claim_job("dead-2").attempts == 2
    with pytest.raises(JobError, match="belongs to worker 'dead-2'"):
        store.finish_job(job_id, {}, worker_id="dead-1")  # the zombie cannot finish it
    time.sleep(0.05)
    assert store.requeue_stale_jobs(timeout_s=0.01) == [job_id]
    job = store.get_job(job_id)
    assert job.status == "failed" and "gave up after 2 attempts" in job.error


def test_a_restarted_worker_releases_only_its_own_running_jobs(store):
    mine = store.enqueue_job("rl", {}, max_attempts=2)
    theirs = store.enqueue_job("rl", {})
    store.claim_job("app-1")
    store.claim_job("app-2")
    assert store.release_jobs("app-1") == [mine]  # fresh heartbeat or not: that process is gone
    assert store.get_job(mine).status == "queued" and "worker 'app-1' restarted" in store.get_job(mine).message
    assert store.get_job(theirs).status == "running"
    store.claim_job("app-1")
    assert store.release_jobs("app-1") == [mine]
    job = store.get_job(mine)
    assert job.status == "failed" and "gave up after 2 attempts" in job.error
    assert store.release_jobs("app-1") == []


def test_concurrent_claims_never_share_a_job(db_path):
    first = AnnotationStore(str(db_path))
    ids = {first.enqueue_job("rl", {"i": i}) for i in range(12)}
    stores = [first, AnnotationStore(str(db_path))]  # two "processes" worth of engines
    claimed: list[tuple[str, int]] = []
    barrier = threading.Barrier(6)

    def worker(w: int) -> None:
        barrier.wait()
        while (job := stores[w % 2].claim_job(f"w{w}")) is not None:
            claimed.append((f"w{w}", job.id))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for _, j in claimed) == sorted(ids)  # each job exactly once
    assert all(j.attempts == 1 for j in first.list_jobs())
    for s in stores:
        s.close()
