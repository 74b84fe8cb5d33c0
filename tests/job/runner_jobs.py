"""Job functions for the runner tests, at a stable importable path (the worker runs in-process)."""

from __future__ import annotations

import time

import gevent.event

from worker.errors import CallInterrupted

started: dict[str, gevent.event.Event] = {}
release: dict[str, gevent.event.Event] = {}
interrupted: dict[str, str] = {}
started_at: dict[str, float] = {}


def reset() -> None:
    started.clear()
    release.clear()
    interrupted.clear()
    started_at.clear()


def block(name: str) -> str:
    """Signal that it runs, then wait until released; return its name."""
    started_at[name] = time.monotonic()
    started.setdefault(name, gevent.event.Event()).set()
    try:
        release.setdefault(name, gevent.event.Event()).wait()
    except CallInterrupted as exc:
        interrupted[name] = exc.reason
        raise
    return f"done {name}"


def fail(message: str) -> None:
    raise RuntimeError(message)
