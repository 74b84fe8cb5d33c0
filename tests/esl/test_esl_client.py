"""EslClient and Leg over real TCP against fake switches (scripted, and replaying real captures)."""

from __future__ import annotations

import logging
import time

import gevent
import gevent.event
import pytest
from gevent.server import StreamServer

from tests.esl.captures import CAPTURES, legs_for, sent_commands
from tests.esl.fakefs import DISCONNECT, ReplayFS, ScriptedFS, plain_event
from worker.errors import (
    CommandFailed,
    EslAuthError,
    EslDisconnected,
    EslTimeout,
    ForkFailed,
    LegGone,
    OriginateFailed,
)
from worker.esl import DISCONNECTED, RECONNECTED, Backoff, EslClient, EslPool, parse_address
from worker.leg import Leg

FAST = Backoff(initial=0.01, maximum=0.05)
U = "62fe4c81-2fa6-44a6-a85b-fe1524d7db77"
D = "0fc9eff5-1972-4828-9954-3281caed1276"


@pytest.fixture
def fs():
    server = ScriptedFS().start()
    yield server
    server.stop()


@pytest.fixture
def client(fs):
    c = EslClient("127.0.0.1", fs.port, "ClueCon", timeout=2.0, backoff=FAST)
    c.connect()
    yield c
    c.close()


def _drain(leg: Leg, timeout: float = 5.0) -> list[str]:
    names = []
    while True:
        ev = leg.events.get(timeout=timeout)
        if ev is None:
            return names
        names.append(ev.key)


def _next_command(fs: ScriptedFS, prefix: str, timeout: float = 5.0) -> str:
    while True:
        cmd, _headers = fs.commands.get(timeout=timeout)
        if cmd.startswith(prefix):
            return cmd


# --- replay of a real gateway call -----------------------------------------------
def test_replay_answer_fork_bridge() -> None:
    recv = CAPTURES / "gateway" / "gw_answer_fork_bridge.recv.bin"
    server = ReplayFS(recv).start()
    client = EslClient("127.0.0.1", server.port, "ClueCon", timeout=5.0, events=["ALL"], reconnect=False)
    try:
        client.connect()
        a = Leg.originate(
            client, "sofia/gateway/company/5550100", {"ignore_early_media": "true"}, uuid=U, timeout=10
        )
        assert a.answered and a.wait_for({"CHANNEL_ANSWER"}, 1).unique_id == U
        a.start_fork("ws://127.0.0.1:18765/fork", 8000, {"callId": U}, timeout=5)
        assert a.fork_connected
        d = Leg.originate(client, "user/1000@127.0.0.1", uuid=D, timeout=10)
        assert d.answered
        a.bridge(d)
        assert a.wait_for({"CHANNEL_BRIDGE"}, 5).headers["Other-Leg-Unique-ID"] == D
        assert d.wait_for({"CHANNEL_BRIDGE"}, 5).unique_id == U  # fired on the A leg only, routed to B too
        assert a.bridged_to == D and d.bridged_to == U
        assert a.hangup(cause=None) is True
        assert a.wait_for({"CHANNEL_HANGUP_COMPLETE"}, 5).headers["Hangup-Cause"] == "NORMAL_CLEARING"
        d.wait_for({"CHANNEL_HANGUP_COMPLETE"}, 5)
        assert a.hangup_cause == d.hangup_cause == "NORMAL_CLEARING"
        got_a, got_d = _drain(a), _drain(d)
    finally:
        client.close()
        server.stop()

    # The client sent exactly what the capture's client sent (its own Job-UUIDs aside).
    ours = [cmd for cmd, _h in server.commands]
    theirs = [raw.decode().split("\n")[0] for raw in sent_commands(recv)]
    assert ours == theirs
    assert all(h.get("Job-UUID") for cmd, h in server.commands if cmd.startswith("bgapi"))

    # Routing by Unique-ID: each leg saw exactly its own events (the far-end leg's were ignored),
    # up to its CHANNEL_HANGUP_COMPLETE, plus the A leg's bridge events on the B leg.
    legs = legs_for(recv)
    assert len(legs) == 3
    exp_a = [k for i, k in legs[U] if i <= max(i for i, k in legs[U] if k == "CHANNEL_HANGUP_COMPLETE")]
    bridge = [(i, k) for i, k in legs[U] if k in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE")]
    d_all = sorted(legs[D] + bridge)
    end_d = max(i for i, k in legs[D] if k == "CHANNEL_HANGUP_COMPLETE")
    exp_d = [k for i, k in d_all if i <= end_d]
    assert got_a == exp_a
    assert got_d == exp_d


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("gw_busy", "USER_BUSY"),
        ("gw_not_found", "UNALLOCATED_NUMBER"),
        ("gw_unavailable", "NORMAL_TEMPORARY_FAILURE"),
    ],
)
def test_replay_refused_originate(case, cause) -> None:
    recv = CAPTURES / "gateway" / f"{case}.recv.bin"
    cmd = sent_commands(recv)[2].decode().split("\n")[0]
    uuid = cmd.split("origination_uuid=")[1].split(",")[0]
    number = cmd.split("/")[-1].split(" ")[0]
    server = ReplayFS(recv).start()
    client = EslClient("127.0.0.1", server.port, "ClueCon", timeout=5.0, events=["ALL"], reconnect=False)
    try:
        client.connect()
        with pytest.raises(OriginateFailed) as exc:
            Leg.originate(
                client,
                f"sofia/gateway/company/{number}",
                {"ignore_early_media": "true"},
                uuid=uuid,
                timeout=5,
            )
        assert exc.value.cause == cause
        assert client.load == 0  # the leg's stream was released
    finally:
        client.close()
        server.stop()
    assert [c for c, _h in server.commands][2] == cmd


