"""Fixtures for the stand-in switch tests: an in-process SimSwitch and a raw ESL client logged in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sim_esl_client import COMPANIES, PASSWORD, RawEsl

from sim.esl_server import SimSwitch


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SimSwitch]:
    sw = SimSwitch(
        password=PASSWORD,
        companies_dir=COMPANIES,
        phones="1000:answer:0.5,1001:noanswer,1002:unregistered,1003:answer:0.2:dtmf=1",
        speed=20,
    )
    sw.start()
    yield sw
    sw.stop()


@pytest.fixture
def esl(switch: SimSwitch) -> Iterator[RawEsl]:
    client = RawEsl(switch.port)
    client.login()
    yield client
    client.close()
