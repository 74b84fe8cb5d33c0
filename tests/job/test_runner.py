"""GeventWorker against a real Redis: concurrency, cap, registries, meta, warm shutdown."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import gevent.event
import pytest
import runner_jobs
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from worker.runner import GeventWorker

WAIT_S = 10.0


@pytest.fixture
def queue(redis_conn, uniq) -> Queue:
    runner_jobs.reset()
    return Queue(f"hs-test-{uniq}", connection=redis_conn, serializer="json")


@pytest.fixture
def make_worker(redis_conn, queue) -> Iterator:
    made: list[tuple[GeventWorker, gevent.Greenlet]] = []

    def make(**kw) -> GeventWorker:
        w = GeventWorker([queue], connection=redis_conn, heartbeat_s=kw.pop("heartbeat_s", 1), **kw)
        g = gevent.spawn(w.work)
        assert w.started.wait(WAIT_S)
        made.append((w, g))
        return w

    yield make
    for w, g in made:
        w.request_cold_stop()
        for ev in runner_jobs.release.values():
            ev.set()
        g.join(WAIT_S)
        assert g.dead


def _started(name: str) -> gevent.event.Event:
    return runner_jobs.started.setdefault(name, gevent.event.Event())


def _release(name: str) -> None:
    runner_jobs.release.setdefault(name, gevent.event.Event()).set()


def _wait_status(job: Job, status: JobStatus) -> None:
    with gevent.Timeout(WAIT_S, AssertionError(f"job {job.id} never reached {status}: {job.get_status()}")):
        while job.get_status(refresh=True) != status:
            gevent.sleep(0.02)   # polling Redis state with a deadline, not synchronising on time


def test_runs_jobs_concurrently_and_keeps_registries(make_worker, queue, redis_conn):
    names = [f"call{i}" for i in range(5)]
    jobs = [queue.enqueue("runner_jobs.block", n) for n in names]
    w = make_worker(max_jobs=10)
    for n in names:
        assert _started(n).wait(WAIT_S), f"{n} never started"
    # All five are in flight in one process at the same time.
    started = StartedJobRegistry(queue=queue)
    assert sorted(started.get_job_ids()) == sorted(j.id for j in jobs)
    assert len(w.running) == 5
    assert redis_conn.hget(w.key, "state") == b"busy"
    for n in names:
        _release(n)
    for j in jobs:
        _wait_status(j, JobStatus.FINISHED)
        assert j.return_value(refresh=True) == f"done {j.args[0]}"
    assert sorted(FinishedJobRegistry(queue=queue).get_job_ids()) == sorted(j.id for j in jobs)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []


def test_caps_concurrency(make_worker, queue):
    jobs = [queue.enqueue("runner_jobs.block", n) for n in ("a", "b", "c")]
    w = make_worker(max_jobs=2)
    assert _started("a").wait(WAIT_S) and _started("b").wait(WAIT_S)
    assert w.pool.full()
    assert queue.count == 1 and not _started("c").is_set()
    _release("a")
    assert _started("c").wait(WAIT_S)
    _release("b")
    _release("c")
    for j in jobs:
        _wait_status(j, JobStatus.FINISHED)


def test_start_rate_spaces_call_starts(make_worker, queue):
    # 1 call per second: the runner dequeues the next job only 1 s after starting one (the
    # queued jobs wait in Redis meanwhile, where another worker may take them).  The job functions
    # record when they began to run, which is up to a few Redis round trips after the dequeue
    # (more on a loaded machine): a quarter of the interval is allowed for that.
    jobs = [queue.enqueue("runner_jobs.block", n) for n in ("a", "b", "c")]
    make_worker(max_jobs=10, start_rate=1.0)
    for n in ("a", "b", "c"):
        assert _started(n).wait(WAIT_S), f"{n} never started"
    t = runner_jobs.started_at
    assert t["b"] - t["a"] >= 0.75 and t["c"] - t["b"] >= 0.75 and t["c"] - t["a"] >= 1.75, t
    for n in ("a", "b", "c"):
        _release(n)
    for j in jobs:
        _wait_status(j, JobStatus.FINISHED)


def test_failure_goes_to_failed_registry(make_worker, queue):
    job = queue.enqueue("runner_jobs.fail", "boom")
    make_worker(max_jobs=3)
    _wait_status(job, JobStatus.FAILED)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    assert "boom" in (job.latest_result().exc_string or "")


def test_warm_shutdown_lets_quick_calls_finish(make_worker, queue):
    job = queue.enqueue("runner_jobs.block", "quick")
    w = make_worker(max_jobs=3, grace_s=WAIT_S)
    assert _started("quick").wait(WAIT_S)
    w.request_warm_stop("test")
    later = queue.enqueue("runner_jobs.block", "later")
    _release("quick")
    _wait_status(job, JobStatus.FINISHED)
    assert later.get_status(refresh=True) == JobStatus.QUEUED   # no dequeuing after the stop request
    assert "quick" not in runner_jobs.interrupted


def test_warm_shutdown_interrupts_calls_after_grace(make_worker, queue):
    job = queue.enqueue("runner_jobs.block", "long")
    w = make_worker(max_jobs=3, grace_s=0.3)
    assert _started("long").wait(WAIT_S)
    w.request_warm_stop("test")
    _wait_status(job, JobStatus.FAILED)
    assert runner_jobs.interrupted["long"] == "worker_shutdown"
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()


def test_rejects_bad_cap(redis_conn, queue):
    with pytest.raises(ValueError, match="max_jobs"):
        GeventWorker([queue], connection=redis_conn, max_jobs=0)
    with pytest.raises(ValueError, match="start_rate"):
        GeventWorker([queue], connection=redis_conn, start_rate=-1)
