"""lua/ helper scripts, run under lupa with a fake `freeswitch` API.

The star-code script's HTTP request goes through a faithful reimplementation of
mod_curl's argument handling to a real HTTP server on 127.0.0.1:0.
"""

from __future__ import annotations

import json
import secrets
import socket

import pytest
from deploy_fakes import LUA_DIR, ApiServer, ModCurl, parse_curl_args, run_script, split_fs_args

TTS = {"hs_tts_engine": "flite", "hs_tts_voice": "kal"}
NO_TTS = {"hs_tts_engine": "", "hs_tts_voice": ""}


@pytest.fixture
def api():
    server = ApiServer()
    url = server.start()
    server.url = url  # type: ignore[attr-defined]
    yield server
    server.stop()


def star(api_url: str, key: str, digits: str, tts: dict[str, str] | None = None, **variables: str):
    curl = ModCurl()
    run = run_script(
        "hs_star_code.lua",
        argv=[digits],
        variables=variables or {"user_name": "1000"},
        globals_={"hs_api_url": api_url, "hs_service_key": key, **(tts if tts is not None else TTS)},
        api_handler=curl,
    )
    return run, curl


# --- the shared module --------------------------------------------------------------------------


def test_every_script_documents_its_arguments_at_the_top():
    for path in LUA_DIR.glob("*.lua"):
        text = path.read_text()
        assert text.startswith("--[[\n" + path.name + ":"), path.name
        header = text[: text.index("]]")]
        assert path.name == "hs_util.lua" or "Arguments" in header, path.name


@pytest.mark.parametrize(
    "digits,expected",
    [("8005551234", "+18005551234"), ("18005551234", "+18005551234"), ("011442079460000", "+442079460000"),
     ("442079460000", "+442079460000"), ("911", "+911")],
)
def test_e164_from_dialled_digits(digits, expected):
    run = run_script("hs_reassure.lua", ready=False)
    util = run.lua.eval('require("hs_util")')
    assert util.e164(digits) == expected


def test_json_encode_decode_round_trip_against_python():
    run = run_script("hs_reassure.lua", ready=False)
    util = run.lua.eval('require("hs_util")')
    value = 'He said "hi"\\ \n\ttab / é'
    encoded = util.json_object(run.lua.table_from(["a", "b"]), run.lua.table_from({"a": value, "b": "x"}))
    assert json.loads(encoded) == {"a": value, "b": "x"}
    doc = {"status_code": 201, "body": json.dumps({"id": "ab/c", "n": [1, 2.5, True, None]}), "headers": []}
    decoded = util.json_decode(json.dumps(doc).replace("/", "\\/"))
    assert decoded.status_code == 201
    inner = util.json_decode(decoded.body)
    assert inner.id == "ab/c" and inner.n[1] == 1 and inner.n[2] == 2.5 and inner.n[3] is True


@pytest.mark.parametrize("bad", ["", "{", '{"a":}', "[1,,2]", '{"a":1} x', '"open'])
def test_json_decode_rejects_bad_input(bad):
    run = run_script("hs_reassure.lua", ready=False)
    util = run.lua.eval('require("hs_util")')
    value, err = util.json_decode(bad)
    assert value is None and err


def test_url_encode_survives_mod_curl_argument_splitting():
    run = run_script("hs_reassure.lua", ready=False)
    util = run.lua.eval('require("hs_util")')
    text = '{"intent":"speak with a representative\'s boss"}'
    encoded = util.url_encode(text)
    assert " " not in encoded and "'" not in encoded
    req = parse_curl_args(f"http://x/y post {encoded}")
    assert req.body == text


def test_split_fs_args_keeps_single_quoted_words_together():
    assert split_fs_args("u append_headers 'A: b c' post x") == ["u", "append_headers", "A: b c", "post", "x"]


# --- *77: hs_star_code.lua ----------------------------------------------------------------------


def test_star_code_posts_the_job_with_the_service_key_and_says_it_is_queued(api):
    api.status, api.reply = 202, {"call_id": "c0ffee", "status": "queued"}
    key = secrets.token_urlsafe(24)
    run, curl = star(api.url, key, "8005551234", user_name="1001")

    assert len(api.requests) == 1
    req = api.requests[0]
    assert (req.method, req.path) == ("POST", "/api/calls/hold-slayer")
    assert req.headers["Authorization"] == f"Bearer {key}"
    assert req.headers["Content-Type"] == "application/json"
    body = json.loads(req.body)
    assert body["number"] == "+18005551234"
    assert body["transfer_to"] == "1001"
    assert body["intent"]
    assert curl.requests[0].connect_timeout and curl.requests[0].timeout
    assert run.var("hs_star_code_status") == "202"
    assert run.var("hs_star_code_call_id") == "c0ffee"
    assert run.var("tts_engine") == "flite"
    queued = "say:Hold Slayer is calling for you. Hang up; this phone rings when a person answers."
    assert run.played() == [queued]
    assert key not in "".join(str(entry[2]) for entry in run.rec.logs.values())


