"""python -m worker.replay: the JSON contract of design.md, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from audio_helpers import add_noise, agent_after_hold, cadence, silence, write_wav

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = {"file", "human_at", "outcome", "timeline", "audio_seconds", "cpu_seconds", "likely_human_at"}


def replay(*files: str) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, "-m", "worker.replay", *files], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_one_json_line_per_file_with_the_contract_fields(tmp_path):
    human8 = str(tmp_path / "human8k.wav")
    human16 = str(tmp_path / "human16k.wav")
    busy = str(tmp_path / "busy.wav")
    write_wav(human8, agent_after_hold(8000), 8000)
    write_wav(human16, agent_after_hold(16000), 16000)
    write_wav(busy, add_noise(cadence([480, 620], [0.5, 0.5], 6.0)), 8000)
    code, recs, err = replay(human8, human16, busy)
    assert code == 0, err
    assert [r["file"] for r in recs] == [human8, human16, busy]
    for r in recs:
        assert set(r) == KEYS
        assert r["outcome"] in {"human", "voicemail", "sit", "busy", "no_human"}
        assert all(isinstance(t, float) and isinstance(s, str) for t, s in r["timeline"])
        assert [t for t, _ in r["timeline"]] == sorted(t for t, _ in r["timeline"])
        assert r["cpu_seconds"] > 0
    h8, h16, b = recs
    assert h8["outcome"] == h16["outcome"] == "human"
    assert 25.6 < h8["human_at"] < 25.6 + 6.0
    assert h8["likely_human_at"] <= h8["human_at"]
    assert [h8["human_at"], "human"] in h8["timeline"]
    assert h8["audio_seconds"] == h16["audio_seconds"]
    assert b["outcome"] == "busy" and b["human_at"] is None and b["audio_seconds"] == 6.0


def test_cut_after_human_at_replays_to_the_same_human_at(tmp_path):
    full = str(tmp_path / "full.wav")
    x = agent_after_hold(8000)
    write_wav(full, x)
    _, [rec], _ = replay(full)
    cut = str(tmp_path / "cut.wav")
    write_wav(cut, x[: int((rec["human_at"] + 0.1) * 8000)])
    _, [again], _ = replay(cut)
    assert again["human_at"] == rec["human_at"]


def test_unusable_files_get_a_clear_error_and_the_rest_still_run(tmp_path):
    good = str(tmp_path / "good.wav")
    write_wav(good, silence(1.0))
    cd_rate = str(tmp_path / "cd.wav")
    write_wav(cd_rate, silence(1.0, 44100), 44100)
    stereo = str(tmp_path / "stereo.wav")
    write_wav(stereo, silence(1.0), 8000, channels=2)
    junk = str(tmp_path / "junk.wav")
    with open(junk, "wb") as f:
        f.write(b"not a wav file at all")
    code, recs, err = replay(cd_rate, stereo, junk, str(tmp_path / "missing.wav"), good)
    assert code == 2
    assert "44100" in recs[0]["error"] and "8000 or 16000" in recs[0]["error"]
    assert "mono" in recs[1]["error"]
    assert "not a PCM WAV" in recs[2]["error"]
    assert "no such file" in recs[3]["error"]
    assert recs[4]["outcome"] == "no_human" and "error" not in recs[4]
    assert "44100" in err
