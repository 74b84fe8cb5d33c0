"""Every call ends accounted for, even when the worker that owned it died.

Each worker refreshes `hs:worker:<id>` (TTL 3 x Settings.worker_heartbeat_s) and
stores `Call.worker_id` / `company_uuid` / `desk_uuid` as soon as they are known.
Every worker's reaper then, each heartbeat period:

1. finds non-final calls owned by a worker whose heartbeat key is gone, hangs
   their legs up on every switch (`uuid_kill`) and marks them failed with
   reason `worker_lost` (a guarded UPDATE, so two reapers never both publish);
2. sweeps `show channels as json` on every switch for legs we originated
   (channel variable `hs_call_id`) whose call is unknown or over, and kills them.

Last line of defence, in the switch itself: the job schedules
`sched_hangup +<max_hold_s> <uuid> ALLOTTED_TIMEOUT` on each company leg.

The decisions (`dead_workers`, `orphan_channels`) are pure functions; `Reaper`
is the thin shell around Redis, the database and the ESL clients.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis

from worker import db
from worker.config import VAR_CALL_ID
from worker.errors import EslError

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "hs:worker:{}"
HEARTBEAT_TTL_FACTOR = 3          # the key outlives 3 missed beats before the worker counts as lost
LOST_REASON = "worker_lost"
UNDEF = "_undef_"                 # uuid_getvar's reply for an unset variable


class Esl(Protocol):
    def api(self, cmd: str) -> str: ...


def heartbeat_key(worker_id: str) -> str:
    if not worker_id:
        raise ValueError("worker id must not be empty")
    return HEARTBEAT_KEY.format(worker_id)


def beat(conn: redis.Redis, worker_id: str, heartbeat_s: float) -> None:
    """Refresh this worker's liveness key (value: epoch seconds of the beat)."""
    ttl = max(1, int(HEARTBEAT_TTL_FACTOR * heartbeat_s))
    conn.set(heartbeat_key(worker_id), f"{time.time():.3f}", ex=ttl)


def dead_workers(owners: Iterable[str], alive: Mapping[str, bool]) -> set[str]:
    """Workers owning live calls whose heartbeat is gone (pure)."""
    return {w for w in owners if w and not alive.get(w, False)}


def parse_channels(reply: str) -> list[dict[str, Any]]:
    """Rows of `show channels as json` (`{"row_count": 0}\\n` when empty); raises ValueError on junk."""
    text = reply.strip()
    if text.startswith("-ERR"):
        raise ValueError(f"show channels failed: {text}")
    data = json.loads(text)
    if not isinstance(data, dict) or "row_count" not in data:
        raise ValueError(f"unexpected show channels reply: {text[:80]!r}")
    rows = data.get("rows") or []
    return [r for r in rows if isinstance(r, dict) and r.get("uuid")]


def should_kill(call: db.Call | None) -> bool:
    """A leg tagged with our call id must go when its call is unknown or over (pure).

    A transferred call stays up while bridged (the user is talking); it is over
    once `ended_at` is stored.
    """
    if call is None:
        return True
    if call.status == "transferred":
        return call.ended_at is not None
    return call.status in db.FINAL_STATUSES


