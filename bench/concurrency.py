"""How many calls can one worker process watch at once?  (issue 4)

    python bench/concurrency.py --calls 50 [--speed 5] [--hold 30] [--sims K] [--pin] [--flowless]

Starts the stand-in switch(es) and ONE worker (like the demo), enqueues N
simultaneous calls to a company with `--hold` media seconds of hold music and
then an agent (a stored HOLD -> TRANSFER flow for its number: the run measures
watching holds; `--flowless` makes every call transcribe its first
announcement with the embedded recogniser at the same moment instead), and
measures:

* lag: frame arrival at the worker's socket -> the detector's decision on the
  feed holding it (p50/p99 from the worker's `hs:stats:<worker>`, a window of
  its last LAG_SAMPLES feeds; the JSON's p99 is the WORST window sampled during
  the run, p50 the median of the sampled windows),
* CPU: worker CPU milliseconds per second of call time,
* memory: worker RSS growth per concurrent call (KiB),
* missed humans (the call never detected the agent) and late humans (detected
  more than LATE_S media seconds after the agent started talking), and early
  humans (a "person" detected in the hold music, before the agent: a false
  transfer).

`--sims K` splits the calls over K stand-in switch processes (the worker gets
them all in ESL_HOSTS and spreads its calls over them), default one per
SIM_CALLS calls.  The worker's CPU and run-queue wait, each switch's CPU and
the embedded Redis's CPU are read from /proc and reported separately, so a
starved switch (or worker) is visible.  `--pin` puts the worker on CPU 0 and
the switches and Redis on the others (a fair split of a 2-core machine; other
users' processes are not moved).  Audio forks that could not connect (the
worker logs "audio fork could not connect") are counted: the run fails if any.

Prints a table, then one JSON line
`{"calls", "lag_p50_ms", "lag_p99_ms", "cpu_ms_per_call_second", "rss_kb_per_call",
"missed_humans", "late_humans", "early_humans", "worker_cores", "worker_cpu_wait_pct",
"sim_cores", "sim_cores_per_100_calls", "redis_cores", "fork_failures"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.demo import Stack  # noqa: E402
from worker import db, events, queueing  # noqa: E402
from worker.config import Settings  # noqa: E402

NUMBER = "+15550107700"
LATE_S = 5.0  # media seconds after the agent starts talking that still count as "on time"
SAMPLE_S = 0.5  # seconds between worker CPU/RSS samples
MUSIC = "/usr/share/asterisk/moh/macroform-the_simplicity.wav"
STEADY_SETTLE_S = 5.0  # seconds after every call is holding before lag windows count as steady (a
                       # window spans the worker's last LAG_SAMPLES feeds: ~4 s at 500 calls)
EARLY_S = 0.5  # a "human" this many media seconds before the agent started is a false one (hold music)
SIM_CALLS = 250  # calls per stand-in switch process by default (~0.1 core per 100 calls, bench/sim_media.py)
HOLD_FLOW = [{"type": "HOLD"}, {"type": "TRANSFER"}]  # the stored flow (see --flowless)
FORK_FAILED = "audio fork could not connect"  # the worker's warning on mod_audio_fork::connect_failed


def company(hold_s: float) -> dict:
    return {
        "number": NUMBER,
        "name": "Bench Co",
        "ring_seconds": 1,
        "outcome": "answer",
        "voices": {"ivr": "en-us", "agent": "en-us+f3"},  # the agent is another person than the recording
        "hold": {
            "music": {"file": MUSIC},
            "announcement": {"say": "Thank you for holding."},
            "announce_every_seconds": 20,
            "duration_seconds": hold_s,
            "then": "agent",
        },
        "agent": {
            "greeting": {"say": "Hello, you are speaking with Robin, how can I help you today?"},
            "wait_when_asked_seconds": 600,
        },
    }


def extra_sim(stack: Stack, name: str) -> Any:
    """Another stand-in switch process like Stack.start_sim's (same companies, phones, speed)."""
    argv = ["-m", "sim", "--esl-host", "127.0.0.1", "--esl-port", "0", "--companies", str(stack.companies),
            "--phones", stack.phones, "--speed", str(stack.speed)]
    return stack._spawn(name, "sim", argv)


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS KiB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return cpu, rss


