"""Reaper: calls of dead workers end failed/worker_lost with their legs killed; orphan legs are swept.

The switch here is a recording stand-in for `EslClient.api` with reply texts from the
captures (`{"row_count": 0}\\n`, `_undef_`, `+OK\\n`, `-ERR No such channel!\\n`); the real
ESL path is covered by the e2e test that SIGKILLs a worker mid-hold.
"""

from __future__ import annotations

import json

import pytest

from worker import db
from worker.reaper import Reaper, beat, dead_workers, heartbeat_key, parse_channels, should_kill


class Switch:
    def __init__(self, channels: dict[str, str]) -> None:
        self.channels = dict(channels)      # uuid -> hs_call_id ("" = not ours)
        self.sent: list[str] = []

    def api(self, cmd: str) -> str:
        self.sent.append(cmd)
        if cmd == "show channels as json":
            if not self.channels:
                return '{"row_count": 0}\n'
            rows = [{"uuid": u, "name": f"sofia/external/{u[:4]}"} for u in self.channels]
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))
        verb, uuid, *rest = cmd.split()
        if verb == "uuid_getvar":
            if uuid not in self.channels:
                return "-ERR No such channel!\n"
            return self.channels[uuid] or "_undef_"
        if verb == "uuid_kill":
            return "+OK\n" if self.channels.pop(uuid, None) is not None else "-ERR No such channel!\n"
        raise AssertionError(f"unexpected command {cmd!r}")


@pytest.fixture
def database(database_url):
    d = db.init_db(database_url)
    yield d
    d.close()


def _call(status: str, worker: str, company: str = "", desk: str = "", **kw) -> db.Call:
    return db.Call.create(number="+15550100", status=status, worker_id=worker, company_uuid=company,
                          desk_uuid=desk, **kw)


def test_pure_decisions():
    assert dead_workers(["a", "b", ""], {"a": True, "b": False}) == {"b"}
    assert parse_channels('{"row_count": 0}\n') == []
    assert parse_channels('{"row_count":1,"rows":[{"uuid":"u1"}]}') == [{"uuid": "u1"}]
    with pytest.raises(ValueError, match="show channels failed"):
        parse_channels("-ERR oops\n")
    with pytest.raises(ValueError):
        parse_channels("garbage")
    with pytest.raises(ValueError, match="empty"):
        heartbeat_key("")
    assert should_kill(None)
    assert should_kill(db.Call(status="busy"))
    assert not should_kill(db.Call(status="holding"))
    assert not should_kill(db.Call(status="transferred"))           # bridged: the user is talking
    assert should_kill(db.Call(status="transferred", ended_at=db.utcnow()))


def test_calls_of_a_dead_worker_end_accounted(database, redis_conn, uniq):
    alive, dead, me = f"{uniq}-alive", f"{uniq}-dead", f"{uniq}-me"
    beat(redis_conn, alive, 10)
    lost = _call("holding", dead, company="c-lost", desk="")
    kept = _call("holding", alive, company="c-kept")
    done = _call("busy", dead, company="c-done")
    switch = Switch({"c-lost": lost.id, "c-kept": kept.id})
    published: list[tuple] = []
    reaper = Reaper(redis_conn, [switch], me, 10, publish=lambda *a: published.append(a))
    reaper.tick()

    assert redis_conn.ttl(heartbeat_key(me)) == 30
    lost = db.Call.get_by_id(lost.id)
    assert (lost.status, lost.status_reason) == ("failed", "worker_lost") and lost.ended_at is not None
    assert db.Call.get_by_id(kept.id).status == "holding"
    assert db.Call.get_by_id(done.id).status == "busy"
    assert "uuid_kill c-lost" in switch.sent and "uuid_kill c-kept" not in switch.sent
    assert set(switch.channels) == {"c-kept"}
    ended = {"status": "failed", "reason": "worker_lost", "reaped_by": me}
    assert published == [(lost.id, "call.ended", ended)]

    # A second reaper (another worker) finds nothing left to do and publishes nothing.
    Reaper(redis_conn, [switch], f"{uniq}-other", 10, publish=lambda *a: published.append(a)).tick()
    assert len(published) == 1
    redis_conn.delete(*(heartbeat_key(w) for w in (alive, me, f"{uniq}-other")))


def test_sweep_kills_legs_of_unknown_or_final_calls(database, redis_conn, uniq):
    alive = f"{uniq}-alive"
    beat(redis_conn, alive, 10)
    live = _call("holding", alive, company="c-live")
    over = _call("canceled", alive, company="c-over")
    bridged = _call("transferred", alive, company="c-br", desk="d-br")
    switch = Switch({"c-live": live.id, "c-over": over.id, "c-unknown": "nosuchcall", "c-br": bridged.id,
                     "d-br": bridged.id, "other": ""})
    reaper = Reaper(redis_conn, [switch], f"{uniq}-me", 10, publish=lambda *a: None,
                    my_legs=lambda: {"c-live"})
    assert reaper.sweep_channels() == 2
    assert "uuid_getvar c-live hs_call_id" not in switch.sent     # our own legs need no lookup
    assert set(switch.channels) == {"c-live", "c-br", "d-br", "other"}
    redis_conn.delete(heartbeat_key(alive))


def test_publish_failure_does_not_stop_reaping(database, redis_conn, uniq):
    lost = _call("ivr", f"{uniq}-dead", company="c1")
    switch = Switch({"c1": lost.id})

    def broken(*_a):
        raise ConnectionError("redis is restarting")

    Reaper(redis_conn, [switch], f"{uniq}-me", 10, publish=broken).tick()
    redis_conn.delete(heartbeat_key(f"{uniq}-me"))
    assert db.Call.get_by_id(lost.id).status == "failed"
    assert switch.channels == {}
