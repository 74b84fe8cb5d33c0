"""compose.yaml against the Compose specification schema, plus what the stack needs; .env.example; Procfile.

tests/deploy/compose_spec.json is the Compose specification JSON schema
(draft 2019-09) as shipped in the PyPI package docker-compose 1.29.2
(compose/config/compose_spec.json, Apache-2.0), copied verbatim: it cannot be
downloaded at test time and no current PyPI package ships the schema alone.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "compose_spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(SCHEMA)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification(compose):
    assert schema_errors(compose) == []


def test_the_schema_check_can_fail(compose):
    bad = copy.deepcopy(compose)
    bad["services"]["web"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["worker"]["ports"] = [{"target": "eighty"}]
    assert len(schema_errors(bad)) >= 2


def test_core_services_have_healthchecks(compose):
    services = compose["services"]
    for name in ("redis", "postgres", "freeswitch", "web", "worker"):
        assert "test" in services[name]["healthcheck"], name
        assert "profiles" not in services[name], name


def test_optional_stt_and_llm_profiles(compose):
    assert compose["services"]["speaches"]["profiles"] == ["stt"]
    assert compose["services"]["ollama"]["profiles"] == ["llm"]


def test_web_and_worker_commands(compose):
    web = compose["services"]["web"]["command"]
    assert web[:3] == ["/venv/bin/gunicorn", "-k", "gevent"] and web[-1] == "web:create_app()"
    assert " ".join(compose["services"]["worker"]["command"]).endswith("exec /venv/bin/python -m worker")


def test_prompts_rendered_by_the_worker_are_readable_by_the_switch(compose):
    """worker/prompts.py plays files with uuid_broadcast: FreeSWITCH must see the same path."""
    worker = compose["services"]["worker"]
    prompts_dir = worker["environment"]["PROMPTS_DIR"]
    assert f"prompts:{prompts_dir}" in worker["volumes"]
    assert f"prompts:{prompts_dir}:ro" in compose["services"]["freeswitch"]["volumes"]
    assert "espeak-ng" in " ".join(worker["command"]) and "sox" in " ".join(worker["command"])


def test_recordings_volume_is_shared_by_switch_and_worker(compose):
    for name in ("freeswitch", "worker"):
        assert "recordings:/recordings" in compose["services"][name]["volumes"], name
    assert "recordings" in compose["volumes"]


def test_freeswitch_runs_our_configuration(compose):
    fs = compose["services"]["freeswitch"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in fs["volumes"]}
    conf = fs["command"][fs["command"].index("-conf") + 1]
    assert mounts[conf] == "./freeswitch"
    assert mounts[fs["environment"]["HS_LUA_DIR"]] == "./lua"
    assert fs["entrypoint"][-1] == f"{conf}/hs-entrypoint.sh"
    assert (ROOT / "freeswitch" / "hs-entrypoint.sh").is_file()


def test_the_event_socket_acl_admits_the_worker_network_only(compose):
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    fs = compose["services"]["freeswitch"]
    assert ipaddress.ip_network(fs["environment"]["ESL_ALLOW_CIDR"]) == subnet
    assert not any(":8021" in str(p) for p in fs["ports"]), "the event socket must not be published"
    worker = compose["services"]["worker"]["environment"]
    assert worker["ESL_HOSTS"] == "freeswitch:8021"
    assert worker["AUDIO_FORK_PUBLIC_HOST"] == fs["environment"]["AUDIO_FORK_PUBLIC_HOST"] == "worker"
    assert worker["AUDIO_FORK_BIND"].endswith(":" + fs["environment"]["AUDIO_FORK_PORT"])


def test_env_example_lists_every_variable_compose_and_freeswitch_read(compose):
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "compose.yaml").read_text()))
    assert used - set(example) == set()
    for secret in (
        "ESL_PASSWORD",
        "DESK_SIP_PASSWORD",
        "API_KEY",
        "SERVICE_KEY",
        "POSTGRES_PASSWORD",
        "SIP_TRUNK_PASSWORD",
    ):
        assert example[secret] == "", f"{secret} must not ship a default"
    fs_env = set(re.findall(r'cmd="env-set" data="\w+=\$(\w+)"', (ROOT / "freeswitch/vars.xml").read_text()))
    internal = {"HS_LUA_DIR", "HS_API_URL", "ESL_ALLOW_CIDR", "ESL_LISTEN_IP", "ESL_PORT", "AUDIO_FORK_PORT"}
    assert fs_env - internal - set(example) == set()


def test_procfile_runs_web_worker_and_the_simulator():
    procs = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(procs) == {"web", "worker", "sim"}
    assert "gunicorn -k gevent" in procs["web"] and "'web:create_app()'" in procs["web"]
    assert procs["worker"].endswith("python -m worker")
    assert "-m sim --esl-host 127.0.0.1 --esl-port 8021" in procs["sim"]
