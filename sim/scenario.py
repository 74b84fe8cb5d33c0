"""Company scenarios: JSON files validated by schemas/company_scenario.json, and their audio.

``load_scenario(path)`` validates (draft 2020-12) and fails with a clear
``ScenarioError`` naming the file and the JSON path of the problem;
``CompanyDirectory(dir)`` maps E.164 numbers to scenarios; ``AudioRenderer``
turns audio specs (files, espeak-ng text, tones, silence) into 8 kHz PCM once.
Unknown numbers get ``not_in_service()``: SIT tone + "the number you have dialed
is not in service" as early media, then UNALLOCATED_NUMBER, like a carrier.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from sim import audio

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "company_scenario.json"
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")
MOH_DIR = Path("/usr/share/asterisk/moh")
DEFAULT_IVR_VOICE = "en-us"
DEFAULT_AGENT_VOICE = "en-us+f3"
SPECIAL_TARGETS = ("hold", "agent", "voicemail", "hangup")


class ScenarioError(ValueError):
    """A scenario file is missing, not JSON, or does not fit the schema."""


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema)


@dataclass(frozen=True)
class Scenario:
    data: dict[str, Any]
    source: str

    @property
    def number(self) -> str:
        return str(self.data["number"])

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def outcome(self) -> str:
        return str(self.data["outcome"])

    @property
    def ring_seconds(self) -> float:
        return float(self.data.get("ring_seconds", 2))

    def voice(self, who: str) -> str:
        default = DEFAULT_AGENT_VOICE if who == "agent" else DEFAULT_IVR_VOICE
        return str(self.data.get("voices", {}).get(who, default))


def validate_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ScenarioError(f"{source}: invalid company scenario at {where}: {err.message}")
    ivr = data.get("ivr")
    if ivr:
        nodes = ivr["nodes"]
        if ivr["start"] not in nodes:
            raise ScenarioError(f"{source}: ivr.start {ivr['start']!r} is not a node")
        for name, node in nodes.items():
            targets = list(node.get("choices", {}).values())
            targets += [node[k] for k in ("on_timeout", "next") if k in node]
            for t in targets:
                if t not in nodes and t not in SPECIAL_TARGETS:
                    raise ScenarioError(f"{source}: ivr node {name!r} goes to unknown target {t!r}")
    for where, clip in _clips(data):
        if "file" in clip and resolve_audio_path(clip["file"]) is None:
            raise ScenarioError(f"{source}: audio file not found at {where}: {clip['file']}")
    return Scenario(data, source)


def _clips(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if "file" in node and isinstance(node["file"], str):
            out.append((where or "(top level)", node))
        for k, v in node.items():
            out.extend(_clips(v, f"{where}/{k}" if where else str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_clips(v, f"{where}/{i}"))
    return out


def resolve_audio_path(name: str) -> Path | None:
    """An absolute or relative path, else relative to the Asterisk sounds or music-on-hold directories."""
    path = Path(name)
    if path.is_file():
        return path
    if not path.is_absolute():
        for base in (ASTERISK_SOUNDS, MOH_DIR):
            if (base / path).is_file():
                return base / path
    return None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read company scenario: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not valid JSON: {exc}") from exc
    return validate_scenario(data, str(path))


def not_in_service(number: str) -> Scenario:
    data = {
        "number": number if number.startswith("+") else "+" + number,
        "name": "Not in service",
        "ring_seconds": 0.3,
        "outcome": "sit",
        "early_media": [{"sit": True}, {"file": str(ASTERISK_SOUNDS / "ss-noservice.wav")}, {"silence": 0.5}],
    }
    if not (ASTERISK_SOUNDS / "ss-noservice.wav").is_file():
        data["early_media"] = [{"sit": True}, {"say": "The number you have dialed is not in service."}]
    return Scenario(data, "<not in service>")


class CompanyDirectory:
    """number (E.164) -> Scenario, from every *.json in a directory (all validated at start-up)."""

    def __init__(self, directory: str | Path | None) -> None:
        self.by_number: dict[str, Scenario] = {}
        self.dials: dict[str, int] = {}  # number -> dials so far (scenarios with `attempts`)
        if directory is None:
            return
        d = Path(directory)
        if not d.is_dir():
            raise ScenarioError(f"companies directory not found: {d}")
        for path in sorted(d.glob("*.json")):
            sc = load_scenario(path)
            if sc.number in self.by_number:
                other = self.by_number[sc.number].source
                raise ScenarioError(f"{path}: number {sc.number} already used by {other}")
            self.by_number[sc.number] = sc

    def add(self, scenario: Scenario) -> None:
        self.by_number[scenario.number] = scenario

    def lookup(self, digits: str) -> Scenario | None:
        """The scenario for one dial of `digits` (call once per dial: `attempts` counts the dials)."""
        digits = digits.strip()
        key = digits if digits.startswith("+") else "+" + digits
        sc = self.by_number.get(key)
        if sc is None or not sc.data.get("attempts"):
            return sc
        n = self.dials.get(key, 0)
        self.dials[key] = n + 1
        attempts = sc.data["attempts"]
        if n >= len(attempts):
            return sc
        return Scenario({**sc.data, "outcome": attempts[n]}, sc.source)


class AudioRenderer:
    """Audio spec -> 8 kHz int16 PCM, cached per spec."""

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def render(self, spec: Any, voice: str = DEFAULT_IVR_VOICE) -> np.ndarray:
        if spec is None:
            return np.zeros(0, dtype=np.int16)
        if isinstance(spec, list):
            parts = [self.render(s, voice) for s in spec]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        key = json.dumps([spec, voice], sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._render_clip(spec, voice)
        return self._cache[key]

    def _render_clip(self, clip: dict[str, Any], voice: str) -> np.ndarray:
        if "file" in clip:
            path = resolve_audio_path(clip["file"])
            if path is None:
                raise audio.AudioError(f"audio file not found: {clip['file']}")
            pcm = audio.read_wav(path)
            if "seconds" in clip:
                n = int(clip["seconds"] * audio.RATE)
                pcm = np.resize(pcm, n) if len(pcm) else audio.silence(clip["seconds"])
            return pcm
        if "say" in clip:
            return audio.say(clip["say"], clip.get("voice", voice))
        if "tone" in clip:
            return audio.tone(clip["tone"], clip.get("ms", 1000))
        if "sit" in clip:
            return audio.sit_tone()
        if "silence" in clip:
            return audio.silence(clip["silence"])
        raise ScenarioError(f"unknown audio clip {clip!r}")
