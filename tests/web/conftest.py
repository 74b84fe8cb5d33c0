"""Web fixtures: the app on real Redis and each database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import rq
from rq.serializers import JSONSerializer

from web import create_app
from worker import db
from worker.config import Settings

API_KEY = "test-api-key-0123456789"
SERVICE_KEY = "test-service-key-9876543210"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def make_settings(redis_url: str, database_url: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        base = replace(
            Settings(),
            redis_url=redis_url,
            database_url=database_url,
            queue_name="hs-web-test",
            api_key=API_KEY,
            service_key=SERVICE_KEY,
            launch_rate_per_minute=100,
        )
        return replace(base, **overrides)

    return build


@pytest.fixture
def make_app(make_settings, redis_conn) -> Callable[..., Any]:
    def build(**overrides: Any):
        return create_app({"TESTING": True, "SETTINGS": make_settings(**overrides)})

    return build


@pytest.fixture
def app(make_app) -> Iterator[Any]:
    application = make_app()
    db.Device.create(extension="1000", name="desk")
    yield application
    db.database.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def queue(redis_conn) -> rq.Queue:
    return rq.Queue("hs-web-test", connection=redis_conn, serializer=JSONSerializer)
