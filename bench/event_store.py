"""What does one call event cost the worker?  CPU per `events.publish`, as the session calls it.

    python bench/event_store.py [--events 3000] [--database-url URL] [--redis-url URL]

Each event is published the way `worker/session.py` does it: inside its own
`db.database.connection_context()`, then `events.publish(redis, call_id, type, data)`
(the row, the Redis history and two PUBLISHes).  `detector.state` is the
high-rate type (rows buffered and stored in batches); `hold.started` stands for
every other type (row stored at once).  The buffered rows are flushed inside the
measurement, so their INSERTs are counted.  Default: a fresh SQLite file and the
local Redis (db 15, its keys deleted afterwards); a PostgreSQL URL gets a private
schema, dropped afterwards.

Prints one line per type: CPU microseconds per event (process CPU time).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import db, events  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--database-url", default="")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = p.parse_args(argv)
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='hs-event-bench-')}/bench.db"
    schema = ""
    if url.startswith("postgres"):
        import psycopg2

        schema = f"hs_bench_{uuid.uuid4().hex[:12]}"
        with psycopg2.connect(url) as pg, pg.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    try:
        return run(url, args.events, redis.Redis.from_url(args.redis_url))
    finally:
        if schema:
            db.close_all(db.database.obj)
            with psycopg2.connect(args.database_url) as pg, pg.cursor() as cur:
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(url: str, n: int, conn: redis.Redis) -> int:
    db.init_db(url)
    with db.database.connection_context():
        call = db.Call.create(number="+15550100100")
    try:
        for type_ in ("detector.state", "hold.started"):
            t0 = time.process_time()
            for i in range(n):
                with db.database.connection_context():
                    events.publish(conn, call.id, type_, {"t": i * 0.1, "state": "music"})
            with db.database.connection_context():
                events.flush()
            cpu = time.process_time() - t0
            kind = db.database.obj.__class__.__name__
            print(f"{type_:15} {cpu / n * 1e6:8.1f} us CPU per event ({kind})")
        with db.database.connection_context():
            stored = db.CallEvent.select().where(db.CallEvent.call == call.id).count()
        if stored != 2 * n:
            raise SystemExit(f"only {stored} of {2 * n} rows stored")
    finally:
        conn.delete(events.history_key(call.id))
        with db.database.connection_context():
            db.Call.delete().where(db.Call.id == call.id).execute()
    return 0


if __name__ == "__main__":
    sys.exit(main())
