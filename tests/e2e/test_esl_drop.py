"""The worker's ESL link drops mid-hold: after the reconnect each live call checks its leg.

The worker under test reaches the switch through a proxy the test cuts; it listens on a
queue of its own, so the stack's other worker never takes these calls.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import redis
from e2e_env import LONG_HOLD, channels
from tcp_proxy import CuttableProxy

from sim.demo import Stack
from worker import db, queueing
from worker.config import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxied(stack: Stack) -> Iterator[tuple[Stack, CuttableProxy, str]]:
    proxy = CuttableProxy(stack.esl_port)
    port = proxy.start()
    queue = f"hs-e2e-proxied-{secrets.token_hex(3)}"
    stack.start_worker("worker-proxied", env={"ESL_HOSTS": f"127.0.0.1:{port}", "QUEUE_NAME": queue})
    yield stack, proxy, queue
    proxy.stop()


def _launch(stack: Stack, queue: str) -> str:
    settings = Settings(redis_url=stack.redis_url, database_url=stack.database_url, queue_name=queue,
                        launch_rate_per_minute=1000)
    db.init_db(stack.database_url)
    with db.database.connection_context():
        call, _ = queueing.launch(redis.Redis.from_url(stack.redis_url),
                                  {"number": LONG_HOLD, "intent": "esl drop test", "transfer_to": "1000"},
                                  settings, source="test")
    return str(call.id)


def _reconnects(stack: Stack) -> int:
    return sum("connected (connection #" in line for line in stack.procs["worker-proxied"].lines)


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)    # polling observable state until a deadline


def test_call_survives_a_dropped_esl_link(proxied):
    stack, proxy, queue = proxied
    call_id = _launch(stack, queue)
    stack.wait_status(call_id, {"holding"}, timeout=30)
    before = _reconnects(stack)
    proxy.cut()
    _wait(lambda: _reconnects(stack) > before, 20, "the ESL reconnect")
    _wait(lambda: any("exists: true" in line for line in stack.procs["worker-proxied"].lines), 10,
          "the leg check after the reconnect")
    status, body = stack.http("GET", f"/api/calls/{call_id}")
    assert body["status"] == "holding", body
    status, body = stack.http("POST", f"/api/calls/{call_id}/hangup")
    assert status == 202, body
    final = stack.wait_final(call_id, timeout=30)
    assert final["status"] == "canceled", final
    assert channels(stack) == {"row_count": 0}


def test_leg_gone_while_disconnected_ends_the_call_accounted(proxied):
    stack, proxy, queue = proxied
    call_id = _launch(stack, queue)
    stack.wait_status(call_id, {"holding"}, timeout=30)
    before = _reconnects(stack)
    proxy.open.clear()                 # the switch is unreachable for a while ...
    proxy.cut()
    with db.database.connection_context():
        leg = db.Call.get_by_id(call_id).company_uuid
    stack.esl_api(f"uuid_kill {leg}")  # ... and the leg goes away meanwhile
    proxy.open.set()
    _wait(lambda: _reconnects(stack) > before, 20, "the ESL reconnect")
    final = stack.wait_final(call_id, timeout=30)
    assert (final["status"], final["status_reason"]) == (
        "failed", "company leg gone while the switch connection was down"), final
    assert channels(stack) == {"row_count": 0}
