"""Build sim/data/templates.json from the real FreeSWITCH captures (a developer tool).

    python -m sim.capture_templates ../shared/reference/fs-captures sim/data/templates.json

Every event the stand-in switch emits is one of these templates: the header NAMES
and their order are exactly what FreeSWITCH 1.10.12 sent; values that identify a
call are replaced by placeholders (``@@uuid@@``, ``@@dest@@``...) that
``sim.events`` fills in.  A run of the originate's own ``{var=value}`` headers
becomes one ``@@USERVARS@@`` slot, filled with the variables of the simulated call.

Segments are frame ranges of a capture (1-based frame numbers as in the
``.summary.txt`` files), keeping only the events of the named legs, in wire order.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path

# capture -> {uuid: role}, the captured numbers, and the originate's user variables
CAPTURES: dict[str, dict] = {
    "gw_answer_fork_bridge": {
        "legs": {"62fe4c81-2fa6-44a6-a85b-fe1524d7db77": "a", "0fc9eff5-1972-4828-9954-3281caed1276": "b"},
        "dest": {"a": "5550100", "b": "1000"},
    },
    "gw_ivr_dtmf": {"legs": {"fd4cb14c-3d86-42de-8164-9ba6c354c592": "a"}, "dest": {"a": "5550200"}},
    "gw_far_end_hangup_during_fork": {
        "legs": {"af9b1fae-06cf-457b-9842-180d17775f43": "a"},
        "dest": {"a": "5559100"},
    },
    "gw_early_media_no_answer": {
        "legs": {"f883abb1-416b-4193-b805-2c2698d08e33": "a"},
        "dest": {"a": "5550183"},
    },
    "gw_no_answer": {"legs": {"8ed29ec4-30fe-422b-9a85-33d6d0fa6438": "a"}, "dest": {"a": "5550480"}},
    "gw_busy": {"legs": {"d143b5c4-7508-43ea-87cd-25e182574ed7": "a"}, "dest": {"a": "5550486"}},
    "gw_not_found": {"legs": {"1cc71902-eb6c-4d28-8d90-3315e16fd892": "a"}, "dest": {"a": "5550404"}},
    "gw_unavailable": {"legs": {"acf33848-cb58-4c96-b595-cd752647091e": "a"}, "dest": {"a": "5550503"}},
    "esl_sip_call": {"legs": {"1d9c0f88-2996-4ec8-9254-d66a744d84aa": "a"}, "dest": {"a": "1000"}},
}
USER_VARS = {"origination_uuid", "ignore_early_media", "originate_timeout"}

# name -> (capture, first frame, last frame, include non-channel events?)
SEGMENTS: dict[str, tuple[str, int, int]] = {
    "gw.setup": ("gw_answer_fork_bridge", 5, 10),
    "gw.ringing": ("gw_answer_fork_bridge", 26, 27),
    "gw.answer": ("gw_answer_fork_bridge", 41, 45),
    "gw.park": ("gw_answer_fork_bridge", 48, 50),
    "gw.media_bug_start": ("gw_answer_fork_bridge", 52, 52),
    "gw.fork_connect": ("gw_answer_fork_bridge", 54, 54),
    "desk.setup": ("gw_answer_fork_bridge", 61, 67),
    "desk.ringing": ("gw_answer_fork_bridge", 68, 69),
    "desk.answer": ("gw_answer_fork_bridge", 70, 76),
    "desk.park": ("gw_answer_fork_bridge", 79, 81),
    "bridge": ("gw_answer_fork_bridge", 84, 101),
    "hangup.bridged": ("gw_answer_fork_bridge", 103, 120),
    "gw.hangup.parked_local": ("gw_ivr_dtmf", 97, 107),
    "gw.hangup.parked_remote": ("gw_far_end_hangup_during_fork", 68, 77),
    "gw.early": ("gw_early_media_no_answer", 29, 33),
    "gw.timeout.early": ("gw_early_media_no_answer", 34, 42),
    "gw.timeout.ringing": ("gw_no_answer", 28, 36),
    "gw.refuse.USER_BUSY": ("gw_busy", 31, 39),
    "gw.refuse.UNALLOCATED_NUMBER": ("gw_not_found", 31, 39),
    "gw.refuse.NORMAL_TEMPORARY_FAILURE": ("gw_unavailable", 31, 39),
    "sip.playback_start": ("esl_sip_call", 30, 31),
    "sip.playback_stop": ("esl_sip_call", 46, 48),
    "sip.media_bug_stop": ("esl_sip_call", 37, 37),
    "sip.dtmf": ("esl_sip_call", 41, 41),
    # a desk leg (user/1000) killed while parked: HANGUP, frames 49-57 (skips the playback events)
    "desk.hangup.parked": ("esl_sip_call", 44, 44),
    "desk.hangup.parked+": ("esl_sip_call", 49, 57),
}
# single non-channel events: name -> (capture, frame)
SINGLES: dict[str, tuple[str, int]] = {
    "api": ("gw_answer_fork_bridge", 46),
    "background_job": ("gw_answer_fork_bridge", 47),
    "heartbeat": ("gw_ivr_dtmf", 66),
}


def frames(data: bytes):
    i = 0
    while i < len(data):
        j = data.index(b"\n\n", i)
        head = data[i:j].decode()
        hdrs = dict(line.split(": ", 1) for line in head.split("\n"))
        i = j + 2
        body = b""
        if "Content-Length" in hdrs:
            n = int(hdrs["Content-Length"])
            body = data[i : i + n]
            i += n
        yield hdrs, body


def parse_event(body: bytes) -> tuple[list[list[str]], str | None]:
    text = body.decode()
    k = text.find("\n\n")
    head, rest = text[:k], text[k + 2 :]
    headers: list[list[str]] = []
    inner_len = None
    for line in head.split("\n"):
        name, value = line.split(": ", 1)
        if name == "Content-Length" and headers and headers[-1][0] != "Event-Name":
            inner_len = int(value)
            continue
        headers.append([name, urllib.parse.unquote(value)])
    return headers, (rest[:inner_len] if inner_len is not None else None)


def _placeholders(value: str, subs: list[tuple[str, str]]) -> str:
    for old, new in subs:
        value = value.replace(old, new)
    return value


def templatize(headers: list[list[str]], role: str, meta: dict, core_uuid: str) -> list[list[str]]:
    uuids = meta["legs"]
    subs: list[tuple[str, str]] = [(core_uuid, "@@core_uuid@@")]
    for uuid, r in uuids.items():
        subs.append((uuid, "@@uuid@@" if r == role else "@@other_uuid@@"))
    for r, name in sorted(meta.get("names", {}).items(), key=lambda kv: len(kv[1]), reverse=True):
        subs.append((name, "@@channel_name@@" if r == role else "@@other_channel_name@@"))
    dest = meta["dest"].get(role)
    out: list[list[str]] = []
    slot = False
    for name, value in headers:
        if name.startswith("variable_") and name[9:] in USER_VARS:
            if not slot:
                out.append(["@@USERVARS@@", ""])
                slot = True
            continue
        value = _placeholders(value, subs)
        if dest:
            value = re.sub(rf"(?<![0-9]){dest}(?![0-9])", "@@dest@@", value)
        value = value.replace("gw+company", "gw+@@gateway@@").replace("gw=company", "gw=@@gateway@@")
        if name == "variable_sip_gateway_name":
            value = "@@gateway@@"
        out.append([name, value])
    return out


def build(capdir: Path) -> dict:
    result: dict = {"segments": {}, "singles": {}}
    cache: dict[str, list] = {}
    for cap, meta in CAPTURES.items():
        path = capdir / ("sip_call" if cap.startswith("esl_sip") else "gateway") / f"{cap}.recv.bin"
        cache[cap] = list(frames(path.read_bytes()))
        meta["names"] = {}
        for hdrs, body in cache[cap]:
            if hdrs.get("Content-Type") == "text/event-plain":
                d = dict(parse_event(body)[0])
                role = meta["legs"].get(d.get("Unique-ID", ""))
                if role and "Channel-Name" in d:
                    meta["names"][role] = d["Channel-Name"]
    for seg, (cap, first, last) in SEGMENTS.items():
        meta = CAPTURES[cap]
        items = []
        for n in range(first, last + 1):
            hdrs, body = cache[cap][n - 1]
            if hdrs.get("Content-Type") != "text/event-plain":
                continue
            headers, ebody = parse_event(body)
            d = dict(headers)
            role = meta["legs"].get(d.get("Unique-ID", ""))
            if role is None:
                continue
            core = d["Core-UUID"]
            items.append({"role": role, "headers": templatize(headers, role, meta, core), "body": ebody})
        if seg.endswith("+"):
            result["segments"][seg[:-1]].extend(items)
        else:
            result["segments"][seg] = items
    for name, (cap, n) in SINGLES.items():
        hdrs, body = cache[cap][n - 1]
        headers, ebody = parse_event(body)
        d = dict(headers)
        result["singles"][name] = {
            "headers": templatize(headers, "a", CAPTURES[cap], d["Core-UUID"]),
            "body": ebody,
        }
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m sim.capture_templates FS_CAPTURES_DIR OUT.json", file=sys.stderr)
        return 2
    data = build(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
