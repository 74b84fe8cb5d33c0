"""The configuration after FreeSWITCH's preprocessor, with a realistic environment."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from deploy_dialplan import preprocess

from worker import config

ENV = {
    "ESL_PASSWORD": "esl-7f3a9c1e5b2d",
    "DESK_SIP_PASSWORD": "desk-2b8e4f6a0c1d",
    "SERVICE_KEY": "svc-9d1c7e3a5f0b",
    "SIP_TRUNK_HOST": "sip.carrier.example",
    "SIP_TRUNK_USERNAME": "acct42",
    "SIP_TRUNK_PASSWORD": "trunk-5e0a2c9b7d1f",
    "SIP_TRUNK_DID": "15105550100",
    "SIP_DOMAIN": "pbx.example.com",
    "SIP_PUBLIC_IP": "203.0.113.7",
    "SIP_LAN_IP": "192.168.1.20",
    "GATEWAY_SIP_PORT": "5080",
    "ESL_ALLOW_CIDR": "172.28.0.0/24",
}


def document(env: dict[str, str]) -> ET.Element:
    return ET.fromstring(preprocess(env))  # noqa: S314 (our own repository files)


def params(el: ET.Element | None) -> dict[str, str]:
    assert el is not None
    return {p.get("name", ""): p.get("value", "") for p in el.iter("param")}


def find(root: ET.Element, tag: str, name: str) -> ET.Element:
    found = [el for el in root.iter(tag) if el.get("name") == name]
    assert len(found) == 1, (tag, name)
    return found[0]


@pytest.fixture(scope="module")
def doc() -> ET.Element:
    return document(ENV)


def test_the_preprocessed_configuration_is_one_xml_document(doc):
    assert doc.tag == "document" and doc.get("type") == "freeswitch/xml"
    assert {s.get("name") for s in doc.iter("section")} == {"configuration", "dialplan", "directory"}
    assert "$${" not in preprocess(ENV)


def test_environment_reaches_the_event_socket(doc):
    esl = params(find(doc, "configuration", "event_socket.conf"))
    assert esl["password"] == ENV["ESL_PASSWORD"]
    acl = find(doc, "list", esl["apply-inbound-acl"])
    assert [n.get("cidr") for n in acl.iter("node")] == ["127.0.0.1/32", ENV["ESL_ALLOW_CIDR"]]


def test_environment_reaches_the_trunk_gateway(doc):
    gw = params(find(doc, "gateway", config.TRUNK_GATEWAY))
    assert gw["proxy"] == gw["realm"] == ENV["SIP_TRUNK_HOST"]
    assert gw["username"] == ENV["SIP_TRUNK_USERNAME"]
    assert gw["password"] == ENV["SIP_TRUNK_PASSWORD"]
    assert gw["extension"] == ENV["SIP_TRUNK_DID"]
    assert gw["register"] == "true"
    ext = params(find(doc, "profile", "external").find("settings"))
    assert ext["ext-rtp-ip"] == ext["ext-sip-ip"] == ENV["SIP_PUBLIC_IP"]


def test_environment_reaches_the_desk_phones(doc):
    internal = params(find(doc, "profile", "internal").find("settings"))
    assert internal["sip-port"] == ENV["GATEWAY_SIP_PORT"]
    assert internal["ext-rtp-ip"] == ENV["SIP_LAN_IP"]
    assert internal["force-register-domain"] == ENV["SIP_DOMAIN"]
    domain = find(doc, "domain", ENV["SIP_DOMAIN"])
    users = {u.get("id"): params(u) for u in domain.iter("user")}
    assert set(users) == {"1000", "1001"}
    assert all(p["password"] == ENV["DESK_SIP_PASSWORD"] for p in users.values())


def test_missing_secrets_become_random_never_a_stock_default():
    env = {k: v for k, v in ENV.items() if k not in ("ESL_PASSWORD", "DESK_SIP_PASSWORD")}
    doc = document(env)
    assert params(find(doc, "configuration", "event_socket.conf"))["password"] == "random-esl_password"
    domain = find(doc, "domain", ENV["SIP_DOMAIN"])
    assert {params(u)["password"] for u in domain.iter("user")} == {"random-desk_sip_password"}


def test_a_quote_in_a_value_would_break_the_xml_which_is_why_the_entrypoint_refuses_it():
    with pytest.raises(ET.ParseError):
        document({**ENV, "ESL_PASSWORD": 'abc"def<ghi'})
