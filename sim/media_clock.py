"""One media clock per switch: a single greenlet ticks every channel's 20 ms frames.

A greenlet per channel waking 50 times a second costs a timer, two greenlet
switches and a sleep per channel per frame; at hundreds of calls that was most
of the switch's CPU.  Here one greenlet wakes on a fixed schedule and hands
each wake-up a *slot* of channels and how many frames each is due:

* at `speed` 1 a frame is 20 ms: the clock wakes every 4 ms and the channels
  are spread over 5 slots (one per wake-up), so each channel still gets one
  frame every 20 ms, but the calls' frames are not all sent in one burst (on
  a real switch the calls' 20 ms packets come at unrelated phases);
* when 20 ms / speed is under 2 x MIN_WAKE_S there is one slot and each wake-up
  gives every channel several frames (e.g. 4 at speed 20), as the old
  per-channel loop did.

`schedule(speed)` is the pure part (tested directly); `MediaClock` is the thin
gevent shell.  The clock never bursts to catch up after a stall longer than
RESYNC_S: it drops that time, like the old per-channel loop did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import gevent

FRAME_S = 0.020  # one media frame (20 ms ptime)
MIN_WAKE_S = 0.004  # the clock wakes at most every 4 ms of wall time
RESYNC_S = 0.5  # behind by more than this (debugger, overload): resync, never burst

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Schedule:
    slots: int  # channels are spread over this many slots, one slot per wake-up
    frames_per_wake: int  # frames each channel of the slot gets per wake-up
    wake_s: float  # wall seconds between wake-ups

    @property
    def frame_wall_s(self) -> float:
        """Wall seconds per frame of one channel (20 ms / speed)."""
        return self.wake_s * self.slots / self.frames_per_wake


def schedule(speed: float) -> Schedule:
    """The clock's plan for `speed` (scenario time runs `speed` times faster than wall time)."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    frame_wall = FRAME_S / speed
    if frame_wall >= 2 * MIN_WAKE_S:
        slots = int(frame_wall / MIN_WAKE_S)
        return Schedule(slots=slots, frames_per_wake=1, wake_s=frame_wall / slots)
    per_wake = max(1, round(MIN_WAKE_S / frame_wall))
    return Schedule(slots=1, frames_per_wake=per_wake, wake_s=frame_wall * per_wake)


class MediaClock(Generic[T]):
    """Ticks its members: `on_wake(members_of_this_slot, frames)` on every wake-up.

    `on_wake` must not block (it runs inside the clock greenlet); it returns the
    members whose media ended, and those leave the clock.  The greenlet starts
    with the first member and ends when the last one leaves.
    """

    def __init__(
        self,
        speed: float,
        on_wake: Callable[[list[T], int], list[T]],
        spawn: Callable[..., gevent.Greenlet] = gevent.spawn,
    ) -> None:
        self.plan = schedule(speed)
        self._on_wake = on_wake
        self._spawn = spawn
        self._slots: list[dict[T, None]] = [{} for _ in range(self.plan.slots)]
        self._where: dict[T, int] = {}
        self._greenlet: gevent.Greenlet | None = None
        self.wakes = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item: T) -> bool:
        return item in self._where

    def add(self, item: T) -> None:
        if item in self._where:
            return
        slot = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        self._slots[slot][item] = None
        self._where[item] = slot
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = self._spawn(self._run)

    def remove(self, item: T) -> None:
        slot = self._where.pop(item, None)
        if slot is not None:
            self._slots[slot].pop(item, None)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        self._slots = [{} for _ in range(self.plan.slots)]
        self._where.clear()

    def _run(self) -> None:
        plan = self.plan
        next_t = time.monotonic()
        wake = 0
        while self._where:
            members = self._slots[wake % plan.slots]
            if members:
                for item in self._on_wake(list(members), plan.frames_per_wake):
                    self.remove(item)
            wake += 1
            self.wakes += 1
            next_t += plan.wake_s
            delay = next_t - time.monotonic()
            if delay < -RESYNC_S:
                next_t = time.monotonic()
                delay = 0.0
            gevent.sleep(max(0.0, delay))  # cheaper than Event.wait(timeout) at 250 wake-ups a second
