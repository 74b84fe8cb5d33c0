"""The audio hub: one greenlet per worker drives every call's audio through one detector bank.

    hub = AudioHub(tick_s=0.1, on_lag=stats.add)
    hub.add(sink)          # a call with audio: sink.fork_stream, sink.detector, sink.on_audio(...)
    ...                    # every round the hub calls sink.on_audio(chunk, arrival, detector, events, closed)
    hub.remove(sink)       # (also done once the sink's stream closed)
    hub.stop()

The calls are split into `cohorts` groups of about equal size (a new group only once every group
has `cohort_min_calls`), served in turn: every `tick_s` wall seconds each call gets one round, and
a round (every tick_s / groups with calls) serves one group.  A
call's lag is then one tick plus the time of a round over its cohort only, and a round held up by
other work (a call's own greenlet, a database write) delays a fraction of the calls, not all.

A round reads every call of its cohort's fork socket without waiting (`ForkStream.poll`, in the
fork server's hub-read mode), takes its frames (`ForkStream.take`, at most `max_feed_s` of media
per call: a backlog catches up over a few rounds), runs
`worker.audio.bank.feed_many` once for all of them (one set of numpy calls for the whole worker,
not one per call) and hands each call its audio and events.  Rounds start every `tick_s` /
(cohorts with calls) wall seconds; sooner when the audio comes faster than real time (a round
took more than 1.5 tick's worth of media from some call: the next round comes after tick_s / that
speed, as in the fast e2e tests with the switch at x20), or when a connection read by its own
greenlet has `due_s` of media waiting.  The greenlet exists only while calls are registered.

The lag reported to `on_lag` (per call and round) runs from the moment the round's first frame
of that call was known to be in the socket at the latest (hub reads: the previous read that found
the socket drained; an upper bound) to the end of the bank's analysis of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.event

from worker.audio.bank import feed_many

log = logging.getLogger(__name__)

TICK_S = 0.1        # wall seconds between two rounds of one call (the worker reads AUDIO_HUB_TICK_S)
COHORTS = 4         # rounds per tick, each over a quarter of the calls (AUDIO_HUB_COHORTS) ...
COHORT_MIN_CALLS = 100  # ... once there are this many calls per cohort (a round has a fixed cost too:
                        # 50 calls in 4 rounds a tick cost 45 % more CPU than in one, for no gain)
DUE_S = 0.2         # media seconds waiting in one call that start a round before the tick
MAX_FEED_S = 2.0    # media seconds of one call analysed per round at most
FAST_SPEED = 1.5    # media seconds per wall second above which rounds come faster than tick_s
MIN_TICK_S = 0.002  # ... but never more often than this


class AudioSink(Protocol):
    """What the hub needs from a call (worker.session.CallSession)."""

    call_id: str
    audio_rate: int           # samples per second of the fork (8000 or 16000)
    fork_stream: Any          # worker.audio_fork.ForkStream, or None
    detector: Any             # worker.audio.detector.HoldDetector, or None (bridged: audio not analysed)

    def on_audio(self, chunk: bytes, arrival: float, detector: Any, events: list, closed: bool) -> None: ...


class AudioHub:
    def __init__(self, tick_s: float = TICK_S, due_s: float = DUE_S, max_feed_s: float = MAX_FEED_S,
                 on_lag: Callable[[float], None] | None = None, cohorts: int = COHORTS,
                 cohort_min_calls: int = COHORT_MIN_CALLS) -> None:
        if tick_s <= 0 or due_s <= 0 or max_feed_s <= 0:
            raise ValueError("audio hub tick_s, due_s and max_feed_s must be > 0")
        if not isinstance(cohorts, int) or cohorts < 1:
            raise ValueError(f"audio hub cohorts must be a whole number >= 1, got {cohorts!r}")
        self.tick_s = tick_s
        self.cohorts = cohorts
        self.cohort_min_calls = max(1, cohort_min_calls)
        self.due_s = due_s
        self.max_feed_s = max_feed_s
        self.on_lag = on_lag
        self.rounds = 0
        self.frames = 0
        self.round_media = 0.0   # the most media seconds one call brought in the last round
        self._sinks: dict[int, AudioSink] = {}
        self._cohort_of: dict[int, int] = {}           # id(sink) -> its cohort
        self._members: list[dict[int, AudioSink]] = [{} for _ in range(cohorts)]   # each cohort's calls
        self._due = gevent.event.Event()
        self._loop: gevent.Greenlet | None = None
        self._stopped = False

    def __len__(self) -> int:
        return len(self._sinks)

    def add(self, sink: AudioSink) -> None:
        """Drive this call's audio from its cohort's next round on (adding it again changes nothing)."""
        key = id(sink)
        self._sinks[key] = sink
        cohort = self._cohort_of.get(key)
        if cohort is None:
            opened = min(self.cohorts, 1 + len(self._cohort_of) // self.cohort_min_calls)
            sizes = self.cohort_sizes()[:opened]
            cohort = self._cohort_of[key] = sizes.index(min(sizes))   # the smallest open one: even cohorts
        self._members[cohort][key] = sink
        stream = sink.fork_stream
        if stream is not None:
            stream.notify_when(self._due, int(self.due_s * _bytes_per_s(sink)))
        if self._loop is None and not self._stopped:
            self._loop = gevent.spawn(self._run)

    def remove(self, sink: AudioSink) -> None:
        key = id(sink)
        self._sinks.pop(key, None)
        cohort = self._cohort_of.pop(key, None)
        if cohort is not None:
            self._members[cohort].pop(key, None)

    def cohort_sizes(self) -> list[int]:
        """Calls in each cohort."""
        return [len(m) for m in self._members]

    def stop(self) -> None:
        self._stopped = True
        self._sinks.clear()
        self._cohort_of.clear()
        for members in self._members:
            members.clear()
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.kill(block=True, timeout=5)

    # -- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            now = time.monotonic()
            next_at = now      # when the next scheduled round is due
            previous = [now] * self.cohorts    # when each cohort's last round started
            cohort = -1
            while self._sinks:
                early = self._due.wait(max(0.0, next_at - time.monotonic())) and time.monotonic() < next_at
                self._due.clear()
                serving = [c for c, members in enumerate(self._members) if members]   # (empty: no round)
                if not serving:
                    continue
                if early:       # media waiting before its round: serve every call now
                    served = serving
                else:
                    cohort = next((c for c in serving if c > cohort), serving[0])
                    served = [cohort]
                start = time.monotonic()
                try:
                    self.run_once(None if early else cohort)
                except Exception:  # noqa: BLE001 - one bad round must not stop every call's audio
                    log.exception("audio hub: round failed")
                since = min(start - previous[c] for c in served)
                for c in served:
                    previous[c] = start
                speed = self.round_media / max(since, 1e-3)
                wait = self.tick_s / len(serving)
                if speed > FAST_SPEED:
                    wait /= speed
                if not early:
                    # on a fixed schedule: a round that started late does not push the next ones
                    # back, so the delay costs its own cohort's calls only (after a stall of over
                    # a tick the schedule starts again from now: no burst of catch-up rounds)
                    next_at += max(MIN_TICK_S, wait)
                    if next_at < start - self.tick_s:
                        next_at = start + max(MIN_TICK_S, wait)
                gevent.sleep(0)    # the calls' own greenlets run between rounds, even when behind
        finally:
            if gevent.getcurrent() is self._loop:
                self._loop = None

    def run_once(self, cohort: int | None = None) -> int:
        """One round over the calls of `cohort` (None: every registered call); returns the frames
        analysed."""
        takes: list[tuple[AudioSink, Any, bytes, float, Any, bool]] = []
        items: list[tuple[Any, bytes]] = []
        media = 0.0
        for sink in list((self._sinks if cohort is None else self._members[cohort]).values()):
            stream = sink.fork_stream
            if stream is None:
                continue
            stream.poll()
            bytes_per_s = _bytes_per_s(sink)
            chunk, arrival, closed = stream.take(int(self.max_feed_s * bytes_per_s))
            if not chunk and not closed:
                continue
            media = max(media, len(chunk) / bytes_per_s)
            det = sink.detector
            takes.append((sink, stream, chunk, arrival, det, closed))
            if det is not None and chunk:
                items.append((det, chunk))
        self.round_media = media
        if not takes:
            return 0
        try:
            results = iter(feed_many(items)) if items else iter(())
        except Exception:  # noqa: BLE001 - a detector bug: the calls keep their audio, media time and ticks
            log.exception("audio hub: detector bank failed on %d call(s); their events this round are lost",
                          len(items))
            results = iter([[] for _ in items])
        done = time.perf_counter()
        frames = 0
        self.rounds += 1
        for sink, stream, chunk, arrival, det, closed in takes:
            events = next(results) if det is not None and chunk else []
            if det is not None and chunk:
                frames += len(chunk) // det.frame_bytes
                if self.on_lag is not None:
                    self.on_lag(done - arrival)
            if closed and sink.fork_stream is stream:   # (not if the call has a new fork already)
                self.remove(sink)
            try:
                sink.on_audio(chunk, arrival, det, events, closed)
            except Exception:  # noqa: BLE001 - a bug in one call must not take the others' audio
                log.exception("call %s: audio handling failed", getattr(sink, "call_id", "?"))
        self.frames += frames
        return frames


def _bytes_per_s(sink: AudioSink) -> int:
    return 2 * int(sink.audio_rate)
