"""The dialplan in freeswitch/dialplan/, evaluated (deploy_dialplan.py) for the routes of issue 5."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from deploy_dialplan import CONF_DIR, Dialplan

from worker import config

ENV = {
    "SIP_TRUNK_DID": "15105550100",
    "SIP_DOMAIN": "pbx.example.com",
    "HS_LUA_DIR": "/srv/hs/lua",
    "AUDIO_FORK_PUBLIC_HOST": "worker",
    "AUDIO_FORK_PORT": "8090",
}
TRUNK = f"sofia/gateway/{config.TRUNK_GATEWAY}/"
DESK, PUBLIC = config.DESK_CONTEXT, config.PUBLIC_CONTEXT


@pytest.fixture(scope="module")
def dp() -> Dialplan:
    return Dialplan(ENV)


def bridges(result) -> list[str]:
    return [s.data for s in result.steps if s.app == "bridge"]


@pytest.mark.parametrize(
    "dialled,sent",
    [("8005551234", "18005551234"), ("18005551234", "18005551234"), ("+18005551234", "18005551234"),
     ("2125550123", "12125550123")],
)
def test_desk_phone_dials_out_through_the_trunk(dp, dialled, sent):
    result = dp.route(DESK, dialled)
    assert bridges(result) == [TRUNK + sent]
    # the company sees the DID, not the extension
    assert ("set", "effective_caller_id_number=${outbound_caller_id_number}") in [(s.app, s.data)
                                                                               for s in result.steps]


@pytest.mark.parametrize("dialled", ["911", "9911"])
def test_911_goes_straight_to_the_trunk_unchanged(dp, dialled):
    result = dp.route(DESK, dialled)
    assert result.extension == "emergency"
    assert bridges(result) == [TRUNK + "911"]
    assert [s.app for s in result.steps] == ["set", "set", "bridge"]   # nothing that could delay or refuse it
    assert result.first("set").data == f"effective_caller_id_number={ENV['SIP_TRUNK_DID']}"


def test_emergency_is_the_first_extension_of_the_desk_context(dp):
    assert dp.contexts[DESK].extensions[0].name == "emergency"


@pytest.mark.parametrize("role", ["", "company", "desk"])
def test_911_is_not_affected_by_worker_variables(dp, role):
    assert bridges(dp.route(DESK, "911", hs_role=role, hs_call_id="c1")) == [TRUNK + "911"]


def test_star_code_runs_the_lua_request_script(dp):
    result = dp.route(DESK, config.STAR_CODE + "8005551234")
    assert result.extension == "hs_star_code"
    lua = result.first("lua")
    assert lua is not None
    script, arg = lua.data.split(" ")
    assert script == f"{ENV['HS_LUA_DIR']}/hs_star_code.lua"
    assert arg == "8005551234"
    assert (CONF_DIR.parent / "lua" / "hs_star_code.lua").is_file()
    assert [s.app for s in result.steps] == ["answer", "lua", "hangup"]


def test_star_code_needs_a_number(dp):
    assert dp.route(DESK, config.STAR_CODE).first("lua") is None
    assert dp.route(DESK, config.STAR_CODE + "12").first("lua") is None


@pytest.mark.parametrize("dialled", ["15105550100", "+15105550100"])
def test_did_rings_the_desk_phones(dp, dialled):
    result = dp.route(PUBLIC, dialled)
    assert result.extension == "did_to_desks"
    assert bridges(result) == [f"${{group_call(desks@{ENV['SIP_DOMAIN']})}}"]


def test_the_desks_group_holds_every_directory_user():
    users = {p.stem for p in (CONF_DIR / "directory" / "default").glob("*.xml")}
    assert users >= {"1000", "1001"}
    text = (CONF_DIR / "directory" / "default.xml").read_text()
    include = r'<group name="desks">\s*<users>\s*<X-PRE-PROCESS cmd="include" data="default/\*.xml"/>'
    assert re.search(include, text)
    for path in (CONF_DIR / "directory" / "default").glob("*.xml"):
        user = ET.fromstring(path.read_text()).find("user")  # noqa: S314 (our own repository files)
        assert user is not None and user.get("id") == path.stem


@pytest.mark.parametrize("dialled", ["15105550101", "8005551234", "911", "*778005551234", "hs_park", "1000"])
def test_the_public_context_reaches_nothing_but_the_desk_phones(dp, dialled):
    result = dp.route(PUBLIC, dialled, hs_role="company")
    assert result.extension == "unallocated"
    assert bridges(result) == []


@pytest.mark.parametrize("dialled", ["19005551234", "9765551234", "+19005551234"])
def test_premium_numbers_are_blocked(dp, dialled):
    result = dp.route(DESK, dialled)
    assert bridges(result) == []
    assert result.first("hangup").data == "CALL_REJECTED"


def test_international_is_opt_in(dp):
    assert bridges(dp.route(DESK, "011442079460000")) == []
    allowed = Dialplan({**ENV, "DESK_ALLOW_INTERNATIONAL": "true"})
    assert bridges(allowed.route(DESK, "011442079460000")) == [TRUNK + "442079460000"]
    assert bridges(allowed.route(DESK, "+442079460000")) == [TRUNK + "442079460000"]


def test_desk_to_desk(dp):
    assert bridges(dp.route(DESK, "1001")) == [f"user/1001@{ENV['SIP_DOMAIN']}"]


def test_worker_legs_park_for_the_worker(dp):
    result = dp.route(DESK, "hs_park", **{config.VAR_ROLE: "company", config.VAR_CALL_ID: "c1"})
    assert [s.app for s in result.steps][-1] == "park"
    fork = result.first("set").data
    assert fork == (f"hs_audio_fork_url=ws://{ENV['AUDIO_FORK_PUBLIC_HOST']}:{ENV['AUDIO_FORK_PORT']}"
                    f"{config.AUDIO_FORK_PATH}/${{{config.VAR_CALL_ID}}}")


def test_whisper_and_reassure_extensions_run_their_scripts_then_park(dp):
    whisper = dp.route(DESK, "hs_whisper", **{config.VAR_ROLE: "desk"})
    assert [(s.app, s.data) for s in whisper.steps] == [("lua", f"{ENV['HS_LUA_DIR']}/hs_whisper.lua"),
                                                         ("park", "")]
    reassure = dp.route(DESK, "hs_reassure", **{config.VAR_ROLE: "company"})
    assert [(s.app, s.data) for s in reassure.steps] == [("lua", f"{ENV['HS_LUA_DIR']}/hs_reassure.lua"),
                                                          ("park", "")]


@pytest.mark.parametrize("dest", ["hs_park", "hs_whisper", "hs_reassure"])
def test_a_desk_phone_cannot_reach_the_worker_extensions(dp, dest):
    assert dp.route(DESK, dest).extension == "unallocated"
    assert dp.route(DESK, dest, **{config.VAR_ROLE: "intruder"}).extension == "unallocated"


def test_unknown_numbers_are_unallocated(dp):
    assert dp.route(DESK, "12").first("hangup").data == "UNALLOCATED_NUMBER"
