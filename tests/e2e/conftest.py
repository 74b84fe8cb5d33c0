"""The e2e stack: the stand-in switch, a worker and the web app as processes, like the demo.

Real Redis from the `redis_url` fixture, a temp SQLite file, free ports, readiness
from each process's "listening" line.  Companies are the scenario files in
companies/; the switch runs 20x faster than real time.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from e2e_env import BANK, BANK_FLOW, DEVICES, E2E_DB, HERE, IMPATIENT, PHONES, channels, with_db

from sim.demo import Stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pytest.importorskip("worker.audio_fork", reason="the audio-fork endpoint has not landed yet")
    if not (HERE.parent.parent / "sim" / "__main__.py").exists():
        pytest.skip("the stand-in switch (python -m sim) has not landed yet")
    redis_url = with_db(redis_url, E2E_DB)  # not db 9, which other suites flush; our queue name is unique
    workdir = tmp_path_factory.mktemp("e2e")
    st = Stack(workdir, redis_url=redis_url, database_url=f"sqlite:///{workdir / 'e2e.db'}", speed=20,
               phones=PHONES, companies=HERE / "companies", heartbeat_s=1,
               queue_name=f"hs-e2e-{secrets.token_hex(4)}",
               env={"RING_TIMEOUT": "8", "LAUNCH_RATE_PER_MINUTE": "1000", "DESK_RING_TIMEOUT": "4",
                    "MAX_HOLD_SECONDS": "600", "RECORDINGS_DIR": str(workdir / "recordings"),
                    "LOG_LEVEL": "INFO"})
    try:
        st.start_all()
        st.seed(BANK, BANK_FLOW, devices=DEVICES, flow_name="E2E Bank")
        # A known company without menus: a stored flow that just holds (the hand-off tests must not
        # wait for speech recognition of its hold music, which at x20 takes longer than its agent).
        st.seed(IMPATIENT, [{"type": "HOLD"}, {"type": "TRANSFER"}], flow_name="E2E Impatient")
        yield st
    finally:
        st.stop()


@pytest.fixture(autouse=True)
def _clean_switch(stack: Stack) -> Iterator[None]:
    """A failed test must not leave legs that fail the next one: hang up whatever is left."""
    yield
    if channels(stack) != {"row_count": 0}:
        stack.esl_api("hupall MANAGER_REQUEST")
