"""The database: peewee models behind one `DatabaseProxy`, SQLite by default, PostgreSQL in production.

    db = init_db("sqlite:///holdslayer.db")            # or postgresql://user@host/db (DATABASE_URL)
    call = Call.create(number="+15550100100", intent="...", status="queued")
    flow = CallFlow.latest("acme")                     # newest version, by name or by any version's id
    flow = CallFlow.for_number("+15550100100")         # the flow stored for that company's number

Timestamps are naive UTC datetimes (`utcnow()`); `Call.to_dict()` renders them
as ISO 8601 with an explicit ``+00:00``.  JSON columns are TEXT holding JSON
(portable across SQLite and PostgreSQL); use the `*_json` helpers to read them.

Under gevent every greenlet gets its own connection (peewee keeps connection
state in a `threading.local`, which gevent patches); close it when a unit of
work ends (`database.close()`, or `with database.connection_context():`).

Connections are pooled (`playhouse.pool`): `close()` hands the connection back
and the next `connect()` reuses it, so a `connection_context()` costs no new
socket or SQLite file open and no PRAGMAs.  `sqlite:///f.db` and
`postgresql://...` are pooled by default (`sqlite:///:memory:` is not: each
connection would be a different database); pool settings may be given in the
URL query (`?max_connections=50&stale_timeout=300&timeout=10`), see POOL_DEFAULTS.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

import peewee as pw
from playhouse.db_url import connect as db_url_connect
from playhouse.db_url import parse as db_url_parse

log = logging.getLogger(__name__)

database = pw.DatabaseProxy()

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),      # readers never block the writer (web + worker on one file)
    ("foreign_keys", 1),          # SQLite ignores REFERENCES unless told
    ("busy_timeout", 5000),       # milliseconds to wait on a locked database before failing
    ("synchronous", "normal"),    # safe with WAL, far fewer fsyncs
)

# Pool settings used unless the URL's query sets them.
POOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sqlite": {
        "max_connections": 0,       # 0 = no cap: SQLite connections are cheap and local
        "stale_timeout": 300,       # seconds an idle connection is kept before it is reopened
        "check_same_thread": False,  # peewee gives each thread/greenlet its own; the pool may hand it on
    },
    "postgres": {
        "max_connections": 64,      # per process; PostgreSQL's own default limit is 100
        "stale_timeout": 300,       # seconds
        "timeout": 10,              # seconds to wait for a free connection when all are in use
    },
}
_POOLED_SCHEMES = {"sqlite": "sqlite+pool", "postgres": "postgres+pool", "postgresql": "postgresql+pool"}

FINAL_STATUSES = frozenset(
    {
        "transferred",
        "busy",
        "no_answer",
        "sit",
        "voicemail",
        "no_human",
        "device_unavailable",
        "user_no_answer",
        "agent_hung_up",
        "canceled",
        "failed",
    }
)
ACTIVE_STATUSES = frozenset(
    {"queued", "dialing", "ringing", "ivr", "holding", "human_detected", "connecting"}
)
STATUSES = FINAL_STATUSES | ACTIVE_STATUSES


def utcnow() -> dt.datetime:
    """Now as a naive UTC datetime: what every DateTimeField here stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_call_id() -> str:
    return uuid.uuid4().hex


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset, or None."""
    if value is None:
        return None
    if isinstance(value, str):          # SQLite hands back strings it could not parse
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


class BaseModel(pw.Model):
    class Meta:
        database = database


class CallFlow(BaseModel):
    """One version of a company's phone-tree script.  Updating a flow inserts a new version row."""

    id = pw.AutoField()
    name = pw.CharField(max_length=200, index=True)
    number = pw.CharField(max_length=32, index=True)       # E.164 of the company
    description = pw.TextField(default="")
    version = pw.IntegerField(default=1)
    steps = pw.TextField(default="[]")                     # JSON list, schemas/call_flow.json
    deleted = pw.BooleanField(default=False)               # DELETE hides every version; calls keep their FK
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("name", "version"), True),)

    @property
    def steps_json(self) -> list[dict[str, Any]]:
        return loads(self.steps, [])

    @classmethod
    def latest(cls, name_or_id: str | int) -> CallFlow | None:
        """Newest live version of the flow named `name_or_id`, or of the flow whose version has that id."""
        name: str | None = None
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            row = cls.get_or_none(cls.id == int(name_or_id))
            if row is not None:
                name = row.name
        if name is None and isinstance(name_or_id, str):
            name = name_or_id
        if name is None:
            return None
        return (
            cls.select()
            .where((cls.name == name) & (cls.deleted == False))  # noqa: E712 - peewee expression
            .order_by(cls.version.desc())
            .first()
        )

    @classmethod
    def for_number(cls, e164: str) -> CallFlow | None:
        """The newest live flow stored for this company number (latest version of the newest flow)."""
        return (
            cls.select()
            .where((cls.number == e164) & (cls.deleted == False))  # noqa: E712 - peewee expression
            .order_by(cls.created_at.desc(), cls.id.desc())
            .first()
        )

    @classmethod
    def current(cls) -> list[CallFlow]:
        """The newest live version of every flow, by name."""
        newest = (
            cls.select(cls.name, pw.fn.MAX(cls.version).alias("v"))
            .where(cls.deleted == False)  # noqa: E712 - peewee expression
            .group_by(cls.name)
        )
        rows = (
            cls.select()
            .join(newest, on=((cls.name == newest.c.name) & (cls.version == newest.c.v)))
            .order_by(cls.name)
        )
        return list(rows)

    def new_version(self, **changes: Any) -> CallFlow:
        """Insert the next version of this flow with `changes` applied (name stays)."""
        with database.atomic():
            top = CallFlow.select(pw.fn.MAX(CallFlow.version)).where(CallFlow.name == self.name).scalar() or 0
            return CallFlow.create(
                name=self.name,
                number=changes.get("number", self.number),
                description=changes.get("description", self.description),
                steps=changes.get("steps", self.steps),
                version=top + 1,
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "number": self.number,
            "description": self.description,
            "version": self.version,
            "steps": self.steps_json,
            "created_at": iso(self.created_at),
        }