def test_star_code_speaks_the_api_refusal(api):
    message = "Emergency numbers are never dialled automatically; hang up and dial 911."
    api.status, api.reply = 400, {"error": {"code": "emergency_number", "message": message}}
    run, _ = star(api.url, secrets.token_hex(16), "911")
    assert json.loads(api.requests[0].body)["number"] == "+911"
    assert run.var("hs_star_code_status") == "400"
    assert run.played() == [f"say:{message}"]


def test_star_code_explains_a_rejected_key(api):
    api.status, api.reply = 401, {"error": {"code": "unauthorized", "message": "bad key"}}
    run, _ = star(api.url, secrets.token_hex(16), "8005551234")
    assert run.var("hs_star_code_status") == "401"
    assert run.played() == ["say:Hold Slayer refused the phone system's key."]


def test_star_code_when_the_api_is_down_plays_the_failure_tone_without_tts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run, curl = star(f"http://127.0.0.1:{port}", secrets.token_hex(16), "8005551234", tts=NO_TTS)
    assert len(curl.requests) == 1
    assert run.var("hs_star_code_status") == "0"
    assert run.played() == ["tone_stream://%(250,250,480,620);loops=3"]


@pytest.mark.parametrize("digits", ["", "12", "80055512345678901", "800x551234"])
def test_star_code_rejects_what_is_not_a_number_without_calling_the_api(digits):
    run, curl = star("http://127.0.0.1:9", secrets.token_hex(16), digits)
    assert curl.requests == []
    assert run.var("hs_star_code_status") == "invalid"


def test_star_code_refuses_a_key_that_would_break_the_curl_arguments():
    run, curl = star("http://127.0.0.1:9", "abc' def", "8005551234")
    assert curl.requests == []
    assert run.var("hs_star_code_status") == "0"


def test_star_code_needs_to_know_the_extension():
    run, curl = star("http://127.0.0.1:9", secrets.token_hex(16), "8005551234", caller_id_number="anonymous")
    assert curl.requests == []
    assert run.var("hs_star_code_status") == "invalid"


# --- whisper: hs_whisper.lua --------------------------------------------------------------------


@pytest.mark.parametrize(
    "digits,result,hangup",
    [("1", "accepted", None), ("2", "declined", "CALL_REJECTED"), ("", "timeout", "NO_USER_RESPONSE")],
)
def test_whisper_asks_the_desk_phone_and_reports_the_answer(digits, result, hangup):
    run = run_script(
        "hs_whisper.lua",
        variables={"hs_company": "Chase Bank", "hs_call_id": "call42"},
        globals_=TTS,
        digits=digits,
    )
    pgd = [c for c in run.calls() if c[0] == "playAndGetDigits"]
    assert pgd == [("playAndGetDigits", "say:Chase Bank is on the line. Press 1 to accept, or 2 to decline.",
                    2, 5000, "^[12]$")]
    assert run.var("hs_whisper_result") == result
    assert run.events() == [{
        "name": "CUSTOM", "subclass": "hold_slayer::whisper",
        "headers": {"Unique-ID": "0f8e5a7c-0000-4000-8000-000000000001", "hs_call_id": "call42",
                    "Whisper-Result": result},
    }]
    hangups = [c[1] for c in run.calls() if c[0] == "hangup"]
    assert hangups == ([hangup] if hangup else [])


def test_whisper_arguments_and_prompt_file():
    run = run_script("hs_whisper.lua", argv=["3", "7000"], variables={"hs_whisper_file": "/tmp/w.wav"},
                     globals_=TTS, digits="1")
    assert [c[1:] for c in run.calls() if c[0] == "playAndGetDigits"] == [("/tmp/w.wav", 3, 7000, "^[12]$")]


def test_whisper_ignores_silly_arguments_and_beeps_without_tts():
    run = run_script("hs_whisper.lua", argv=["99", "abc"], globals_=NO_TTS, digits="1")
    assert [c[1:4] for c in run.calls() if c[0] == "playAndGetDigits"] == [
        ("tone_stream://%(200,100,800);%(200,100,1000)", 2, 5000)
    ]


def test_whisper_does_nothing_on_a_dead_channel():
    run = run_script("hs_whisper.lua", digits="1", ready=False)
    assert run.calls() == [] and run.events() == []


# --- reassurance: hs_reassure.lua ---------------------------------------------------------------


def test_reassure_tells_the_agent_we_are_connecting():
    run = run_script("hs_reassure.lua", variables={"hs_call_id": "call42"}, globals_=TTS)
    assert run.played() == ["say:Thanks for waiting, I'm connecting you now."]
    assert run.var("hs_reassured") == run.played()[0]
    assert [e["subclass"] for e in run.events()] == ["hold_slayer::reassured"]
    assert run.events()[0]["headers"]["hs_call_id"] == "call42"


def test_reassure_plays_a_given_file_first():
    run = run_script("hs_reassure.lua", argv=["/sounds/connecting.wav"],
                     variables={"hs_reassure_file": "/other.wav"}, globals_=TTS)
    assert run.played() == ["/sounds/connecting.wav"]
    run = run_script("hs_reassure.lua", variables={"hs_reassure_file": "/other.wav"}, globals_=NO_TTS)
    assert run.played() == ["/other.wav"]
    run = run_script("hs_reassure.lua", globals_=NO_TTS)
    assert run.played() == ["tone_stream://%(300,100,440);%(300,0,660)"]
