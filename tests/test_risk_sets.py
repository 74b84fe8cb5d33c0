"""bench/risk_sets.py's scoring rules (RESULTS.md): false transfer, hit, miss, outcome."""

from __future__ import annotations

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "risk_sets.py")
_spec = importlib.util.spec_from_file_location("risk_sets", _PATH)
assert _spec is not None and _spec.loader is not None
risk_sets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(risk_sets)


def person(onset: float) -> dict:
    return {"expect": "human", "human_onset": onset}


def other(expect: str) -> dict:
    return {"expect": expect, "human_onset": None}


@pytest.mark.parametrize("human_at, verdict", [
    (None, "missed"),
    (30.0, "false"),          # before the person spoke: the user's phone rang for the music
    (39.94, "false"),         # (more than score.py's 0.05 s before the onset)
    (39.96, "hit"),
    (43.5, "hit"),
    (46.0, "hit"),            # onset + 6 s exactly
    (46.02, "missed"),        # later than 6 s: late is a miss, not a false transfer
])
def test_a_call_with_a_person(human_at, verdict):
    got = risk_sets.score_calls({"a": person(40.0)}, {"a": {"human_at": human_at, "outcome": "human"}})
    assert got["humans"] == 1 and got["calls"] == 1
    assert got["false"] == (["a"] if verdict == "false" else [])
    assert got["missed"] == (["a"] if verdict == "missed" else [])
    assert got["hits"] == (1 if verdict == "hit" else 0)
    assert got["false_transfers"] == len(got["false"])


def test_a_call_without_a_person():
    truths = {"hold": other("no_human"), "vm": other("voicemail"), "vm2": other("voicemail"),
              "hold2": other("no_human")}
    results = {"hold": {"human_at": 12.3, "outcome": "human"},      # any human_at: a false transfer
               "vm": {"human_at": None, "outcome": "voicemail"},
               "vm2": {"human_at": None, "outcome": "no_human"}}     # wrong outcome, not a false transfer
    got = risk_sets.score_calls(truths, results)                     # hold2: no result at all
    assert got["false"] == ["hold"] and got["false_transfers"] == 1
    assert got["outcomes_ok"] == 1 and got["others"] == 4
    assert got["humans"] == 0 and got["hits"] == 0 and got["p50_s"] is None


def test_latency_percentiles_are_score_pys():
    truths = {f"c{i}": person(10.0) for i in range(10)}
    results = {f"c{i}": {"human_at": 10.0 + 0.5 * i} for i in range(10)}
    results["c9"] = {"human_at": None}                              # a miss has no latency
    got = risk_sets.score_calls(truths, results)
    assert got["hits"] == 9 and got["missed"] == ["c9"]
    assert got["p50_s"] == 2.0 and got["p90_s"] == 3.5