class Device(BaseModel):
    """A registered desk phone the user can be rung on: `user/<extension>@<sip_domain>`."""

    extension = pw.CharField(max_length=32, unique=True)
    name = pw.CharField(max_length=200, default="")
    enabled = pw.BooleanField(default=True)
    created_at = pw.DateTimeField(default=utcnow)

    @classmethod
    def default(cls) -> Device | None:
        """The first enabled device (lowest id): where calls go without `transfer_to`."""
        return cls.select().where(cls.enabled == True).order_by(cls._meta.primary_key).first()  # noqa: E712

    def to_dict(self) -> dict[str, Any]:
        return {
            "extension": self.extension,
            "name": self.name,
            "enabled": self.enabled,
            "created_at": iso(self.created_at),
        }


def hold_span(started: dt.datetime | None, *ends: dt.datetime | None,
              now: dt.datetime | None = None) -> float | None:
    """Seconds on hold from `started` to the first of `ends` that is set (or `now` while still
    holding); None before a hold."""
    if started is None:
        return None
    end = next((e for e in ends if e is not None), None) or now or utcnow()
    return round(max(0.0, (end - started).total_seconds()), 3)


class Call(BaseModel):
    id = pw.CharField(primary_key=True, max_length=64, default=new_call_id)
    number = pw.CharField(max_length=32, index=True)
    intent = pw.TextField(default="")
    call_flow = pw.ForeignKeyField(CallFlow, null=True, backref="calls", on_delete="SET NULL")
    transfer_to = pw.CharField(max_length=32, default="")
    status = pw.CharField(max_length=32, default="queued", index=True)
    status_reason = pw.TextField(default="")
    created_at = pw.DateTimeField(default=utcnow, index=True)
    started_at = pw.DateTimeField(null=True)
    answered_at = pw.DateTimeField(null=True)
    hold_started_at = pw.DateTimeField(null=True)
    human_detected_at = pw.DateTimeField(null=True)
    bridged_at = pw.DateTimeField(null=True)
    ended_at = pw.DateTimeField(null=True)
    hangup_cause = pw.CharField(max_length=64, default="")
    company_uuid = pw.CharField(max_length=64, default="")
    desk_uuid = pw.CharField(max_length=64, default="")
    worker_id = pw.CharField(max_length=200, default="")
    job_id = pw.CharField(max_length=64, default="")
    recording_path = pw.TextField(default="")
    options = pw.TextField(default="{}")                   # JSON object from the request
    updated_at = pw.DateTimeField(default=utcnow)

    call_flow_id: int | None                               # peewee adds <fk>_id attributes

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)

    @property
    def options_json(self) -> dict[str, Any]:
        return loads(self.options, {})

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def hold_seconds(self, now: dt.datetime | None = None) -> float | None:
        """Seconds spent on hold: from hold start to the human (or the end, or `now` while holding)."""
        return hold_span(self.hold_started_at, self.human_detected_at, self.bridged_at, self.ended_at,
                         now=now)

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The REST shape of a call (GET /api/calls/<id>)."""
        return {
            "call_id": self.id,
            "number": self.number,
            "intent": self.intent,
            "call_flow_id": self.call_flow_id,
            "transfer_to": self.transfer_to,
            "status": self.status,
            "status_reason": self.status_reason,
            "final": self.is_final,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "answered_at": iso(self.answered_at),
            "hold_started_at": iso(self.hold_started_at),
            "human_detected_at": iso(self.human_detected_at),
            "bridged_at": iso(self.bridged_at),
            "ended_at": iso(self.ended_at),
            "updated_at": iso(self.updated_at),
            "hold_seconds": self.hold_seconds(now),
            "hangup_cause": self.hangup_cause,
            "job_id": self.job_id,
            "options": self.options_json,
        }


class CallEvent(BaseModel):
    call = pw.ForeignKeyField(Call, backref="events", on_delete="CASCADE")
    type = pw.CharField(max_length=64)
    ts = pw.DoubleField()                                  # epoch seconds
    data = pw.TextField(default="{}")                      # JSON object

    call_id: str

    class Meta:
        indexes = ((("call", "ts"), False),)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "call_id": self.call_id, "ts": self.ts, "data": loads(self.data, {})}


class Fingerprint(BaseModel):
    """Recorded audio already heard at a company (hold announcements), so it never looks like a human."""

    number = pw.CharField(max_length=32, index=True)
    kind = pw.CharField(max_length=32, default="announcement")
    fingerprint = pw.TextField()                           # JSON produced by worker/audio/fingerprint.py
    created_at = pw.DateTimeField(default=utcnow)

    @property
    def fingerprint_json(self) -> Any:
        return loads(self.fingerprint, None)

    @classmethod
    def for_number(cls, e164: str, kind: str = "announcement") -> list[Fingerprint]:
        rows = cls.select().where((cls.number == e164) & (cls.kind == kind))
        return list(rows.order_by(cls._meta.primary_key))

    @classmethod
    def store(cls, e164: str, fingerprint: Any, kind: str = "announcement") -> Fingerprint:
        return cls.create(number=e164, kind=kind, fingerprint=dumps(fingerprint))


MODELS: tuple[type[BaseModel], ...] = (CallFlow, Device, Call, CallEvent, Fingerprint)


def pooled_url(url: str) -> tuple[str, dict[str, Any]]:
    """(url with a `+pool` scheme, the pool defaults the URL's query does not set) (pure).

    URLs that are already `+pool`, other schemes and in-memory SQLite come back unchanged, no defaults.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, {}
    base = scheme.split("+", 1)[0]
    kind = "sqlite" if base == "sqlite" else "postgres" if base in ("postgres", "postgresql") else ""
    if not kind or rest.startswith("/:memory:") or rest in ("", "/"):
        return url, {}
    if scheme in _POOLED_SCHEMES:
        url = f"{_POOLED_SCHEMES[scheme]}://{rest}"
    elif not scheme.endswith("+pool"):
        return url, {}
    given = db_url_parse(url)
    return url, {k: v for k, v in POOL_DEFAULTS[kind].items() if k not in given}


def connect(url: str) -> pw.Database:
    """A peewee Database for `url` (playhouse.db_url schemes), pooled, with SQLite pragmas applied."""
    if not url:
        raise ValueError("DATABASE_URL is empty; use e.g. sqlite:///holdslayer.db or postgresql://...")
    url, defaults = pooled_url(url)
    if url.startswith("sqlite"):
        return db_url_connect(url, pragmas=SQLITE_PRAGMAS, **defaults)
    return db_url_connect(url, **defaults)


def close_all(db: pw.Database) -> None:
    """Close this process's connections to `db`: the pooled idle ones too (shutdown, switching URLs)."""
    if not db.is_closed():
        db.close()
    closer = getattr(db, "close_all", None)
    if closer is not None:
        closer()


def init_db(url: str) -> pw.Database:
    """Point the shared proxy at `url` and create missing tables.  Safe to call again (same or new url).

    Cheap once it succeeded for `url` (the web calls it before every request until the database is up);
    raises peewee.OperationalError while the server is unreachable, with the proxy already pointed at it.
    """
    current = database.obj
    if current is not None and getattr(current, "_hs_ready_url", None) == url:
        return current
    if current is not None and getattr(current, "_hs_url", None) == url:
        db = current
    else:
        if current is not None:
            close_all(current)
        db = connect(url)
        setattr(db, "_hs_url", url)  # noqa: B010 - the url this Database was made from
        database.initialize(db)
    with db.connection_context():
        db.create_tables(MODELS, safe=True)
    setattr(db, "_hs_ready_url", url)  # noqa: B010 - tables exist: later calls are no-ops
    log.info("database ready: %s", db.__class__.__name__)
    return db