class Reaper:
    """Periodic sweep run by every worker (wired to GeventWorker.on_tick)."""

    def __init__(
        self,
        conn: redis.Redis,
        clients: Sequence[Esl],
        worker_id: str,
        heartbeat_s: float,
        publish: Callable[[str, str, dict[str, Any]], Any] | None = None,
        is_mine: Callable[[str], bool] | None = None,
        my_legs: Callable[[], set[str]] | None = None,
    ) -> None:
        self.conn = conn
        self.clients = list(clients)
        self.worker_id = worker_id
        self.heartbeat_s = heartbeat_s
        self.publish = publish
        self.is_mine = is_mine or (lambda _call_id: False)
        self.my_legs = my_legs or set  # legs of the calls this worker runs: no uuid_getvar for them

    def tick(self) -> None:
        try:
            beat(self.conn, self.worker_id, self.heartbeat_s)
        except redis.exceptions.RedisError as exc:
            log.warning("worker %s: heartbeat key not written: %s", self.worker_id, exc)
            return        # without Redis we cannot tell dead workers from live ones: reap nothing
        with db.database.connection_context():
            reaped = self.reap_lost_calls()
            killed = self.sweep_channels()
        if reaped or killed:
            log.info("worker %s: reaper: %d call(s) marked lost, %d orphan leg(s) killed",
                     self.worker_id, reaped, killed)

    # --- 1. calls of dead workers ------------------------------------------------
    def reap_lost_calls(self) -> int:
        calls = list(
            db.Call.select().where(db.Call.status.in_(sorted(db.ACTIVE_STATUSES)) & (db.Call.worker_id != ""))
        )
        owners = {c.worker_id for c in calls}
        alive = {w: bool(self.conn.exists(heartbeat_key(w))) for w in owners}
        dead = dead_workers(owners, alive)
        count = 0
        for call in calls:
            if call.worker_id in dead and self.end_lost_call(call):
                count += 1
        return count

    def end_lost_call(self, call: db.Call) -> bool:
        """Kill the call's legs everywhere and mark it failed/worker_lost; False if someone else did."""
        log.warning("call %s: worker %s is gone: hanging up its legs", call.id, call.worker_id)
        for uuid in (call.company_uuid, call.desk_uuid):
            if uuid:
                self._kill(uuid, call.id)
        now = db.utcnow()
        rows = (
            db.Call.update(status="failed", status_reason=LOST_REASON, ended_at=now, updated_at=now,
                           hangup_cause=call.hangup_cause or "WORKER_LOST")
            .where((db.Call.id == call.id) & db.Call.status.in_(sorted(db.ACTIVE_STATUSES)))
            .execute()
        )
        if rows != 1:
            return False
        log.warning("call %s: marked failed (%s) by worker %s", call.id, LOST_REASON, self.worker_id)
        self._publish(call.id, "call.ended", {"status": "failed", "reason": LOST_REASON,
                                              "reaped_by": self.worker_id})
        return True

    # --- 2. legs the switch still has ------------------------------------------------
    def sweep_channels(self) -> int:
        killed = 0
        for client in self.clients:
            try:
                rows = parse_channels(client.api("show channels as json"))
            except (EslError, ValueError) as exc:
                log.warning("worker %s: channel sweep skipped on one switch: %s", self.worker_id, exc)
                continue
            mine = self.my_legs()
            for row in rows:
                uuid = str(row["uuid"])
                if uuid in mine:
                    continue
                try:
                    call_id = client.api(f"uuid_getvar {uuid} {VAR_CALL_ID}").strip()
                except EslError as exc:
                    log.warning("worker %s: uuid_getvar %s failed: %s", self.worker_id, uuid, exc)
                    continue
                if not call_id or call_id == UNDEF or call_id.startswith("-ERR"):
                    continue      # not a leg we originated (or already gone)
                if self.is_mine(call_id):
                    continue      # a call this worker is running right now
                call = db.Call.get_or_none(db.Call.id == call_id)
                if should_kill(call):
                    why = "unknown call" if call is None else f"call {call.status}"
                    log.warning("call %s: orphan leg %s (%s) still up on the switch: killing it",
                                call_id, uuid, why)
                    self._kill_on(client, uuid, call_id)
                    killed += 1
        return killed

    # --- helpers ---------------------------------------------------------------------
    def _kill(self, uuid: str, call_id: str) -> None:
        for client in self.clients:
            self._kill_on(client, uuid, call_id)

    def _kill_on(self, client: Esl, uuid: str, call_id: str) -> None:
        try:
            reply = client.api(f"uuid_kill {uuid}").strip()
            log.info("call %s: uuid_kill %s: %s", call_id, uuid, reply)
        except EslError as exc:
            log.warning("call %s: uuid_kill %s failed: %s", call_id, uuid, exc)

    def _publish(self, call_id: str, type_: str, data: dict[str, Any]) -> None:
        if self.publish is None:
            return
        try:
            self.publish(call_id, type_, data)
        except Exception as exc:  # noqa: BLE001 - Redis may be down: the DB row is the truth
            log.warning("call %s: event %s not published: %s", call_id, type_, exc)
