"""One real browser: headless Debian chromium (Playwright) logs in, submits the form, sees the live call page.

The web app runs as its own process (`python -m web`, gevent WSGI server on port 0), exactly as in the demo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.conftest import API_KEY
from worker import db, events

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


def _listening_url(proc: subprocess.Popen, port_file: Path) -> str:
    line = proc.stdout.readline()             # the entry point prints this line once it accepts connections
    if not line.startswith("web: listening on http://"):
        proc.kill()
        raise AssertionError(f"python -m web did not start: {line!r} {proc.stderr.read()[-2000:]}")
    url = line.split()[-1]
    assert url.endswith(":" + port_file.read_text().strip())        # --port-file agrees
    return url


@pytest.fixture
def web_process(redis_url: str, database_url: str, redis_conn, tmp_path: Path):
    if not database_url.startswith("sqlite"):
        pytest.skip("the browser test runs once, on SQLite")
    db.init_db(database_url)
    db.Device.create(extension="1000", name="desk phone")
    db.database.close()
    port_file = tmp_path / "port"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "API_KEY": API_KEY,
        "QUEUE_NAME": "hs-web-test",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--bind", "127.0.0.1:0", "--port-file", str(port_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield _listening_url(proc, port_file)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_form_to_live_call_page(web_process: str, redis_conn, queue) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(web_process + "/")
            expect(page).to_have_url(web_process + "/login?next=/")
            page.fill("input[name=api_key]", API_KEY)
            page.click("#login button[type=submit]")
            page.fill("input[name=number]", "+1 (555) 010-0100")
            page.fill("textarea[name=intent]", "ask about my bill")
            page.select_option("select[name=transfer_to]", "1000")
            page.click("#launch button[type=submit]")
            expect(page).to_have_url(re.compile(r"/calls/[0-9a-f]{32}$"))
            call_id = page.url.rsplit("/", 1)[-1]
            assert queue.get_job_ids() == [call_id]
            expect(page.locator("#status")).to_have_text("queued")
            expect(page.locator("#live")).to_have_text("live")
            events.publish(redis_conn, call_id, "hold.started", {}, store=False)
            expect(page.locator("#events li[data-type='hold.started']")).to_have_count(1)
            expect(page.locator("#status")).to_have_text("holding")
        finally:
            browser.close()
