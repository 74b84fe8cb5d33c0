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

Each slot is owed the frames its channels should have had by now
(`frames_due`): a slot served late (a busy machine) gets all it is owed in one
wake-up (up to CATCH_UP_FRAMES at a time), so its forks send those frames in
one TCP write, as mod_audio_fork coalesces packets when its service thread
falls behind, instead of the switch falling further behind.  It never bursts
more than RESYNC_S of media: older debt is dropped, like the old per-channel
loop did.

`schedule(speed)` and `frames_due()` are the pure part (tested directly);
`MediaClock` is the thin gevent shell.
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
CATCH_UP_FRAMES = 5  # at most this many frames (or frames_per_wake) per channel per wake-up

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


def frames_due(elapsed_s: float, phase_s: float, frame_wall_s: float, served: int) -> int:
    """Frames a slot is owed `elapsed_s` after the clock started, given `served` so far (pure).

    The slot's frame k is due at `phase_s + k * frame_wall_s` (its first frame at its phase).
    """
    if elapsed_s < phase_s:
        return 0
    return int((elapsed_s - phase_s) / frame_wall_s + 1e-9) + 1 - served


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
    """Ticks its members: `on_wake(members_of_this_slot, frames_owed)` on every wake-up.

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
        self.frames_dropped = 0  # per slot: media frames skipped after stalls longer than RESYNC_S

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
        frame_wall = plan.frame_wall_s
        max_due = max(plan.frames_per_wake, int(RESYNC_S / frame_wall))
        batch = max(plan.frames_per_wake, CATCH_UP_FRAMES)
        start = time.monotonic()
        served = [0] * plan.slots
        wake = 0
        while self._where:
            slot = wake % plan.slots
            due = frames_due(time.monotonic() - start, slot * plan.wake_s, frame_wall, served[slot])
            if due > max_due:  # stalled (debugger, overload): drop the older debt, never burst
                self.frames_dropped += due - max_due
                served[slot] += due - max_due
                due = max_due
            members = self._slots[slot]
            due = min(due, batch)  # the rest of a debt is served by the next wake-ups, back to back
            if due > 0:
                served[slot] += due
                if members:
                    for item in self._on_wake(list(members), due):
                        self.remove(item)
            wake += 1
            self.wakes += 1
            delay = start + wake * plan.wake_s - time.monotonic()
            if delay < -RESYNC_S:  # skip the wake-ups missed; their slots get what they are owed next time
                wake = int((time.monotonic() - start) / plan.wake_s)
                delay = 0.0
            gevent.sleep(max(0.0, delay))  # cheaper than Event.wait(timeout) at 250 wake-ups a second
