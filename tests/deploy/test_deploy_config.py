"""freeswitch/: well-formed, frslint-clean, no stock secrets, and in agreement with worker/config.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from deploy_dialplan import BUILTINS, CONF_DIR, PREPROCESS, load_globals

from worker import config

ROOT = CONF_DIR.parent
FRSLINT = Path(sys.executable).parent / "frslint"
XML_FILES = sorted(CONF_DIR.rglob("*.xml"))
SECRETS = {
    "esl_password": "ESL_PASSWORD",
    "desk_sip_password": "DESK_SIP_PASSWORD",
    "sip_trunk_password": "SIP_TRUNK_PASSWORD",
    "hs_service_key": "SERVICE_KEY",
}


def parse(path: Path) -> ET.Element:
    """Included files are fragments (several top-level elements): wrap them as frslint and FreeSWITCH do."""
    text = path.read_text()
    if text.startswith("<?xml"):
        return ET.fromstring(text)  # noqa: S314 (our own repository files)
    return ET.fromstring(f"<root>{text}</root>")  # noqa: S314


def test_there_is_a_configuration():
    assert (CONF_DIR / "freeswitch.xml").is_file() and len(XML_FILES) > 10


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_xml_file_is_well_formed(path):
    parse(path)


def frslint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FRSLINT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_frslint_lint_passes():
    proc = frslint("lint", str(CONF_DIR / "freeswitch.xml"), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"total": 0' in proc.stdout
    files_checked = json.loads(proc.stdout)["summary"]["files_checked"]
    assert files_checked == len(XML_FILES), "every XML file must be reachable from freeswitch.xml"


def test_frslint_analyze_finds_nothing():
    proc = frslint("analyze", str(CONF_DIR / "freeswitch.xml"), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["issues"] == []


def test_frslint_would_catch_a_broken_dialplan(tmp_path):
    broken = tmp_path / "conf"
    subprocess.run(["cp", "-r", str(CONF_DIR), str(broken)], check=True)
    desk = broken / "dialplan" / "desk.xml"
    desk.write_text(desk.read_text().replace('expression="^9?(911|933)$"', 'expression="^9?(911|933$"'))
    assert frslint("analyze", str(broken / "freeswitch.xml")).returncode == 1


def test_every_global_variable_used_is_defined_in_vars_xml():
    defined = {data.split("=", 1)[0] for cmd, data in PREPROCESS.findall((CONF_DIR / "vars.xml").read_text())}
    for path in XML_FILES:
        text = re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.S)
        for name in re.findall(r"\$\$\{([^}]+)\}", text):
            assert name in defined | set(BUILTINS), f"{path.name}: $${{{name}}} is never set"


def test_secrets_start_random_and_come_from_the_environment():
    steps = PREPROCESS.findall((CONF_DIR / "vars.xml").read_text())
    for var, env in SECRETS.items():
        mine = [(cmd, data) for cmd, data in steps if data.split("=", 1)[0] == var]
        assert [cmd for cmd, _ in mine] == ["exec-set", "env-set"], var
        assert mine[1][1] == f"{var}=${env}"
    values = load_globals({})
    assert all(values[v].startswith("<random:") for v in SECRETS)
    assert load_globals({"ESL_PASSWORD": "from-env-123456"})["esl_password"] == "from-env-123456"


def test_no_stock_password_survives():
    for path in XML_FILES:
        text = re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.S)
        assert "default_password" not in text, path.name
        assert not re.search(r"ClueCon|JambonzR0ck|value=\"1234\"", text), path.name
        for el in parse(path).iter("param"):
            if el.get("name") == "password":
                assert re.fullmatch(r"\$\$\{\w+\}", el.get("value", "")), f"{path.name}: literal password"


def test_event_socket_is_password_protected_and_acl_limited():
    settings = {
        p.get("name"): p.get("value")
        for p in parse(CONF_DIR / "autoload_configs/event_socket.conf.xml").iter("param")
    }
    assert settings["password"] == "$${esl_password}"
    acl = parse(CONF_DIR / "autoload_configs/acl.conf.xml")
    lists = {lst.get("name"): lst for lst in acl.iter("list")}
    esl = lists[settings["apply-inbound-acl"]]
    assert esl.get("default") == "deny"
    assert [n.get("cidr") for n in esl.iter("node")] == ["127.0.0.1/32", "$${esl_allow_cidr}"]


# --- agreement with worker/config.py ------------------------------------------------------------


def profile(name: str) -> dict[str, str]:
    el = parse(CONF_DIR / "sip_profiles" / f"{name}.xml").find("profile")
    settings = el.find("settings") if el is not None else None
    assert settings is not None
    return {p.get("name", ""): p.get("value", "") for p in settings.iter("param")}


def test_trunk_gateway_name_and_context_match_the_worker():
    gateways = list(parse(CONF_DIR / "sip_profiles/external/trunk.xml").iter("gateway"))
    assert [g.get("name") for g in gateways] == [config.TRUNK_GATEWAY]
    params = {p.get("name"): p.get("value") for p in gateways[0].iter("param")}
    assert params["context"] == config.PUBLIC_CONTEXT
    assert params["extension"] == "$${sip_trunk_did}"


def test_profile_contexts_match_the_worker():
    assert profile("internal")["context"] == config.DESK_CONTEXT
    assert profile("external")["context"] == config.PUBLIC_CONTEXT
    assert profile("internal")["auth-calls"] == "true"
    assert profile("internal")["sip-port"] == "$${gateway_sip_port}"
    assert load_globals({})["gateway_sip_port"] == "5080"


def test_desk_phones_dial_into_the_desk_context():
    for path in [CONF_DIR / "directory/default.xml", *(CONF_DIR / "directory/default").glob("*.xml")]:
        ctx = [v.get("value") for v in parse(path).iter("variable") if v.get("name") == "user_context"]
        assert ctx == [config.DESK_CONTEXT], path.name


def test_dialplan_contexts_are_the_workers():
    names = {c.get("name") for p in (CONF_DIR / "dialplan").glob("*.xml") for c in parse(p).iter("context")}
    assert names == {config.DESK_CONTEXT, config.PUBLIC_CONTEXT}


def test_channel_variables_match_the_worker():
    desk = (CONF_DIR / "dialplan/desk.xml").read_text()
    assert f'field="${{{config.VAR_ROLE}}}"' in desk
    assert f"${{{config.VAR_CALL_ID}}}" in desk
    for script in ("hs_util.lua", "hs_whisper.lua", "hs_reassure.lua"):
        assert config.VAR_CALL_ID in (ROOT / "lua" / script).read_text()


def test_audio_fork_url_matches_the_worker():
    values = load_globals({"AUDIO_FORK_PUBLIC_HOST": "worker", "AUDIO_FORK_PORT": "8091"})
    assert values["hs_audio_fork_url"] == f"ws://worker:8091{config.AUDIO_FORK_PATH}"
    default_port = config.Settings().audio_fork_bind.rsplit(":", 1)[1]
    assert load_globals({})["hs_audio_fork_url"] == (
        f"ws://{config.Settings().audio_fork_public_host}:{default_port}{config.AUDIO_FORK_PATH}"
    )


def test_audio_fork_url_is_what_the_worker_endpoint_serves():
    from worker.audio_fork import ForkServer

    server = ForkServer(bind="127.0.0.1:0", public_host="worker").start()
    try:
        fs = load_globals({"AUDIO_FORK_PUBLIC_HOST": "worker", "AUDIO_FORK_PORT": str(server.port)})
        call_id = "0123456789abcdef0123456789abcdef"
        assert server.url_for(call_id) == f"{fs['hs_audio_fork_url']}/{call_id}"
    finally:
        server.stop()


def test_star_code_matches_the_worker():
    desk = (CONF_DIR / "dialplan/desk.xml").read_text()
    expr = re.search(
        r'name="hs_star_code">\s*<condition field="destination_number" expression="([^"]+)"', desk
    )
    assert expr is not None
    assert re.search(expr.group(1), config.STAR_CODE + "18005551234")
    assert not re.search(expr.group(1), "18005551234")


@pytest.mark.parametrize(
    "env", ["SIP_DOMAIN", "SIP_TRUNK_DID", "ESL_PASSWORD", "AUDIO_FORK_PUBLIC_HOST", "SERVICE_KEY"]
)
def test_shared_environment_names(env):
    """FreeSWITCH and the worker read the same variable for the same thing."""
    assert f'_env("{env}"' in (ROOT / "worker/config.py").read_text()
    assert f'=${env}"' in (CONF_DIR / "vars.xml").read_text()


# --- hs-entrypoint.sh ---------------------------------------------------------------------------

GOOD = {
    "ESL_PASSWORD": "3f9c2a7e41d8b6a0",
    "DESK_SIP_PASSWORD": "9b1e6c0d2a4f7e3b",
    "SERVICE_KEY": "k-7d2e9a41c0b3f6e8",
    "SIP_TRUNK_HOST": "sip.example.com",
    "SIP_TRUNK_USERNAME": "acct1",
    "SIP_TRUNK_PASSWORD": "trunk-pass-1",
    "SIP_TRUNK_DID": "15105550100",
}


def entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(CONF_DIR / "hs-entrypoint.sh"), "echo", "freeswitch-started"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_starts_with_a_good_environment():
    proc = entrypoint(GOOD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "freeswitch-started"


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"ESL_PASSWORD": "ClueCon"}, "ESL_PASSWORD is a well-known default"),
        ({"DESK_SIP_PASSWORD": "1234"}, "DESK_SIP_PASSWORD is a well-known default"),
        ({"ESL_PASSWORD": "JambonzR0ck$"}, "ESL_PASSWORD is a well-known default"),
        ({"SERVICE_KEY": "short"}, "SERVICE_KEY must be at least 12"),
        ({"ESL_PASSWORD": ""}, "ESL_PASSWORD is required"),
        ({"SIP_TRUNK_DID": "+15105550100"}, "SIP_TRUNK_DID must be digits"),
        ({"SIP_TRUNK_PASSWORD": 'pa"ss<word>1'}, "SIP_TRUNK_PASSWORD holds a character"),
        ({"SIP_DOMAIN": "pbx example"}, "SIP_DOMAIN holds a character"),
        ({"ESL_PORT": "80x"}, "ESL_PORT must be a port number"),
    ],
)
def test_entrypoint_refuses_bad_environments(change, needle):
    proc = entrypoint({**GOOD, **change})
    assert proc.returncode == 64
    assert needle in proc.stderr
    assert "freeswitch-started" not in proc.stdout
    for value in change.values():
        if value and len(value) > 4:
            assert value not in proc.stderr, "the entrypoint must never print values"


def test_entrypoint_allows_ip_authenticated_trunks_without_credentials():
    env = {k: v for k, v in GOOD.items() if k not in ("SIP_TRUNK_USERNAME", "SIP_TRUNK_PASSWORD")}
    assert entrypoint(env).returncode == 64
    assert entrypoint({**env, "SIP_TRUNK_REGISTER": "false"}).returncode == 0
