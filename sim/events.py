"""Events of the stand-in switch, built from templates captured on a real FreeSWITCH.

``data/templates.json`` (made by ``sim.capture_templates``) holds, per segment of
a call (setup, ringing, answer, park, bridge, hangup...), the events exactly as
FreeSWITCH 1.10.12 sent them, with call-specific values replaced by
placeholders.  ``EventFactory`` fills them for one channel: identity, caller id,
call state, hangup cause, times and the channel's own variables.  Pure: the clock
is passed in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

TEMPLATES_PATH = Path(__file__).parent / "data" / "templates.json"

CAUSE_Q850 = {
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_DESTINATION": 3,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SERVICE_UNAVAILABLE": 63,
    "INCOMPATIBLE_DESTINATION": 88,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "ORIGINATOR_CANCEL": 487,
    "LOSE_RACE": 702,
    "MANAGER_REQUEST": 703,
    "ALLOTTED_TIMEOUT": 802,
    "MEDIA_TIMEOUT": 804,
    "USER_NOT_REGISTERED": 806,
    "PROGRESS_TIMEOUT": 807,
    "INVALID_GATEWAY": 808,
    "GATEWAY_DOWN": 809,
}
# Q.850 values FreeSWITCH puts in variable_hangup_cause_q850 (its own causes above 127 map to 16 etc.)
_Q850_VAR = {"ORIGINATOR_CANCEL": 16, "MANAGER_REQUEST": 16, "ALLOTTED_TIMEOUT": 16, "LOSE_RACE": 16}

_TIME_HEADERS = {
    "Caller-Profile-Created-Time": "created_us",
    "Caller-Channel-Created-Time": "created_us",
    "Caller-Channel-Answered-Time": "answered_us",
    "Caller-Channel-Progress-Time": "progress_us",
    "Caller-Channel-Progress-Media-Time": "progress_media_us",
    "Caller-Channel-Hangup-Time": "hangup_us",
    "Caller-Channel-Bridged-Time": "bridged_us",
}


def q850(cause: str) -> int:
    return _Q850_VAR.get(cause, CAUSE_Q850.get(cause, 31))


@dataclass
class Event:
    """One event: ordered headers (duplicates allowed) and an optional body."""

    headers: list[tuple[str, str]]
    body: str | None = None

    @property
    def name(self) -> str:
        return self.get("Event-Name")

    @property
    def subclass(self) -> str:
        return self.get("Event-Subclass")

    def get(self, name: str, default: str = "") -> str:
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


class ChannelView(Protocol):
    """What the factory needs from a channel (sim.channels.Channel provides it)."""

    uuid: str
    name: str
    dest: str
    family: str
    state: str
    callstate: str
    prev_callstate: str
    hangup_cause: str
    caller_id_name: str
    caller_id_number: str
    user_vars: dict[str, str]
    extra_vars: dict[str, str]
    var_overrides: dict[str, str]
    var_snapshot: list[tuple[str, str]]
    times: dict[str, int]


@dataclass
class Template:
    role: str
    headers: list[tuple[str, str]]
    body: str | None
    family: str


@dataclass
class Templates:
    segments: dict[str, list[Template]] = field(default_factory=dict)
    singles: dict[str, Template] = field(default_factory=dict)


@lru_cache(maxsize=1)
def load_templates(path: str = str(TEMPLATES_PATH)) -> Templates:
    raw = json.loads(Path(path).read_text())
    out = Templates()
    for seg, items in raw["segments"].items():
        fam_default = seg.split(".", 1)[0]
        tpls = []
        for it in items:
            family = fam_default
            if seg in ("bridge", "hangup.bridged"):
                family = "gw" if it["role"] == "a" else "desk"
            tpls.append(Template(it["role"], [tuple(h) for h in it["headers"]], it["body"], family))
        out.segments[seg] = tpls
    for name, it in raw["singles"].items():
        out.singles[name] = Template("a", [tuple(h) for h in it["headers"]], it["body"], "core")
    return out


_CORE = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4", "FreeSWITCH-IPv6")


class EventFactory:
    """Fills templates.  One per switch: it owns Core-UUID and the Event-Sequence counter."""

    def __init__(
        self,
        core_uuid: str,
        hostname: str = "sim",
        ipv4: str = "127.0.0.1",
        ipv6: str = "::1",
        clock: Callable[[], float] = time.time,
        templates: Templates | None = None,
    ) -> None:
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.clock = clock
        self.templates = templates or load_templates()
        self._seq = 1000

    # -- core ---------------------------------------------------------------------
    def _core_value(self, name: str, now: float) -> str | None:
        if name == "Core-UUID":
            return self.core_uuid
        if name in ("FreeSWITCH-Hostname", "FreeSWITCH-Switchname"):
            return self.hostname
        if name == "FreeSWITCH-IPv4":
            return self.ipv4
        if name == "FreeSWITCH-IPv6":
            return self.ipv6
        if name == "Event-Date-Local":
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if name == "Event-Date-GMT":
            return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        if name == "Event-Date-Timestamp":
            return str(int(now * 1_000_000))
        if name == "Event-Sequence":
            self._seq += 1
            return str(self._seq)
        return None

    # -- channel events ---------------------------------------------------------------
    def segment(
        self,
        seg: str,
        chans: Mapping[str, ChannelView],
        skip: Iterable[str] = (),
        overrides: dict[str, str] | None = None,
    ) -> list[Event]:
        """All events of a captured segment; `chans` maps template roles ("a", "b") to channels."""
        out = []
        for tpl in self.templates.segments[seg]:
            name = dict(tpl.headers).get("Event-Name", "")
            if name in skip or tpl.role not in chans:
                continue
            other = next((c for r, c in chans.items() if r != tpl.role), None)
            out.append(self.fill(tpl, chans[tpl.role], other, overrides))
        return out

    def one(
        self,
        seg: str,
        index: int,
        chan: ChannelView,
        other: ChannelView | None = None,
        overrides: dict[str, str] | None = None,
        subclass: str | None = None,
        body: str | None = None,
        event_name: str | None = None,
    ) -> Event:
        tpl = self.templates.segments[seg][index]
        ev = self.fill(tpl, chan, other, overrides, body=body)
        if subclass is not None or event_name is not None:
            ev.headers = [
                (
                    n,
                    subclass
                    if (n == "Event-Subclass" and subclass is not None)
                    else event_name
                    if (n == "Event-Name" and event_name is not None)
                    else v,
                )
                for n, v in ev.headers
            ]
        return ev

    def fill(
        self,
        tpl: Template,
        chan: ChannelView,
        other: ChannelView | None,
        overrides: dict[str, str] | None = None,
        body: str | None = None,
    ) -> Event:
        now = self.clock()
        subs = {
            "@@uuid@@": chan.uuid,
            "@@channel_name@@": chan.name,
            "@@dest@@": chan.dest,
            "@@gateway@@": "trunk",
            "@@core_uuid@@": self.core_uuid,
            "@@other_uuid@@": other.uuid if other else "",
            "@@other_channel_name@@": other.name if other else "",
        }
        own_vars = tpl.family == chan.family
        tdict = dict(tpl.headers)
        event_name = tdict.get("Event-Name", "")
        if event_name == "CHANNEL_CALLSTATE":
            chan.prev_callstate = chan.callstate
            chan.callstate = tdict.get("Channel-Call-State", chan.callstate)
        headers: list[tuple[str, str]] = []
        var_block: list[tuple[str, str]] = []
        in_vars = False
        vars_done = False

        def flush_vars() -> None:
            nonlocal vars_done
            if vars_done:
                return
            vars_done = True
            block = var_block if own_vars else list(chan.var_snapshot)
            if own_vars:
                chan.var_snapshot = list(block)
            seen = {n for n, _ in block}
            merged = [
                (n, chan.extra_vars.get(n[9:], v) if n.startswith("variable_") else v) for n, v in block
            ]
            merged = [(n, chan.var_overrides.get(n[9:], v)) for n, v in merged if v != ""]
            for k, v in chan.extra_vars.items():
                if f"variable_{k}" not in seen and v != "":
                    merged.append((f"variable_{k}", v))
            headers.extend(self._cause_vars(merged, chan))

        for name, value in tpl.headers:
            is_var = name.startswith("variable_") or name == "@@USERVARS@@"
            if is_var:
                in_vars = True
                if name == "@@USERVARS@@":
                    var_block.extend((f"variable_{k}", v) for k, v in chan.user_vars.items())
                else:
                    var_block.append((name, _subst(value, subs)))
                continue
            if in_vars and not vars_done:
                flush_vars()
            core = (
                self._core_value(name, now)
                if (name in _CORE or name.startswith("Event-Date") or name == "Event-Sequence")
                else None
            )
            if core is not None:
                headers.append((name, core))
                continue
            v = self._channel_value(name, _subst(value, subs), chan, event_name, headers)
            if v is None or v == "":
                continue
            if (
                name == "Caller-Caller-ID-Number"
                and chan.caller_id_name
                and not any(n == "Caller-Caller-ID-Name" for n, _ in headers)
            ):
                headers.append(("Caller-Caller-ID-Name", chan.caller_id_name))
            headers.append((name, v))
        if in_vars and not vars_done:
            flush_vars()
        if overrides:  # an empty override drops the header (FreeSWITCH never sends empty values)
            headers = [(n, overrides.get(n, v)) for n, v in headers if overrides.get(n, v) != ""]
        ev_body: str | None = body
        if ev_body is None and tpl.body is not None:
            ev_body = _subst(tpl.body, subs)
        return Event(headers, ev_body)

    def _channel_value(
        self, name: str, value: str, chan: ChannelView, event_name: str, headers: list[tuple[str, str]]
    ) -> str | None:
        if name == "Channel-Call-State":
            return chan.callstate
        if name == "Original-Channel-Call-State":
            return chan.prev_callstate
        if name == "Hangup-Cause":
            return chan.hangup_cause or value
        if name == "Answer-State" and value != "hangup" and event_name != "CHANNEL_ANSWER":
            if chan.state == "early" and "answered_us" not in chan.times:
                return "early"  # parked on early media (originate without ignore_early_media)
        if name in ("Caller-Caller-ID-Number", "Caller-ANI", "Caller-Orig-Caller-ID-Number"):
            return chan.caller_id_number or value
        if name in ("Caller-Caller-ID-Name", "Caller-Orig-Caller-ID-Name") and chan.caller_id_name:
            return chan.caller_id_name
        if name in _TIME_HEADERS:
            return str(chan.times.get(_TIME_HEADERS[name], 0))
        return value

    def _cause_vars(self, block: list[tuple[str, str]], chan: ChannelView) -> list[tuple[str, str]]:
        times = cdr_vars(chan.times)
        block = [(n, times.get(n[9:], v)) for n, v in block]
        if not chan.hangup_cause:
            return block
        out = []
        for n, v in block:
            if n == "variable_hangup_cause":
                v = chan.hangup_cause
            elif n == "variable_hangup_cause_q850":
                v = str(q850(chan.hangup_cause))
            out.append((n, v))
        return out

    # -- non-channel events ---------------------------------------------------------------
    def _plain(self, single: str, tail: list[tuple[str, str]], body: str | None) -> Event:
        tpl = self.templates.singles[single]
        now = self.clock()
        headers: list[tuple[str, str]] = []
        for name, value in tpl.headers:
            if name.startswith(("Job-", "API-")) and single != "heartbeat":
                continue
            core = self._core_value(name, now)
            headers.append((name, core if core is not None else value))
        headers.extend((n, v) for n, v in tail if v != "")
        return Event(headers, body)

    def background_job(self, job_uuid: str, command: str, arg: str, body: str) -> Event:
        return self._plain(
            "background_job",
            [("Job-UUID", job_uuid), ("Job-Command", command), ("Job-Command-Arg", arg)],
            body,
        )

    def heartbeat(self, uptime_s: float, sessions: int, since_startup: int) -> Event:
        ev = self._plain("heartbeat", [], None)
        days, rem = divmod(int(uptime_s), 86400)
        hours, rem = divmod(rem, 3600)
        minutes, secs = divmod(rem, 60)
        ms = int((uptime_s - int(uptime_s)) * 1000)
        values = {
            "Up-Time": f"0 years, {days} days, {hours} hours, {minutes} minutes, {secs} seconds, "
            f"{ms} milliseconds, 0 microseconds",
            "Uptime-msec": str(int(uptime_s * 1000)),
            "Session-Count": str(sessions),
            "Session-Since-Startup": str(since_startup),
        }
        ev.headers = [(n, values.get(n, v)) for n, v in ev.headers]
        return ev

    def api(self, command: str, arg: str) -> Event:
        return self._plain("api", [("API-Command", command), ("API-Command-Argument", arg)], None)


_CDR_POINTS = {
    "start": "created_us",
    "profile_start": "created_us",
    "answer": "answered_us",
    "bridge": "bridged_us",
    "progress": "progress_us",
    "progress_media": "progress_media_us",
    "end": "hangup_us",
}


def cdr_vars(times: dict[str, int]) -> dict[str, str]:
    """CDR time variables (start_epoch, answer_uepoch, billsec, waitmsec...) from the channel's times (us)."""
    out: dict[str, str] = {}
    for point, key in _CDR_POINTS.items():
        us = times.get(key, 0)
        out[f"{point}_uepoch"] = str(us)
        out[f"{point}_epoch"] = str(us // 1_000_000)
        if us:
            out[f"{point}_stamp"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1_000_000))
    start = times.get("created_us", 0)
    end = times.get("hangup_us", 0)
    if not (start and end):
        return out
    answered = times.get("answered_us", 0)
    spans = {
        "duration": end - start,
        "bill": end - answered if answered else 0,
        "progress": times.get("progress_us", 0) - start if times.get("progress_us") else 0,
        "answer": answered - start if answered else 0,
        "wait": (times.get("bridged_us", 0) - start) if times.get("bridged_us") else 0,
        "progress_media": times.get("progress_media_us", 0) - start if times.get("progress_media_us") else 0,
        "flow_bill": end - start,
    }
    for name, us in spans.items():
        us = max(0, us)
        if name == "duration":
            out["duration"], out["mduration"], out["uduration"] = (
                str(us // 1_000_000),
                str(us // 1000),
                str(us),
            )
        else:
            out[f"{name}sec"], out[f"{name}msec"], out[f"{name}usec"] = (
                str(us // 1_000_000),
                str(us // 1000),
                str(us),
            )
    return out


def _subst(value: Any, subs: dict[str, str]) -> str:
    s = str(value)
    if "@@" not in s:
        return s
    for k, v in subs.items():
        if k in s:
            s = s.replace(k, v)
    return s
