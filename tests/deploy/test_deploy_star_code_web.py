"""*77 end to end: lua/hs_star_code.lua -> mod_curl (emulated) -> the real web app on a real socket."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from deploy_fakes import ModCurl, run_script
from gevent.pywsgi import WSGIServer

from web import create_app
from worker import db
from worker.config import Settings

SERVICE_KEY = "deploy-service-key-5c1e9a"


@pytest.fixture
def web_url(redis_url, redis_conn, database_url):
    settings = replace(
        Settings(),
        redis_url=redis_url,
        database_url=database_url,
        queue_name="hs-deploy-test",
        api_key="deploy-api-key-0b7d3f",
        service_key=SERVICE_KEY,
        launch_rate_per_minute=100,
    )
    app = create_app({"TESTING": True, "SETTINGS": settings})
    db.Device.create(extension="1000", name="desk")
    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.stop(timeout=2)
    db.database.close()


def dial(web_url: str, digits: str, key: str = SERVICE_KEY):
    return run_script(
        "hs_star_code.lua",
        argv=[digits],
        variables={"user_name": "1000"},
        globals_={"hs_api_url": web_url, "hs_service_key": key, "hs_tts_engine": "flite"},
        api_handler=ModCurl(),
    )


def test_star_code_queues_a_real_call_for_the_desk_phone(web_url):
    run = dial(web_url, "8005551234")
    assert run.var("hs_star_code_status") == "202"
    call_id = run.var("hs_star_code_call_id")
    assert re.fullmatch(r"[0-9a-f]{32}", call_id)
    call = db.Call.get_by_id(call_id)
    assert (call.number, call.transfer_to, call.status) == ("+18005551234", "1000", "queued")
    assert run.played()[0].startswith("say:Hold Slayer is calling for you")


def test_star_code_to_911_is_refused_by_the_api_and_said_so(web_url):
    run = dial(web_url, "911")
    assert run.var("hs_star_code_status") == "400"
    assert db.Call.select().count() == 0
    spoken = run.played()[0]
    assert spoken.startswith("say:") and "emergency" in spoken.lower()


def test_star_code_with_a_wrong_key_is_refused(web_url):
    run = dial(web_url, "8005551234", key="not-the-service-key")
    assert run.var("hs_star_code_status") == "401"
    assert db.Call.select().count() == 0