def test_replay_early_media_then_no_answer() -> None:
    recv = CAPTURES / "gateway" / "gw_early_media_no_answer.recv.bin"
    cmd = sent_commands(recv)[2].decode().split("\n")[0]
    server = ReplayFS(recv).start()
    client = EslClient("127.0.0.1", server.port, "ClueCon", timeout=5.0, events=["ALL"], reconnect=False)
    try:
        client.connect()
        uuid = cmd.split("origination_uuid=")[1].split(",")[0]
        leg = Leg.begin(
            client,
            "sofia/gateway/company/5550183",
            {"ignore_early_media": "true", "originate_timeout": 8},
            uuid=uuid,
        )
        media = leg.wait_media(5)
        assert media.name == "CHANNEL_PROGRESS_MEDIA" and leg.early_media and not leg.answered
        with pytest.raises(LegGone) as gone:
            leg.wait_for({"CHANNEL_ANSWER"}, 5)
        assert gone.value.cause == "NO_ANSWER"
        with pytest.raises(OriginateFailed) as exc:
            leg.wait_originated(5)
        assert exc.value.cause == "NO_ANSWER"
    finally:
        client.close()
        server.stop()
    assert server.commands[2][0] == cmd


# --- auth ------------------------------------------------------------------------
def test_bad_password_is_clear_and_never_logged(fs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = EslClient("127.0.0.1", fs.port, "s3cret-Wrong", timeout=2.0, reconnect=False)
    with pytest.raises(EslAuthError) as exc:
        client.connect()
    assert "password rejected" in str(exc.value) and "-ERR invalid" in str(exc.value)
    assert "s3cret-Wrong" not in str(exc.value)
    assert "s3cret-Wrong" not in caplog.text
    assert "s3cret-Wrong" not in repr(client)
    client.close()


def test_rude_rejection_is_auth_error() -> None:
    def handle(sock, _addr):
        sock.sendall(
            b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n" + DISCONNECT
        )
        sock.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    try:
        client = EslClient("127.0.0.1", server.server_port, "ClueCon", timeout=2.0, reconnect=False)
        with pytest.raises(EslAuthError, match="ACL"):
            client.connect()
        client.close()
    finally:
        server.stop()


def test_connection_refused_is_disconnected() -> None:
    server = StreamServer(("127.0.0.1", 0), lambda s, a: s.close())
    server.start()
    port = server.server_port
    server.stop()
    client = EslClient("127.0.0.1", port, "ClueCon", timeout=1.0, reconnect=False)
    with pytest.raises(EslDisconnected, match="cannot connect"):
        client.connect()


def test_no_auth_request_times_out() -> None:
    held = []
    server = StreamServer(("127.0.0.1", 0), lambda s, a: held.append(s) or gevent.sleep(5))
    server.start()
    try:
        client = EslClient("127.0.0.1", server.server_port, "ClueCon", timeout=0.3, reconnect=False)
        with pytest.raises(EslTimeout, match="auth/request"):
            client.connect()
    finally:
        server.stop(timeout=0.1)


# --- api / bgapi -----------------------------------------------------------------
def test_api_reply_bodies_exact(fs, client) -> None:
    fs.api_replies["uuid_exists"] = "false"
    fs.api_replies["uuid_kill"] = "-ERR No such channel!\n"
    assert client.api("uuid_exists 00000000-0000-0000-0000-000000000000") == "false"
    assert client.api("uuid_kill x") == "-ERR No such channel!\n"
    assert client.api("bogus_cmd").startswith("-ERR bogus_cmd Command not found!")
    assert _next_command(fs, "event ") == "event plain " + " ".join(
        [w for w in client._subscribe.split()[2:]]
    )


def test_api_timeout(fs, client) -> None:
    fs.api_replies["slow"] = None
    t0 = time.monotonic()
    with pytest.raises(EslTimeout, match="api slow"):
        client.api("slow thing", timeout=0.2)
    assert time.monotonic() - t0 < 1.0


def test_bgapi_matches_own_job_uuid_out_of_order(fs, client) -> None:
    fs.bgapi_hold = {"uuid_exists"}
    fs.bgapi_replies["uuid_exists aaa"] = "true"
    fs.bgapi_replies["uuid_exists bbb"] = "false"
    ga = gevent.spawn(client.bgapi, "uuid_exists aaa", 5)
    gb = gevent.spawn(client.bgapi, "uuid_exists bbb", 5)
    seen = {_next_command(fs, "bgapi"), _next_command(fs, "bgapi")}
    assert seen == {"bgapi uuid_exists aaa", "bgapi uuid_exists bbb"}
    fs.release_jobs()  # BACKGROUND_JOBs arrive in reverse order
    assert ga.get(timeout=5) == "true"
    assert gb.get(timeout=5) == "false"
    assert client._jobs == {}


def test_bgapi_timeout_and_refusal(fs, client) -> None:
    fs.bgapi_hold = {"originate"}
    with pytest.raises(EslTimeout, match="bgapi originate"):
        client.bgapi("originate sofia/gateway/trunk/1 &park()", timeout=0.2)
    assert client._jobs == {}

    def refuse(server, sock, cmd):
        if cmd.startswith("bgapi"):
            sock.sendall(b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n")
            return True
        return False

    fs.on_command = refuse
    with pytest.raises(CommandFailed, match="command not found"):
        client.bgapi("status", timeout=1)


# --- routing ---------------------------------------------------------------------
def test_routing_by_unique_id_rename_and_unrelated(fs, client) -> None:
    stream = client.events_for("temp-1")
    assert client.events_for("temp-1") is stream
    fs.push(
        plain_event([("Event-Name", "CHANNEL_CREATE"), ("Unique-ID", "other-leg")])
        + plain_event([("Event-Name", "CHANNEL_UUID"), ("Unique-ID", "final-1"), ("Old-Unique-ID", "temp-1")])
        + plain_event([("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "final-1"), ("Channel-Name", "a b:c")])
        + plain_event([("Event-Name", "HEARTBEAT")])
    )
    first = stream.get(timeout=5)
    second = stream.get(timeout=5)
    assert (first.name, second.name) == ("CHANNEL_UUID", "CHANNEL_ANSWER")
    assert second.get("Channel-Name") == "a b:c"
    assert stream.uuid == "final-1" and client.events_for("final-1") is stream
    with pytest.raises(EslTimeout):
        stream.get(timeout=0.05)
    client.release("final-1")
    assert stream.get(timeout=1) is None


def test_json_events(fs) -> None:
    client = EslClient("127.0.0.1", fs.port, "ClueCon", timeout=2.0, event_format="json", reconnect=False)
    client.connect()
    try:
        assert _next_command(fs, "event ").startswith("event json ")
        stream = client.events_for("u-1")
        body = b'{"Event-Name":"CUSTOM","Event-Subclass":"mod_audio_fork::connect_failed","Unique-ID":"u-1",'
        body += b'"_body":"{\\"reason\\":\\"Unable to connect\\"}"}'
        fs.push(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body)
        ev = stream.get(timeout=5)
        assert ev.key == "mod_audio_fork::connect_failed" and ev.body == '{"reason":"Unable to connect"}'
    finally:
        client.close()


# --- disconnect and reconnect ------------------------------------------------------
def test_server_closes_mid_api(fs, client) -> None:
    lost = gevent.event.Event()
    client.on_disconnect(lambda c: lost.set())
    stream = client.events_for("u-1")

    def close_on_slow(server, sock, cmd):
        if cmd.startswith("api slow"):
            sock.close()
            return True
        return False

    fs.on_command = close_on_slow
    client._reconnect = False
    t0 = time.monotonic()
    with pytest.raises(EslDisconnected):
        client.api("slow", timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert lost.wait(5)
    assert stream.get(timeout=5).name == DISCONNECTED
    with pytest.raises(EslDisconnected):
        client.api("status")
    with pytest.raises(EslDisconnected):
        client.bgapi("status")


def test_pending_calls_fail_together_then_reconnect(fs, client) -> None:
    fs.api_replies["slow"] = None
    fs.bgapi_hold = {"originate"}
    back = gevent.event.Event()
    client.on_reconnect(lambda c: back.set())
    stream = client.events_for("u-9")
    leg = Leg.attach(client, "u-9", call_id="c-9")
    waits = [gevent.spawn(client.bgapi, "originate x &park()", 30)]
    _next_command(fs, "bgapi originate")  # answered +OK Job-UUID; its BACKGROUND_JOB is held
    waits.append(gevent.spawn(client.api, "slow", 30))
    _next_command(fs, "api slow")  # never answered
    waits.append(gevent.spawn(leg.wait_for, {"CHANNEL_ANSWER"}, 30))
    gevent.idle()
    t0 = time.monotonic()
    fs.drop_all()
    gevent.joinall(waits, timeout=5)
    assert time.monotonic() - t0 < 2.0
    for g in waits:
        assert isinstance(g.exception, EslDisconnected), g.exception
    assert back.wait(5)
    assert _next_command(fs, "auth ") == "auth ClueCon"
    assert _next_command(fs, "event ").startswith("event plain")
    assert client.connected and client.connects == 2
    fs.api_replies["status"] = "UP\n"
    assert client.api("status") == "UP\n"
    names = [leg.events.get(timeout=5).name, leg.events.get(timeout=5).name]
    assert names == [DISCONNECTED, RECONNECTED]
    # routing survives the reconnect
    fs.push(plain_event([("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "u-9")]))
    assert leg.wait_for({"CHANNEL_ANSWER"}, 5).unique_id == "u-9"
    assert stream is client.events_for("u-9")


def test_close_joins_everything(fs) -> None:
    client = EslClient("127.0.0.1", fs.port, "ClueCon", timeout=2.0)
    client.connect()
    Leg.attach(client, "u-1")
    client.close()
    assert len(client._group) == 0
    assert _next_command(fs, "exit") == "exit"
    with pytest.raises(EslDisconnected):
        client.api("status")


def test_start_retries_until_server_appears() -> None:
    probe = StreamServer(("127.0.0.1", 0), lambda s, a: s.close())
    probe.start()
    port = probe.server_port
    probe.stop()
    client = EslClient("127.0.0.1", port, "ClueCon", timeout=1.0, backoff=FAST)
    client.start()
    try:
        assert not client.wait_connected(0.1)
        fs = ScriptedFS()
        fs.server = StreamServer(("127.0.0.1", port), fs._handle)
        fs.start()
        try:
            assert client.wait_connected(5)
        finally:
            fs.stop()
    finally:
        client.close()


# --- pool --------------------------------------------------------------------------
def test_pool_picks_least_loaded_healthy() -> None:
    a, b = ScriptedFS().start(), ScriptedFS().start()
    pool = EslPool([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], "ClueCon", timeout=2.0, backoff=FAST)
    try:
        pool.start()
        assert pool.wait_ready(5)
        for c in pool.clients:
            assert c.wait_connected(5)
        ca, cb = pool.clients
        ca.events_for("x1")
        assert pool.pick() is cb
        cb.events_for("y1")
        cb.events_for("y2")
        assert pool.pick() is ca
        down = {c.label: gevent.event.Event() for c in pool.clients}
        pool.on_disconnect(lambda c: down[c.label].set())
        b.stop()  # b goes away for good: never picked while down
        assert down[cb.label].wait(5) and not cb.connected
        for _ in range(4):
            assert pool.pick() is ca
        a.stop()
        assert down[ca.label].wait(5)
        with pytest.raises(EslDisconnected, match="no FreeSWITCH reachable"):
            pool.pick()
        assert pool.client_for(f"127.0.0.1:{a.port}") is ca
    finally:
        pool.close()


@pytest.mark.parametrize("bad", ["localhost", "h:", ":8021", "h:99999", "h:x"])
def test_parse_address_refuses(bad) -> None:
    with pytest.raises(ValueError):
        parse_address(bad)


# --- Leg against the scripted switch -------------------------------------------------
def test_leg_originate_not_registered(fs, client) -> None:
    fs.bgapi_replies["originate"] = "-ERR USER_NOT_REGISTERED\n"
    leg = Leg.begin(
        client, "user/1000@127.0.0.1", {"hs_role": "desk"}, call_id="c1", role="desk", worker_id="w1"
    )
    with pytest.raises(LegGone) as exc:
        leg.wait_for({"CHANNEL_ANSWER"}, 5)
    assert exc.value.cause == "USER_NOT_REGISTERED"
    with pytest.raises(OriginateFailed):
        leg.wait_originated(1)
    cmd = _next_command(fs, "bgapi originate")
    assert cmd.startswith(f"bgapi originate {{origination_uuid={leg.uuid},")
    assert "hs_call_id=c1" in cmd and "hs_role=desk" in cmd and "hs_worker=w1" in cmd


def test_leg_commands_and_replies(fs, client) -> None:
    leg = Leg.attach(client, "u-2", call_id="c2")
    fs.api_replies.update(
        {
            "uuid_send_dtmf u-2": "+OK u-2 sent DTMF 12.\n",
            "uuid_broadcast u-2": "+OK Message sent\n",
            "uuid_bridge u-2": "-ERR Invalid uuid\n",
            "uuid_kill u-2": "-ERR No such channel!\n",
            "uuid_exists u-2": "true",
            "uuid_record u-2": "+OK Success\n",
            "sched_hangup": "+OK\n",
            "uuid_getvar u-2": "_undef_",
        }
    )
    leg.send_dtmf("12")
    leg.broadcast("/tmp/one_moment.wav")
    with pytest.raises(LegGone):
        leg.bridge("d-2")
    assert leg.hangup() is False
    assert leg.exists() is True
    leg.record_start("/tmp/r.wav")
    leg.set_max_duration(3600)
    assert leg.getvar("hs_call_id") is None
    fs.api_replies["uuid_send_dtmf u-2"] = "-USAGE: <uuid> <dtmf_data>\n"
    with pytest.raises(CommandFailed):
        leg.send_dtmf("3")
    sent = []
    while not fs.commands.empty():
        sent.append(fs.commands.get()[0])
    assert "api uuid_broadcast u-2 /tmp/one_moment.wav aleg" in sent
    assert "api uuid_kill u-2 NORMAL_CLEARING" in sent
    assert "api sched_hangup +3600 u-2 ALLOTTED_TIMEOUT" in sent


def test_leg_hangup_first_and_dtmf_stream(fs, client) -> None:
    leg = Leg.attach(client, "u-3")
    fs.push(
        plain_event([("Event-Name", "DTMF"), ("Unique-ID", "u-3"), ("DTMF-Digit", "5")])
        + plain_event([("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "u-3"), ("Hangup-Cause", "USER_BUSY")])
    )
    with pytest.raises(LegGone) as exc:
        leg.wait_for({"CHANNEL_ANSWER"}, 5)
    assert exc.value.cause == "USER_BUSY"
    assert leg.dtmf_events.get(timeout=1).get("DTMF-Digit") == "5"
    assert leg.wait_for({"CHANNEL_HANGUP"}, 1).get("Hangup-Cause") == "USER_BUSY"  # already happened
    with pytest.raises(LegGone):
        leg.wait_for({"CHANNEL_PARK"}, 1)


def test_leg_answer_then_hangup_is_gone(fs, client) -> None:
    leg = Leg.attach(client, "u-7")
    fs.push(
        plain_event([("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "u-7")])
        + plain_event(
            [("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "u-7"), ("Hangup-Cause", "NORMAL_CLEARING")]
        )
        + plain_event([("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", "u-7")])
    )
    assert leg.events.get(timeout=5).name == "CHANNEL_ANSWER"
    assert leg.events.get(timeout=5).name == "CHANNEL_HANGUP"
    assert leg.answered and leg.gone
    with pytest.raises(LegGone) as exc:
        leg.wait_for({"CHANNEL_ANSWER"}, 1)  # answered once, but no longer there
    assert exc.value.cause == "NORMAL_CLEARING"
    assert leg.events.get(timeout=5).name == "CHANNEL_HANGUP_COMPLETE"
    assert leg.events.get(timeout=5) is None  # the pump ended and released the stream
    assert client.load == 0


def test_close_during_backoff_is_prompt() -> None:
    probe = StreamServer(("127.0.0.1", 0), lambda s, a: s.close())
    probe.start()
    port = probe.server_port
    probe.stop()
    failed = gevent.event.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "connect failed" in record.getMessage():
                failed.set()

    spy = Spy()
    logging.getLogger("worker.esl").addHandler(spy)
    try:
        client = EslClient("127.0.0.1", port, "ClueCon", timeout=1.0, backoff=Backoff(initial=30, maximum=30))
        client.start()
        assert failed.wait(5)  # the first attempt failed: a 30 s backoff has begun
        t0 = time.monotonic()
        client.close()
        assert time.monotonic() - t0 < 0.5
    finally:
        logging.getLogger("worker.esl").removeHandler(spy)


def test_leg_fork_connect_failed(fs, client) -> None:
    leg = Leg.attach(client, "u-4")

    def fork(server, sock, cmd):
        if cmd.startswith("api uuid_audio_fork u-4 start"):
            sock.sendall(b"Content-Type: api/response\nContent-Length: 12\n\n+OK Success\n")
            sock.sendall(
                plain_event(
                    [
                        ("Event-Subclass", "mod_audio_fork::connect_failed"),
                        ("Event-Name", "CUSTOM"),
                        ("Unique-ID", "u-4"),
                    ],
                    '{"reason":"Unable to connect"}',
                )
            )
            return True
        return False

    fs.on_command = fork
    fs.api_replies["uuid_audio_fork u-4 stop"] = "+OK Success\n"
    with pytest.raises(ForkFailed) as exc:
        leg.start_fork("ws://127.0.0.1:1/fork/c", metadata={"callId": "c"})
    assert exc.value.reason == "Unable to connect"
    assert _next_command(fs, "api uuid_audio_fork u-4 stop") == "api uuid_audio_fork u-4 stop"


def test_leg_fork_timeout_and_refusal(fs, client) -> None:
    leg = Leg.attach(client, "u-5")
    fs.api_replies["uuid_audio_fork u-5 start"] = "+OK Success\n"
    fs.api_replies["uuid_audio_fork u-5 stop"] = "+OK Success\n"
    with pytest.raises(ForkFailed, match="did not connect"):
        leg.start_fork("ws://127.0.0.1:1/fork/c", timeout=0.2)
    fs.api_replies["uuid_audio_fork u-5 start"] = "-ERR Operation Failed\n"
    with pytest.raises(ForkFailed, match="refused"):
        leg.start_fork("ws://127.0.0.1:1/fork/c")
    with pytest.raises(ValueError):
        leg.start_fork("ws://127.0.0.1:1/fork/c", metadata={"a": "has space"})


def test_leg_disconnect_wakes_waiter(fs, client) -> None:
    client._reconnect = False
    leg = Leg.attach(client, "u-6")
    waiter = gevent.spawn(leg.wait_for, {"CHANNEL_ANSWER"}, 30)
    gevent.idle()
    fs.drop_all()
    with pytest.raises(EslDisconnected):
        waiter.get(timeout=5)


def _replay_client(case: str) -> tuple[ReplayFS, EslClient, list[str]]:
    recv = CAPTURES / "gateway" / f"{case}.recv.bin"
    server = ReplayFS(recv).start()
    client = EslClient("127.0.0.1", server.port, "ClueCon", timeout=5.0, events=["ALL"], reconnect=False)
    client.connect()
    return server, client, [raw.decode().split("\n")[0] for raw in sent_commands(recv)]


def _uuid_in(cmd: str) -> str:
    return cmd.split("origination_uuid=")[1].split(",")[0].split("}")[0]


def test_replay_far_end_hangs_up_during_fork() -> None:
    server, client, theirs = _replay_client("gw_far_end_hangup_during_fork")
    try:
        uuid = _uuid_in(theirs[2])
        a = Leg.originate(client, "sofia/gateway/company/5559100", {"ignore_early_media": "true"}, uuid=uuid)
        a.start_fork("ws://127.0.0.1:18766/fork", 8000, {"callId": uuid})
        with pytest.raises(LegGone) as exc:
            a.wait_for({"CHANNEL_BRIDGE"}, 5)
        assert exc.value.cause == "NORMAL_CLEARING"
        done = a.wait_for({"CHANNEL_HANGUP_COMPLETE"}, 5)
        assert done.get("variable_sip_hangup_disposition") == "recv_bye"
        assert not a.fork_connected  # MEDIA_BUG_STOP / hangup
        assert a.stop_fork() is False  # -ERR Operation Failed: the bug went with the channel
        assert a.exists() is False
    finally:
        client.close()
        server.stop()
    assert [c for c, _h in server.commands] == theirs


def test_replay_ivr_dtmf_only_on_the_far_end_leg() -> None:
    server, client, theirs = _replay_client("gw_ivr_dtmf")
    try:
        uuid = _uuid_in(theirs[2])
        a = Leg.originate(client, "sofia/gateway/company/5550200", {"ignore_early_media": "true"}, uuid=uuid)
        a.start_fork("ws://127.0.0.1:18766/fork", 8000, {"callId": uuid})
        far_dtmf = gevent.event.Event()
        client.on_event(lambda ev: far_dtmf.set() if ev.name == "DTMF" and ev.unique_id != uuid else None)
        a.send_dtmf("1")
        assert far_dtmf.wait(5)  # the capture's only DTMF event, on the looped far-end leg
        assert a.hangup(cause=None)
        a.wait_for({"CHANNEL_HANGUP_COMPLETE"}, 5)
        assert a.dtmf_events.empty()  # not ours: routed by Unique-ID
    finally:
        client.close()
        server.stop()
    assert [c for c, _h in server.commands] == theirs


def test_replay_desk_not_registered() -> None:
    server, client, theirs = _replay_client("desk_not_registered")
    try:
        assert client.bgapi("originate user/1000@127.0.0.1 &park()") == "-ERR USER_NOT_REGISTERED\n"
        with pytest.raises(OriginateFailed) as exc:
            Leg.originate(client, "user/1000@127.0.0.1", uuid=_uuid_in(theirs[3]), timeout=5)
        assert exc.value.cause == "USER_NOT_REGISTERED"
        assert client.api("sofia_contact 1000@127.0.0.1") == "error/user_not_registered"
        assert client.api("originate user/1000@127.0.0.1 &park()") == "-ERR USER_NOT_REGISTERED\n"
        assert client.load == 0
    finally:
        client.close()
        server.stop()
    assert [c for c, _h in server.commands] == theirs


def test_replay_no_answer() -> None:
    server, client, theirs = _replay_client("gw_no_answer")
    try:
        leg = Leg.begin(
            client,
            "sofia/gateway/company/5550480",
            {"ignore_early_media": "true", "originate_timeout": 5},
            uuid=_uuid_in(theirs[2]),
        )
        with pytest.raises(LegGone) as gone:
            leg.wait_for({"CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA"}, 5)
        assert gone.value.cause == "NO_ANSWER"
        assert leg.ringing and not leg.early_media
        with pytest.raises(OriginateFailed, match="NO_ANSWER"):
            leg.wait_originated(5)
    finally:
        client.close()
        server.stop()
    assert [c for c, _h in server.commands] == theirs
