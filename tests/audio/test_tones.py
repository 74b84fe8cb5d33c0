"""Tones at the edges of their tolerances, at 8 and 16 kHz, through the whole detector."""

from __future__ import annotations

import numpy as np
import pytest
from audio_helpers import cadence, kinds, run, silence, tone

from worker.audio.tones import DTMF_COLS, DTMF_KEYS, DTMF_ROWS

RATES = [8000, 16000]


def dtmf(key: str, rate: int, seconds: float = 0.1, dev: float = 0.0, twist_db: float = 0.0,
         lead: float = 0.3) -> np.ndarray:
    r = next(i for i, row in enumerate(DTMF_KEYS) if key in row)
    c = DTMF_KEYS[r].index(key)
    low, high = DTMF_ROWS[r] * (1 + dev), DTMF_COLS[c] * (1 + dev)
    x = tone([low, high], seconds, rate, levels_db=[0.0, twist_db])
    return np.concatenate([silence(lead, rate), x, silence(0.3, rate)])


def digits(x: np.ndarray, rate: int) -> str:
    _, events = run(x, rate)
    return "".join(e.detail for e in kinds(events, "dtmf"))


@pytest.mark.parametrize("rate", RATES)
def test_every_dtmf_key_is_recognised(rate):
    x = np.concatenate([dtmf(k, rate) for k in "123A456B789C*0#D"])
    assert digits(x, rate) == "123A456B789C*0#D"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("dev", [-0.015, 0.015])
def test_dtmf_within_1_5_percent_is_accepted(rate, dev):
    assert digits(np.concatenate([dtmf(k, rate, dev=dev) for k in "159#"]), rate) == "159#"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("dev", [-0.035, 0.035])
def test_dtmf_off_by_3_5_percent_is_rejected(rate, dev):
    assert digits(np.concatenate([dtmf(k, rate, dev=dev) for k in "159#"]), rate) == ""


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("twist", "expect"), [(3.5, "5"), (-7.5, "5"), (6.0, ""), (-10.0, "")])
def test_dtmf_twist_limits(rate, twist, expect):
    # twist = high-group level minus low-group level: +4 dB forward, -8 dB reverse allowed
    assert digits(dtmf("5", rate, twist_db=twist), rate) == expect


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("offset_ms", [0, 5, 10, 15])
def test_dtmf_of_40_ms_is_accepted_at_any_alignment(rate, offset_ms):
    assert digits(dtmf("8", rate, seconds=0.040, lead=0.3 + offset_ms / 1000), rate) == "8"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("ms", "offset_ms"), [(20, 0), (10, 0), (10, 5), (10, 15)])
def test_dtmf_too_short_is_rejected(rate, ms, offset_ms):
    assert digits(dtmf("8", rate, seconds=ms / 1000, lead=0.3 + offset_ms / 1000), rate) == ""


def sit(first: float, second: float, rate: int, short: float = 0.274, third: float = 1776.7) -> np.ndarray:
    seq = [tone([first], short, rate), tone([second], short, rate), tone([third], 0.380, rate)]
    return np.concatenate([silence(0.5, rate), *seq, silence(1.0, rate)])


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("first", "second", "short"), [
    (913.8, 1370.6, 0.274), (985.2, 1428.5, 0.274), (913.8, 1428.5, 0.380), (985.2, 1370.6, 0.380)])
def test_sit_variants_end_the_call_as_sit(rate, first, second, short):
    det, events = run(sit(first, second, rate, short), rate)
    assert det.outcome == "sit"
    assert [e.kind for e in events if e.kind == "sit"] == ["sit"]
    assert "sit" in [e.state for e in events if e.kind == "state"]


@pytest.mark.parametrize("rate", RATES)
def test_tone_sequence_that_is_not_sit_is_not_sit(rate):
    det, _ = run(sit(913.8, 1370.6, rate, third=1600.0), rate)
    assert det.outcome is None
    det, _ = run(sit(1100.0, 1370.6, rate), rate)
    assert det.outcome is None


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("freqs", "pattern"), [
    ([440, 480], [2.0, 4.0]),                  # North America
    ([400, 450], [0.4, 0.2, 0.4, 2.0]),        # UK
    ([425], [1.0, 4.0]),                       # Europe
])
def test_ringback_is_ringback_and_never_an_outcome(rate, freqs, pattern):
    det, events = run(cadence(freqs, pattern, 13.0, rate), rate)
    states = {e.state for e in events if e.kind == "state"}
    assert "ringback" in states
    assert not states & {"busy", "reorder", "speech", "music"}
    assert det.outcome is None and det.finish() == "no_human"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("freqs", "pattern", "detail"), [
    ([480, 620], [0.5, 0.5], "busy"),          # North America busy
    ([480, 620], [0.25, 0.25], "reorder"),     # North America reorder (fast busy)
    ([400], [0.375, 0.375], "busy"),           # UK busy
    ([425], [0.5, 0.5], "busy"),               # Europe busy
])
def test_busy_and_reorder_by_cadence(rate, freqs, pattern, detail):
    det, events = run(cadence(freqs, pattern, 6.0, rate), rate)
    assert det.outcome == "busy"
    busy = kinds(events, "busy")
    assert len(busy) == 1 and busy[0].detail == detail
    assert busy[0].t < 5.0


@pytest.mark.parametrize("rate", RATES)
def test_a_single_long_burst_is_not_busy(rate):
    det, _ = run(np.concatenate([tone([480, 620], 3.0, rate), silence(2.0, rate)]), rate)
    assert det.outcome is None
