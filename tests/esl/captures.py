"""Helpers to read the captured FreeSWITCH bytes and their .summary.txt listings."""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# The captures ship in the planning repo's shared/ folder, beside this checkout (CI lays it there);
# HS_SHARED_DIR points elsewhere.  Without them the capture tests are skipped, not failed.
SHARED = Path(os.environ.get("HS_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
REFERENCE = SHARED / "reference"
CAPTURES = REFERENCE / "fs-captures"

_LINE = re.compile(r"^\s*(\d+) (FRAME|EVENT|EVENT\(json\)) (.*)$")


@dataclass
class SummaryItem:
    index: int
    kind: str  # FRAME | EVENT
    name: str = ""  # event name
    outer: str = ""  # FRAME: repr text of the header block (decoded)
    body_repr: str = ""  # repr of the body, possibly truncated
    headers: dict[str, str] = field(default_factory=dict)


def esl_captures() -> list[Path]:
    return sorted(
        p for p in CAPTURES.rglob("*.recv.bin") if p.with_suffix("").with_suffix(".summary.txt").exists()
    )


def summary_for(recv: Path) -> list[SummaryItem]:
    path = recv.with_suffix("").with_suffix(".summary.txt")
    items: list[SummaryItem] = []
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        index, kind, rest = int(m.group(1)), m.group(2), m.group(3)
        if kind == "FRAME":
            fm = re.match(r"^('(?:[^'\\]|\\.)*') body=(.*)$", rest)
            assert fm, line
            items.append(
                SummaryItem(index, "FRAME", outer=ast.literal_eval(fm.group(1)), body_repr=fm.group(2))
            )
            continue
        brace = rest.index("{")
        words, tail = rest[:brace].split(), rest[brace:]
        name = words[0]
        headers, end = json.JSONDecoder().raw_decode(tail)
        if len(words) > 1:  # gateway summaries: "EVENT CUSTOM mod_audio_fork::connect {...}"
            headers.setdefault("Event-Subclass", words[1])
        after = tail[end:].strip()
        body_repr = ""
        if after:
            bm = re.match(r"^(?:BODY\(\d+\)|_body)=(.*)$", after)
            assert bm, line
            body_repr = bm.group(1)
        items.append(SummaryItem(index, "EVENT", name=name, headers=headers, body_repr=body_repr))
    return items


def legs_for(recv: Path) -> dict[str, list[tuple[int, str]]]:
    """The summary's per-leg listing: uuid -> [(frame index, event key)], BACKGROUND_JOB lines left out."""
    path = recv.with_suffix("").with_suffix(".summary.txt")
    legs: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("LEG "):
            current = legs.setdefault(line.split()[1], [])
            continue
        m = re.match(r"^\s+#(\d+) (\S+)(?: (\S+))?$", line)
        if current is not None and m and not m.group(2).startswith("["):
            key = m.group(3) if m.group(2) == "CUSTOM" and m.group(3) else m.group(2)
            current.append((int(m.group(1)), key))
        elif not line.strip() or line.startswith("==="):
            current = None if line.startswith("===") else current
    return legs


def sent_commands(recv: Path) -> list[bytes]:
    """What the capture's client sent, in order (from the transcript's `>>> b'...'` lines)."""
    path = recv.with_suffix("").with_suffix(".transcript.txt")
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^##### \[\s*[\d.]+\] >>> (b'.*')$", line)
        if m:
            out.append(ast.literal_eval(m.group(1)))
    return out
