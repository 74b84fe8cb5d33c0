"""The detector's labelled risk sets (bench/RESULTS.md), built by name and scored.

    python bench/risk_sets.py build KIND OUT_DIR --count N --seed S
    python bench/risk_sets.py score DIR [DIR ...] [--python PY] [--batch 40] [--project DIR]

Sets are made with the shared generator (`../shared/eval/scenarios.py`, not
ours: imported, never copied) from these sources:

  dev           scenarios.write_set(dev_sources(), ...): the mix of `scenarios.py`
  other         write_set with the "other sources" (OTHER_SOURCES below: fillets-ng
                music, the other half of the fillets-ng actors, other asterisk prompts,
                30 % of announcements over quieter music)
  hold-dev      hold calls with dev_sources(): Builder.hold_only, ivr_hold_human,
                hold_human in turn (a third without a person)
  hold-other    the same with the "other sources"
  hold-music    the same with dev_sources() whose music is the drascula-music
                Debian package's orchestral tracks ("other music")
  voicemail-dev, voicemail-other
                Builder.voicemail with the dev / other voices

Each call is a WAV with a truth JSON beside it (the generator's format).  The
generator is not bit-reproducible across machines: "before" and "after" must be
scored on the same folder.

Scoring runs `PY -m worker.replay` from this repository over the WAVs, --batch
files per process, and applies RESULTS.md's rules (`score_calls`): a human_at
before the onset (score.py's 0.05 s tolerance) or on a call without one is a
false transfer; a hit is a human_at within onset + 6 s; anything else on a call
with a person is a miss.  Prints a table, the false transfers and misses, and
one JSON line per folder (`{"set": ..., ...}`).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_DIR = os.environ.get("HS_EVAL_DIR", os.path.join(os.path.dirname(REPO), "shared", "eval"))
DRASCULA = "/usr/share/scummvm/drascula/audio"       # Debian drascula-music
HIT_WINDOW_S = 6.0       # a hit: human_at within onset + this (score.py, RESULTS.md)
EARLY_TOL_S = 0.05       # a human_at this close before the onset is not early (score.py)
HOLD_KINDS = ("hold_only", "ivr_hold_human", "hold_human")
KINDS = ("dev", "other", "hold-dev", "hold-other", "hold-music", "voicemail-dev", "voicemail-other")


# ---------------------------------------------------------------- building

def _scenarios():
    if EVAL_DIR not in sys.path:
        sys.path.insert(0, EVAL_DIR)
    import scenarios  # the shared generator lives outside the repository
    return scenarios


def other_sources():
    """The "other sources" recipe of RESULTS.md: nothing from the dev recordings but the beep."""
    sc = _scenarios()
    en = f"{sc.ASTERISK}/sounds/en"
    pick = lambda names: [f"{en}/{n}.wav" for n in names]   # noqa: E731
    return sc.Sources(
        music=sorted(glob.glob(f"{sc.FILLETS}/music/*.ogg")),
        humans=sc.dialogue(sc.fillets_levels(1), 1.0, 4.0, 80, np.random.default_rng(1)),
        ivr_prompts=pick(["conf-getconfno", "conf-getpin", "agent-newlocation", "privacy-prompt",
                          "call-fwd-unconditional", "conf-usermenu", "please-try-again"]),
        announcements=pick(["conf-waitforleader", "please-try-call-later", "conf-placeintoconf",
                            "privacy-thankyou", "call-waiting", "conf-onlyperson"]),
        not_in_service=pick(["ss-noservice"]),
        beep=f"{en}/beep.wav",
        timing=sc.Timing(duck=0.3))


def other_music_sources():
    """dev_sources() with the hold music replaced by the drascula tracks."""
    sc = _scenarios()
    music = sorted(glob.glob(f"{DRASCULA}/*.ogg"))
    if not music:
        sys.exit(f"no drascula tracks in {DRASCULA} (apt-get install drascula-music)")
    return dataclasses.replace(sc.dev_sources(), music=music)


def build(kind: str, out: str, count: int, seed: int) -> None:
    sc = _scenarios()
    family, _, flavour = kind.partition("-")
    if kind in ("dev", "other"):
        sc.write_set(sc.dev_sources() if kind == "dev" else other_sources(), out, count, seed)
        return
    src = {"dev": sc.dev_sources, "other": other_sources, "music": other_music_sources}[flavour]()
    kinds = HOLD_KINDS if family == "hold" else ("voicemail",)
    os.makedirs(out, exist_ok=True)
    b = sc.Builder(src, np.random.default_rng(seed))
    for i in range(count):
        what = kinds[i % len(kinds)]
        ident = f"{i:03d}_{what}"
        audio, truth = b.build(what, ident)
        sc.save_wav(os.path.join(out, ident + ".wav"), audio)
        with open(os.path.join(out, ident + ".json"), "w") as f:
            json.dump(truth, f, indent=1)


# ---------------------------------------------------------------- scoring

def _pct(xs: list[float], q: float) -> float | None:
    """score.py's percentile (nearest rank), so the numbers compare."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def score_calls(truths: Mapping[str, dict], results: Mapping[str, dict]) -> dict:
    """Pure: truth JSON and replay JSON per call name -> the set's counts.  A call with no result
    counts as a miss (with a person) or an outcome not met (without)."""
    false, missed, lat, outcomes_ok, n_h = [], [], [], 0, 0
    for name in sorted(truths):
        t, r = truths[name], results.get(name, {})
        h, onset = r.get("human_at"), t.get("human_onset")
        if onset is not None:
            n_h += 1
            if h is not None and onset - EARLY_TOL_S <= h <= onset + HIT_WINDOW_S:
                lat.append(h - onset)
            elif h is not None and h < onset - EARLY_TOL_S:
                false.append(name)
            else:
                missed.append(name)
        elif h is not None:
            false.append(name)
        elif r.get("outcome") == t.get("expect"):
            outcomes_ok += 1
    p50, p90 = _pct(lat, 0.5), _pct(lat, 0.9)
    return {"calls": len(truths), "false_transfers": len(false), "humans": n_h, "hits": len(lat),
            "outcomes_ok": outcomes_ok, "others": len(truths) - n_h,
            "p50_s": None if p50 is None else round(p50, 2), "p90_s": None if p90 is None else round(p90, 2),
            "false": false, "missed": missed}


