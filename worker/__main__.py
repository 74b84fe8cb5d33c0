from gevent import monkey

monkey.patch_all()

"""`python -m worker`: the gevent worker process.

Reads Settings from the environment (REDIS_URL, DATABASE_URL, ESL_HOSTS,
ESL_PASSWORD, AUDIO_FORK_BIND, AUDIO_FORK_PUBLIC_HOST, ...; PROMPTS_DIR for the
rendered prompts, a directory the switch can read too), then runs: the ESL pool
(one connection per FreeSWITCH), the audio-fork WebSocket endpoint, the audio
hub (a round every AUDIO_HUB_TICK_S reads every call's fork socket and runs all
calls' audio through one detector bank; AUDIO_FORK_HUB_READS=0: each fork is
read by its own greenlet instead, about every AUDIO_FORK_READ_PACE_S), the control
channel hub, the reaper, and the GeventWorker on Settings.queue_name.  Prints
`worker: listening on queue <q> as <id>` once it takes jobs.  SIGTERM/SIGINT:
warm shutdown (see worker/runner.py); a second signal: cold.
"""

import argparse  # noqa: E402 - monkey.patch_all() must run first
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections import deque  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from worker import db, events, job  # noqa: E402
from worker.audio_hub import AudioHub  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.prompts import Prompts  # noqa: E402
from worker.reaper import Reaper  # noqa: E402
from worker.runner import GeventWorker  # noqa: E402
from worker.session import Runtime  # noqa: E402
from worker.stt import make_transcriber  # noqa: E402

log = logging.getLogger("worker")

GC_GEN0_THRESHOLD = 20_000   # allocations between young-generation collections (CPython's default: 700)
ESL_READY_WAIT_S = 10.0      # seconds to wait for a first switch before taking jobs anyway (they retry)
LAG_SAMPLES = 20000          # frames kept for the lag percentiles in hs:stats:<worker> (bench, ops)
STATS_TTL_S = 300            # seconds hs:stats:<worker> outlives the worker


class LagStats:
    """Frame arrival -> detector decision latency, as percentiles written to `hs:stats:<worker>`."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.frames = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.frames += 1

    def publish(self, conn: redis.Redis, worker_id: str) -> None:
        if not self.samples:
            return
        ordered = sorted(self.samples)
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        key = f"hs:stats:{worker_id}"
        try:
            conn.hset(key, mapping={"lag_p50_ms": f"{p50 * 1000:.3f}", "lag_p99_ms": f"{p99 * 1000:.3f}",
                                    "frames": self.frames, "pid": os.getpid()})
            conn.expire(key, STATS_TTL_S)
        except redis.exceptions.RedisError as exc:
            log.debug("stats not written: %s", exc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker", description="Hold Slayer gevent worker")
    p.add_argument("--name", default="", help="worker id (default host.pid.random)")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds running calls may continue after SIGTERM (default: WORKER_GRACE_S, "
                        f"else {Settings().worker_grace_s:g})")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty and calls are done")
    return p.parse_args(argv)


def make_detector_factory(rate: int) -> Any:
    from worker.audio.detector import HoldDetector

    def factory(number: str, heard: Any = ()) -> Any:
        """A detector that already knows this company's recordings (stored, and heard in this call)."""
        with db.database.connection_context():
            known = [f.fingerprint_json for f in db.Fingerprint.for_number(number)]
        return HoldDetector(sample_rate=rate, known=[*known, *heard])

    return factory


def active_legs(rt: Runtime) -> set[str]:
    return {u for c in list(rt.active.values()) for u in (c.company_uuid, c.desk_uuid) if u}


def tick(reaper: Reaper, lag: LagStats, conn: redis.Redis, worker_id: str) -> None:
    lag.publish(conn, worker_id)
    reaper.tick()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"worker: bad configuration: {exc}", file=sys.stderr)
        return 2
    if not settings.esl_password:
        print("worker: ESL_PASSWORD is not set; it must match event_socket.conf.xml of your FreeSWITCH "
              "(the stand-in switch takes it as --password)", file=sys.stderr)
        return 2

    from worker.audio_fork import ForkServer
    from worker.esl import EslPool

    db.init_db(settings.database_url)
    conn = redis.Redis.from_url(settings.redis_url)
    worker_id = args.name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"

    pool = EslPool.from_settings(settings)
    pool.start()
    if not pool.wait_ready(ESL_READY_WAIT_S):
        log.warning("worker %s: no FreeSWITCH reachable yet at %s; retrying in the background",
                    worker_id, ",".join(settings.esl_hosts))
    fork = ForkServer(bind=settings.audio_fork_bind, public_host=settings.audio_fork_public_host,
                      read_pace_s=settings.audio_fork_read_pace_s, hub_reads=settings.audio_fork_hub_reads)
    fork.start()
    prompts = Prompts(settings.prompts_dir)
    prompts.warm()
    # Hundreds of calls keep many long-lived objects: a full cyclic collection over all of them stalls
    # every call's audio at once.  What start-up loaded is frozen out of collection, and the young
    # generation is collected less often (reference counting frees almost everything anyway).
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])

    lag = LagStats()
    hub = AudioHub(tick_s=settings.audio_hub_tick_s, max_feed_s=settings.audio_hub_max_feed_s, on_lag=lag.add,
                   cohorts=settings.audio_hub_cohorts)
    rt = Runtime(settings=settings, redis=conn, clients=list(pool.clients), fork_server=fork, prompts=prompts,
                 worker_id=worker_id, detector_factory=make_detector_factory(settings.audio_fork_rate),
                 esl_pool=pool, on_lag=lag.add, transcriber_factory=lambda: make_transcriber(settings),
                 audio_hub=hub)
    job.install(rt)
    control = job.ControlHub(conn, rt)
    control.start()
    reaper = Reaper(conn, pool.clients, worker_id, settings.worker_heartbeat_s,
                    publish=lambda cid, t, d: events.publish(conn, cid, t, d),
                    is_mine=lambda cid: cid in rt.active,
                    my_legs=lambda: active_legs(rt))
    w = GeventWorker([settings.queue_name], connection=conn, name=worker_id,
                     max_jobs=settings.max_calls_per_worker, start_rate=settings.call_start_rate,
                     grace_s=settings.worker_grace_s if args.grace is None else args.grace,
                     heartbeat_s=settings.worker_heartbeat_s,
                     on_tick=lambda: tick(reaper, lag, conn, worker_id))
    runner = gevent.spawn(w.work, burst=args.burst)
    w.started.wait()
    print(f"worker: listening on queue {settings.queue_name} as {worker_id} "
          f"(audio fork on port {fork.port}, ESL {','.join(settings.esl_hosts)})", flush=True)
    try:
        runner.join()
    finally:
        control.stop()
        job.install(None)
        # buffered event rows are stored before the connections go (atexit misses os._exit / SIGKILL)
        for stop in (hub.stop, getattr(fork, "stop", None), pool.close, events.flush,
                     lambda: db.close_all(db.database.obj)):
            if stop is not None:
                try:
                    stop()
                except Exception:  # noqa: BLE001 - shutting down anyway
                    log.exception("worker %s: error while stopping", worker_id)
        log.info("worker %s: exited", worker_id)
    return 0 if runner.successful() else 1


if __name__ == "__main__":
    sys.exit(main())