def run_queue_wait(pid: int) -> float:
    """Seconds the process was runnable but waiting for a CPU (/proc/<pid>/schedstat), summed over its
    threads: how much of its lag a busy machine, not the worker itself, caused."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def pin(worker_pid: int, other_pids: list[int]) -> None:
    """The worker alone on CPU 0; everything else of the bench on the remaining CPUs (all threads)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    for pid, mask in [(worker_pid, {cpus[0]}), *[(p, set(cpus[1:])) for p in other_pids]]:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), mask)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--speed", type=float, default=1.0, help="switch speed (frames arrive this much faster)")
    p.add_argument("--hold", type=float, default=None,
                   help="media seconds of hold before the agent (default: 20 + the worker's start-up ramp, "
                        "calls / CALL_START_RATE, so that every call is holding at once)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--flowless",
        action="store_true",
        help="no stored call flow: every call transcribes its first announcement (flow-less "
        "navigation, embedded pocketsphinx) at the same moment; the default stores HOLD -> TRANSFER "
        "for the number, so the run measures watching holds",
    )
    p.add_argument("--trace", action="store_true",
                   help="print each sample (wall s, calls holding, the lag window's p50/p99 ms, "
                        "worker CPU s) to stderr: where in the run the lag spikes")
    p.add_argument("--sims", type=int, default=0, help=f"switch processes (default 1 per {SIM_CALLS} calls)")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin the worker to CPU 0, the switches and Redis to the other CPUs",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=None,
        help="set the switches' and the worker's nice value (e.g. -5 as root on a shared, busy machine)",
    )
    args = p.parse_args(argv)
    if args.calls < 1:
        p.error("--calls must be >= 1")
    if args.sims < 0:
        p.error("--sims must be >= 0")
    n_sims = args.sims or -(-args.calls // SIM_CALLS)
    start_rate = float(os.environ.get("CALL_START_RATE", "") or Settings().call_start_rate)
    if args.hold is None:
        args.hold = 20.0 + (args.calls / start_rate if start_rate > 0 else 0.0)

    work = Path(tempfile.mkdtemp(prefix="hs-bench-"))
    companies = work / "companies"
    companies.mkdir()
    (companies / "bench.json").write_text(json.dumps(company(args.hold)))
    stack = Stack(
        work,
        redis_url=os.environ.get("REDIS_URL", ""),
        speed=args.speed,
        companies=companies,
        phones="1000:answer:1",
        heartbeat_s=2,
        env={
            "MAX_CALLS_PER_WORKER": str(max(args.calls, 10)),
            "LOG_LEVEL": "WARNING",
            "SIM_LOG_LEVEL": "WARNING",
            "DESK_RING_TIMEOUT": "60",
        },
    )
    try:
        sims = [stack.start_sim()]
        hosts = [f"127.0.0.1:{stack.esl_port}"]
        first_port = stack.esl_port
        for i in range(1, n_sims):
            sims.append(extra_sim(stack, f"sim{i}"))
            hosts.append(f"127.0.0.1:{sims[-1].match['port']}")
        stack.esl_port = first_port
        worker = stack.start_worker(env={"ESL_HOSTS": ",".join(hosts)})
        stack.seed(NUMBER, None if args.flowless else HOLD_FLOW, devices=("1000",), flow_name="Bench Co")
        conn = redis.Redis.from_url(stack.redis_url)
        settings = Settings(redis_url=stack.redis_url, database_url=stack.database_url)
        db.init_db(stack.database_url)
        redis_pid = getattr(stack._redis_server, "pid", None)  # None with an external REDIS_URL
        if args.nice is not None:
            for proc in [*sims, worker]:
                os.setpriority(os.PRIO_PROCESS, proc.popen.pid, args.nice)
        if args.pin:
            pin(worker.popen.pid, [s.popen.pid for s in sims] + ([redis_pid] if redis_pid else []))
        cpu0, rss0 = proc_stats(worker.popen.pid)
        wait0 = run_queue_wait(worker.popen.pid)
        sim_cpu0 = [proc_stats(s.popen.pid)[0] for s in sims]
        redis_cpu0 = proc_stats(redis_pid)[0] if redis_pid else 0.0
        stats_key = f"hs:stats:{worker.match['id']}"
        windows: list[tuple[float, float]] = []  # (p50, p99) of the worker's lag window, sampled
        # the same while every call is holding (set-up ramp over, no transfer yet): the steady state
        steady: list[tuple[float, float]] = []
        all_holding_at: float | None = None   # when every call was first holding at once
        steady_over = False                   # a call moved on since: the steady state is over
        steady_cpu: list[tuple[float, float]] = []  # (wall, worker CPU s) while every call is holding
        peak_holding = 0
        started = time.monotonic()
        ids = []
        with db.database.connection_context():
            for _ in range(args.calls):
                call, _job = queueing.launch(
                    conn,
                    {"number": NUMBER, "intent": "bench", "transfer_to": "1000"},
                    settings,
                    source="bench",
                )
                ids.append(call.id)
        peak_rss = rss0
        pending = set(ids)
        deadline = started + args.timeout
        while pending and time.monotonic() < deadline:
            time.sleep(SAMPLE_S)  # sampling /proc at a fixed rate is the measurement, not a sync
            peak_rss = max(peak_rss, proc_stats(worker.popen.pid)[1])
            now = {_text(k): _text(v) for k, v in conn.hgetall(stats_key).items()}
            if "lag_p99_ms" in now:
                windows.append((float(now["lag_p50_ms"]), float(now["lag_p99_ms"])))
            with db.database.connection_context():
                holding = db.Call.select().where(db.Call.id.in_(ids) & (db.Call.status == "holding")).count()
                done = {
                    c.id
                    for c in db.Call.select(db.Call.id).where(
                        db.Call.id.in_(list(pending))
                        & db.Call.status.in_(["transferred", *db.FINAL_STATUSES])
                    )
                }
            peak_holding = max(peak_holding, holding)
            t = time.monotonic()
            if args.trace:
                p50, p99 = windows[-1] if windows else (0.0, 0.0)
                print(f"trace {t - started:7.1f} s  holding {holding:4d}  p50 {p50:7.1f}  p99 {p99:7.1f}  "
                      f"cpu {proc_stats(worker.popen.pid)[0]:7.2f}", file=sys.stderr)
            if holding == args.calls and not steady_over:
                all_holding_at = all_holding_at or t
                steady_cpu.append((t, proc_stats(worker.popen.pid)[0]))
                if t - all_holding_at >= STEADY_SETTLE_S and "lag_p99_ms" in now:
                    steady.append(windows[-1])
            elif all_holding_at is not None:
                steady_over = True
            pending -= done
        wall = time.monotonic() - started
        cpu1, _ = proc_stats(worker.popen.pid)
        starved = run_queue_wait(worker.popen.pid) - wait0
        sim_cpu = [proc_stats(s.popen.pid)[0] - c0 for s, c0 in zip(sims, sim_cpu0, strict=True)]
        redis_cpu = proc_stats(redis_pid)[0] - redis_cpu0 if redis_pid else 0.0
        fork_failures = sum(
            line.count(FORK_FAILED) for line in worker.log_path.read_text(errors="replace").splitlines()
        )
        stats = {_text(k): _text(v) for k, v in conn.hgetall(stats_key).items()}
        if "lag_p99_ms" in stats:
            windows.append((float(stats["lag_p50_ms"]), float(stats["lag_p99_ms"])))

        missed = late = early = 0
        call_seconds = 0.0
        rows = []
        with db.database.connection_context():
            for cid in ids:
                c = db.Call.get_by_id(cid)
                hist = events.history(None, cid)
                human = next((e for e in hist if e["type"] == "human.detected"), None)
                hold_ev = next((e for e in hist if e["type"] == "hold.started"), None)
                delay = None
                if human is None:
                    missed += 1
                elif hold_ev is not None:
                    delay = human["data"]["t"] - hold_ev["data"]["media_t"] - args.hold
                    late += delay > LATE_S
                    early += delay < -EARLY_S
                start, end = c.started_at, c.bridged_at or c.ended_at
                if start and end:
                    call_seconds += (end - start).total_seconds()
                rows.append((cid[:8], c.status, c.hold_seconds(), delay))
        lag50 = pct([w[0] for w in windows], 0.5)
        lag99 = max((w[1] for w in windows), default=0.0)
        steady50 = pct([w[0] for w in steady], 0.5) if steady else None
        steady99 = max((w[1] for w in steady), default=None)
        steady_ms = None
        if len(steady_cpu) >= 2:
            (w0, c0), (w1, c1) = steady_cpu[0], steady_cpu[-1]
            steady_ms = round((c1 - c0) * 1000 / ((w1 - w0) * args.calls), 3) if w1 > w0 else None
        result = {
            "calls": args.calls,
            "lag_p50_ms": round(lag50, 3),
            "lag_p99_ms": round(lag99, 3),
            "cpu_ms_per_call_second": round((cpu1 - cpu0) * 1000 / call_seconds, 3) if call_seconds else None,
            "rss_kb_per_call": round((peak_rss - rss0) / args.calls, 1),
            "missed_humans": missed,
            "late_humans": int(late),
            "early_humans": int(early),
            "worker_cores": round((cpu1 - cpu0) / wall, 3),
            "worker_cpu_wait_pct": round(100 * starved / wall, 1),
            "sim_cores": round(sum(sim_cpu) / wall, 3),
            "sim_cores_per_100_calls": round(sum(sim_cpu) / wall * 100 / args.calls, 3),
            "redis_cores": round(redis_cpu / wall, 3) if redis_pid else None,
            "fork_failures": fork_failures,
            "peak_holding": peak_holding,
            "steady_lag_p50_ms": None if steady50 is None else round(steady50, 3),
            "steady_lag_p99_ms": None if steady99 is None else round(steady99, 3),
            "steady_cpu_ms_per_call_second": steady_ms,
            "steady_seconds": round(steady_cpu[-1][0] - steady_cpu[0][0], 1) if len(steady_cpu) >= 2 else 0.0,
        }
        print(f"{'call':10} {'status':16} {'hold_s':>8} {'human_after_agent_s':>20}")
        for cid, status, hold, delay in rows:
            shown = f"{delay:.2f}" if delay is not None else "-"
            print(f"{cid:10} {status:16} {hold if hold is not None else '-':>8} {shown:>20}")
        print(f"\n{args.calls} calls in {wall:.1f}s wall (speed x{args.speed:g}); unfinished: {len(pending)}")
        print(
            f"lag p50 {lag50:.2f} ms (median window), p99 {lag99:.2f} ms (worst of {len(windows)} windows); "
            f"{stats.get('frames', 0)} feeds"
        )
        print(
            f"all {args.calls} calls holding at once for {result['steady_seconds']}s (peak {peak_holding}): "
            f"lag p50 {result['steady_lag_p50_ms']} ms, p99 {result['steady_lag_p99_ms']} ms (worst of "
            f"{len(steady)} windows), worker CPU {steady_ms} ms per call-second"
        )
        print(
            f"worker CPU {cpu1 - cpu0:.2f}s in {wall:.1f}s wall ({(cpu1 - cpu0) / wall:.2f} cores) for "
            f"{call_seconds:.0f} call-seconds; RSS {rss0} -> {peak_rss} KiB; runnable but waiting for a CPU "
            f"{starved:.1f}s ({starved / wall:.0%} of the wall time)"
        )
        print(
            f"{n_sims} switch process(es): CPU "
            + ", ".join(f"{c:.1f}s ({c / wall:.2f} cores)" for c in sim_cpu)
            + f"; machine load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
            + (f"; nice {args.nice}" if args.nice is not None else "")
            + ("; pinned: worker on CPU 0, the rest on the others" if args.pin else "")
        )
        print(
            f"switches together {result['sim_cores']:.2f} cores ({result['sim_cores_per_100_calls']:.3f} per "
            "100 calls)"
            + (f"; embedded Redis {redis_cpu / wall:.2f} cores" if redis_pid else "")
            + f"; audio forks that could not connect: {fork_failures}"
        )
        print(json.dumps(result), flush=True)
        return 0 if not pending and not fork_failures else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