def replay(files: list[str], python: str, batch: int, project: str = REPO) -> dict[str, dict]:
    """`python -m worker.replay` (run in `project`) over the files, `batch` per process; results by
    file name."""
    out: dict[str, dict] = {}
    for k in range(0, len(files), batch):
        proc = subprocess.run([python, "-m", "worker.replay", *files[k:k + batch]], cwd=project,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"replay failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                out[os.path.basename(rec["file"])[:-4]] = rec
    return out


def score_dir(folder: str, python: str, batch: int, project: str = REPO) -> dict:
    wavs = sorted(glob.glob(os.path.join(os.path.abspath(folder), "*.wav")))
    truths = {}
    for w in wavs:
        with open(w[:-4] + ".json") as f:
            truths[os.path.basename(w)[:-4]] = json.load(f)
    return {"set": folder, **score_calls(truths, replay(wavs, python, batch, project))}


def table(rows: Iterable[dict]) -> str:
    lines = ["| set | calls | false transfers | hits / humans | outcomes / others | p50 / p90 s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['calls']} | {r['false_transfers']} | {r['hits']}/{r['humans']} | "
                     f"{r['outcomes_ok']}/{r['others']} | {r['p50_s']} / {r['p90_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="generate a labelled set")
    b.add_argument("kind", choices=KINDS)
    b.add_argument("out")
    b.add_argument("--count", type=int, required=True)
    b.add_argument("--seed", type=int, required=True)
    s = sub.add_parser("score", help="score folders of labelled calls")
    s.add_argument("dirs", nargs="+")
    s.add_argument("--python", default=sys.executable)
    s.add_argument("--batch", type=int, default=40, help="files per replay process")
    s.add_argument("--project", default=REPO, help="the checkout whose worker.replay runs (a baseline)")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.kind, a.out, a.count, a.seed)
        return 0
    rows = [score_dir(d, a.python, a.batch, a.project) for d in a.dirs]
    print(table(rows))
    for r in rows:
        for label in ("false", "missed"):
            for name in r[label]:
                print(f"{label}: {r['set']} {name}")
    for r in rows:
        print(json.dumps(r, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
