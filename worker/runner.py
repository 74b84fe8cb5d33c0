"""The gevent RQ worker: one process, many calls at once.

RQ's stock worker forks one "work horse" process per job and waits for it.
That model fits short CPU-bound jobs; a hold-slayer job is the opposite: it is
I/O-bound (ESL events, 50 audio frames a second, Redis), lasts minutes to
hours, and one process must watch hundreds of them.  So this worker keeps
RQ's bookkeeping (worker registration, StartedJobRegistry / FinishedJobRegistry
/ FailedJobRegistry through RQ's own `perform_job`, executions, heartbeats,
`job.meta`, the JSON serializer) and replaces the fork with a greenlet per job
in a capped `gevent.pool.Pool`.

Shutdown (SIGTERM / SIGINT, or `rq` "shutdown" command): stop dequeuing at
once; running calls continue for `grace_s`; then each remaining greenlet gets
`CallInterrupted("worker_shutdown")`, which the job turns into a hung-up leg and
a call marked failed.  A second signal skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.pool
import redis
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from worker.errors import CallInterrupted

log = logging.getLogger(__name__)

DEQUEUE_POLL_S = 1            # seconds one BLMOVE waits; bounds how fast a stop request is noticed
REDIS_BACKOFF_MAX_S = 30.0    # cap of the exponential backoff while Redis is unreachable
DEFAULT_GRACE_S = 30.0        # seconds running calls may continue after a warm shutdown request
JOB_TIMEOUT_FLOOR_S = 4 * 3600 + 600  # a call may legitimately last max_hold_s; never kill it sooner
REDIS_SPARE_CONNECTIONS = 50    # Redis connections beyond one per running call (dequeue, heartbeats, stats)


class GreenletDeathPenalty(BaseDeathPenalty):
    """Job timeout as a `gevent.Timeout` in the job's own greenlet (SIGALRM is per process)."""

    def setup_death_penalty(self) -> None:
        self._timer: gevent.Timeout | None = None
        if self._timeout and self._timeout > 0:
            message = f"Task exceeded maximum timeout value ({self._timeout} seconds)"
            self._timer = gevent.Timeout(self._timeout, self._exception(message))
            self._timer.start()

    def cancel_death_penalty(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None


@dataclass
class _Running:
    job: Job
    queue: Queue
    execution: Execution
    greenlet: gevent.Greenlet | None = None


class GeventWorker(BaseWorker):
    """An RQ worker that runs up to `max_jobs` jobs concurrently as greenlets."""

    death_penalty_class = GreenletDeathPenalty

    def __init__(
        self,
        queues: str | Queue | Sequence[str] | Sequence[Queue],
        *,
        connection: redis.Redis,
        name: str | None = None,
        max_jobs: int = 500,
        grace_s: float = DEFAULT_GRACE_S,
        heartbeat_s: float = 10.0,
        job_timeout_floor_s: int = JOB_TIMEOUT_FLOOR_S,
        on_tick: Callable[[], None] | None = None,
        start_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("serializer", "json")
        kwargs.setdefault("job_monitoring_interval", max(1, int(heartbeat_s)))
        kwargs.setdefault("worker_ttl", max(30, int(heartbeat_s) * 3))
        super().__init__(queues, name=name, connection=connection, **kwargs)
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        if start_rate < 0:
            raise ValueError(f"start_rate must be >= 0 calls per second, got {start_rate}")
        self.max_jobs = max_jobs
        # Calls started per second at most (0: no limit).  A call's set-up (originate, fork, rows,
        # events) is the burst of its life; hundreds at once would hold up every other call's audio
        # (one process, cooperative greenlets) and exceed what SIP trunks accept (calls per second).
        self.start_interval = 1.0 / start_rate if start_rate > 0 else 0.0
        self._next_start = 0.0
        # Every running call may hold a Redis connection at once (events, job meta); redis-py's pool
        # defaults to 100 and raises "Too many connections" past it (seen at 500 calls).
        rpool = getattr(connection, "connection_pool", None)
        want = max_jobs + REDIS_SPARE_CONNECTIONS
        if rpool is not None and isinstance(getattr(rpool, "max_connections", None), int):
            rpool.max_connections = max(rpool.max_connections, want)
        self.grace_s = grace_s
        self.heartbeat_s = heartbeat_s
        self.job_timeout_floor_s = job_timeout_floor_s
        self.on_tick = on_tick
        self.pool = gevent.pool.Pool(max_jobs)
        self.running: dict[str, _Running] = {}          # execution id -> running job
        self._stop = gevent.event.Event()                # set: stop dequeuing
        self._cold = gevent.event.Event()                # set: skip the grace period
        self.started = gevent.event.Event()              # set once registered and dequeuing
        self._maintainer: gevent.Greenlet | None = None

    # --- public ---------------------------------------------------------------
    def request_warm_stop(self, reason: str = "requested") -> None:
        """Stop dequeuing; running calls get `grace_s` to finish. A second request is a cold stop."""
        if self._stop.is_set():
            log.warning("worker %s: second stop request (%s): cold shutdown", self.name, reason)
            self._cold.set()
        else:
            log.info("worker %s: warm shutdown requested (%s): %d call(s) running, grace %.0fs",
                     self.name, reason, len(self.running), self.grace_s)
        self._shutdown_requested_date = now()
        self._stop.set()

    def request_cold_stop(self) -> None:
        self._cold.set()
        self._stop.set()

    def work(self, burst: bool = False, logging_level: str | None = None, **_: Any) -> bool:  # type: ignore[override]
        """Run until stopped (or, with `burst`, until the queues are empty and every job is done)."""
        self.register_birth()
        self.subscribe()
        self.set_state(WorkerStatus.STARTED)
        self._install_signal_handlers()
        self._maintainer = gevent.spawn(self._maintain_loop)
        log.info("worker %s: listening on %s (max %d concurrent calls)",
                 self.name, ",".join(self.queue_names()), self.max_jobs)
        self.started.set()
        worked = False
        backoff = 1.0
        try:
            while not self._stop.is_set():
                if self.pool.full():
                    self.pool.wait_available(timeout=DEQUEUE_POLL_S)
                    continue
                pace = self._next_start - time.monotonic()
                if pace > 0:
                    self._stop.wait(min(pace, DEQUEUE_POLL_S))   # the job stays queued meanwhile
                    continue
                try:
                    result = self.queue_class.dequeue_any(
                        self._ordered_queues, None if burst else DEQUEUE_POLL_S,
                        connection=self.connection, job_class=self.job_class,
                        serializer=self.serializer, death_penalty_class=self.death_penalty_class,
                    )
                    backoff = 1.0
                except DequeueTimeout:
                    continue
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    log.error("worker %s: Redis unreachable (%s), retrying in %.0fs", self.name, exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, REDIS_BACKOFF_MAX_S)
                    continue
                if result is None:      # burst mode and the queues are empty
                    self.pool.join()
                    break
                job, queue = result
                if self._stop.is_set():   # arrived during the last BLMOVE: leave it for another worker
                    self._put_back(job, queue)
                    break
                worked = True
                self._start(job, queue)
                if self.start_interval:
                    self._next_start = time.monotonic() + self.start_interval
        finally:
            self._drain()
            if self._maintainer is not None:
                self._maintainer.kill()
            self.teardown()
            log.info("worker %s: stopped", self.name)
        return worked

    # --- RQ hooks ---------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                gevent.signal_handler(sig, self.request_warm_stop, signal.Signals(sig).name)
            except ValueError:   # not the main thread (embedded in tests): signals stay with the host
                log.debug("worker %s: signal handlers not installed (not main thread)", self.name)
                return

    def request_stop(self, signum: int, frame: Any) -> None:
        # RQ's "shutdown" command sends SIGINT to us; gevent's handler covers it, this is RQ's fallback.
        self.request_warm_stop(signal.Signals(signum).name)

    def request_stop_execution(self, execution_id: str) -> None:
        """RQ "stop-job" command: interrupt that call only; RQ marks the job STOPPED."""
        running = self.running.get(execution_id)
        if running is None or running.greenlet is None:
            log.warning("worker %s: stop requested for unknown execution %s", self.name, execution_id)
            return
        self._stopped_job_id = running.job.id
        running.greenlet.kill(CallInterrupted("stopped"), block=False)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(self.job_monitoring_interval) + 60

    # --- internals --------------------------------------------------------------
    def _start(self, job: Job, queue: Queue) -> None:
        if job.timeout is not None and job.timeout != -1 and job.timeout < self.job_timeout_floor_s:
            job.timeout = self.job_timeout_floor_s     # in memory only: RQ's 180 s default would kill calls
        execution = self.prepare_execution(job)
        running = _Running(job, queue, execution)
        self.running[execution.id] = running
        greenlet = gevent.Greenlet(self._perform, running)
        running.greenlet = greenlet
        self.pool.start(greenlet)
        log.info("worker %s: job %s started (%d running)", self.name, job.id, len(self.running))

    def _put_back(self, job: Job, queue: Queue) -> None:
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.lpush(queue.key, job.id)
            pipe.execute()
        log.info("worker %s: job %s put back on %s (stopping)", self.name, job.id, queue.name)

    def _perform(self, running: _Running) -> None:
        job = running.job
        try:
            self.perform_job(job, running.queue, running.execution)
        except BaseException:     # noqa: BLE001 - perform_job records failures itself; never crash the pool
            log.exception("worker %s: job %s: unexpected error around perform_job", self.name, job.id)
        finally:
            self.running.pop(running.execution.id, None)
            self.executions.pop(running.execution.id, None)
            try:
                self.set_state(WorkerStatus.BUSY if self.running else WorkerStatus.IDLE)
            except redis.exceptions.RedisError as exc:
                log.warning("worker %s: could not set state: %s", self.name, exc)
            log.info("worker %s: job %s done (%s), %d running", self.name, job.id,
                     job.get_status(refresh=False), len(self.running))

    def _maintain_loop(self) -> None:
        """Worker + job heartbeats and the `on_tick` hook (the reaper), every heartbeat period."""
        while True:
            try:
                self._maintain_once()
            except redis.exceptions.RedisError as exc:
                log.warning("worker %s: heartbeat failed: %s", self.name, exc)
            except Exception:   # noqa: BLE001 - a bug here must not stop heartbeats for good
                log.exception("worker %s: maintenance failed", self.name)
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:   # noqa: BLE001 - the reaper logs its own errors; keep ticking
                    log.exception("worker %s: tick hook failed", self.name)
            gevent.sleep(self.heartbeat_s)

    def _maintain_once(self) -> None:
        ttl = self.get_heartbeat_ttl(None)  # type: ignore[arg-type]
        with self.connection.pipeline() as pipe:
            self.heartbeat(self.worker_ttl + 60, pipeline=pipe)
            for running in list(self.running.values()):
                running.execution.heartbeat(running.job.started_job_registry, ttl, pipeline=pipe)
                running.job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
            pipe.execute()

    def _drain(self) -> None:
        """Let running calls finish within the grace period, then interrupt the rest."""
        if not self.running:
            return
        log.info("worker %s: waiting up to %.0fs for %d running call(s)",
                 self.name, self.grace_s, len(self.running))
        waiter = gevent.spawn(self.pool.join)
        cold = gevent.spawn(self._cold.wait)
        gevent.wait([waiter, cold], timeout=self.grace_s, count=1)
        gevent.killall([waiter, cold])
        if self.running:
            log.warning("worker %s: grace over: interrupting %d call(s)", self.name, len(self.running))
            for running in list(self.running.values()):
                if running.greenlet is not None:
                    running.greenlet.kill(CallInterrupted("worker_shutdown"), block=False)
            self.pool.join(timeout=max(10.0, self.grace_s))


def current_worker_meta_hook(job: Job | None) -> Callable[..., None]:
    """A `meta(**kw)` function for the job running in this greenlet (no-op outside RQ)."""
    if job is None:
        return lambda **_: None

    def update(**meta: Any) -> None:
        try:
            job.meta.update(meta)
            job.save_meta()
        except redis.exceptions.RedisError as exc:
            log.warning("job %s: could not save meta: %s", job.id, exc)

    return update


__all__ = ["GeventWorker", "GreenletDeathPenalty", "JobTimeoutException", "current_worker_meta_hook"]
