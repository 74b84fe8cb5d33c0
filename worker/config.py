"""Settings from the environment, shared by the worker, the web app and the tools.

Every name the FreeSWITCH configuration in `freeswitch/` must agree with lives
here (gateway name, contexts, channel variables, audio-fork path); a test checks
that the two agree.  Secrets (ESL password, API keys, trunk password) are read
from the environment and never logged: `Settings.__repr__` masks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

# --- names shared with freeswitch/ (the switch configuration) -----------------
TRUNK_GATEWAY = "trunk"                 # <gateway name="trunk"> in the external profile
DESK_CONTEXT = "hold_slayer_desk"       # context of registered desk phones
PUBLIC_CONTEXT = "hold_slayer_public"   # context of calls arriving from the trunk (the DID)
VAR_CALL_ID = "hs_call_id"              # channel variable: our call id, on every leg we originate
VAR_ROLE = "hs_role"                    # channel variable: "company" or "desk"
VAR_WORKER = "hs_worker"                # channel variable: id of the worker that owns the leg
AUDIO_FORK_PATH = "/fork"               # ws://<AUDIO_FORK_PUBLIC_HOST>:<port>/fork/<call_id>
STAR_CODE = "*77"                       # desk phone dials *77 + number to launch a hold-slayer job

SECRET_FIELDS = ("esl_password", "api_key", "service_key", "llm_api_key", "stt_api_key", "tts_api_key")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _env_list(name: str, default: str, strip: str = "") -> tuple[str, ...]:
    """A comma-separated variable as a tuple of non-empty, stripped items."""
    return tuple(item.strip().lstrip(strip) for item in _env(name, default).split(",") if item.strip())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_count(name: str, default: int) -> int:
    """A whole number >= 1 (a count of things)."""
    value = _env_int(name, default)
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes or 0/false/no, got {raw!r}")


def _env_non_negative(name: str, default: float, positive: bool = False, unit: str = "seconds") -> float:
    value = _env_float(name, default)
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} {unit}, got {value!r}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite:///holdslayer.db"
    queue_name: str = "hold-slayer"

    # FreeSWITCH event socket(s): "host:port" comma separated; one ESL connection per host.
    esl_hosts: tuple[str, ...] = ("127.0.0.1:8021",)
    esl_password: str = ""
    esl_timeout_s: float = 10.0          # seconds to wait for any api/bgapi reply

    # The worker's audio-fork WebSocket endpoint: where it listens, and the host
    # FreeSWITCH uses to reach it (in compose: the worker's service name).
    audio_fork_bind: str = "127.0.0.1:8090"
    audio_fork_public_host: str = "127.0.0.1"
    audio_fork_rate: int = 8000          # 8000 or 16000 (mod_audio_fork mono 8k|16k)
    # The audio hub (worker/audio_hub.py): one greenlet reads every call's fork and runs one detector
    # bank per round.  Without hub reads each fork is read by its own greenlet about every read_pace_s.
    audio_hub_tick_s: float = 0.1        # wall seconds between two rounds of one call
    audio_hub_cohorts: int = 4           # the calls are split into this many groups, served in turn
    audio_hub_max_feed_s: float = 2.0    # media seconds of one call analysed per round at most
    audio_fork_hub_reads: bool = True
    audio_fork_read_pace_s: float = 0.05  # (only without hub reads; 0: read as soon as readable)

    sip_domain: str = "127.0.0.1"        # desk phones are user/<ext>@<sip_domain>
    caller_id_number: str = ""           # SIP_TRUNK_DID: caller id presented to companies

    # Dialling policy (toll-fraud guard).
    allowed_country_codes: tuple[str, ...] = ("1",)   # E.164 country codes the trunk may dial
    launch_rate_per_minute: int = 10                   # call launches per API key per minute

    # Limits and timeouts (seconds unless said otherwise).
    ring_timeout_s: int = 60             # originate_timeout for the company leg
    desk_ring_timeout_s: int = 30        # how long the user's phone rings before we reassure/retry
    max_hold_s: int = 4 * 3600           # hard cap on a call, enforced by the switch (sched_hangup) too
    max_calls_per_worker: int = 200      # 500 holds fit one core (bench/CONCURRENCY.md): room for set-up
    call_start_rate: float = 10.0        # calls a worker starts per second at most (0: no limit)
    worker_heartbeat_s: int = 10
    worker_grace_s: float = 30.0         # seconds running calls may go on after SIGTERM

    api_key: str = ""                    # API_KEY: required on every write to the REST API
    service_key: str = ""                # SERVICE_KEY: used by lua/ star-code requests

    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    stt_base_url: str = ""
    stt_api_key: str = ""
    stt_model: str = "whisper-1"         # model name sent to STT_BASE_URL
    tts_base_url: str = ""
    tts_api_key: str = ""
    tts_model: str = "tts-1"             # model and voice sent to TTS_BASE_URL
    tts_voice: str = "alloy"

    recordings_dir: str = "recordings"
    prompts_dir: str = "prompts"         # rendered prompts; FreeSWITCH must read them at the same path
    extra: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            redis_url=_env("REDIS_URL", d.redis_url),
            database_url=_env("DATABASE_URL", d.database_url),
            queue_name=_env("QUEUE_NAME", d.queue_name),
            esl_hosts=_env_list("ESL_HOSTS", ",".join(d.esl_hosts)),
            esl_password=_env("ESL_PASSWORD"),
            esl_timeout_s=_env_float("ESL_TIMEOUT", d.esl_timeout_s),
            audio_fork_bind=_env("AUDIO_FORK_BIND", d.audio_fork_bind),
            audio_fork_public_host=_env("AUDIO_FORK_PUBLIC_HOST", d.audio_fork_public_host),
            audio_fork_rate=_env_int("AUDIO_FORK_RATE", d.audio_fork_rate),
            audio_hub_tick_s=_env_non_negative("AUDIO_HUB_TICK_S", d.audio_hub_tick_s, positive=True),
            audio_hub_cohorts=_env_count("AUDIO_HUB_COHORTS", d.audio_hub_cohorts),
            audio_hub_max_feed_s=_env_non_negative("AUDIO_HUB_MAX_FEED_S", d.audio_hub_max_feed_s,
                                                   positive=True),
            audio_fork_hub_reads=_env_bool("AUDIO_FORK_HUB_READS", d.audio_fork_hub_reads),
            audio_fork_read_pace_s=_env_non_negative("AUDIO_FORK_READ_PACE_S", d.audio_fork_read_pace_s),
            sip_domain=_env("SIP_DOMAIN", d.sip_domain),
            caller_id_number=_env("SIP_TRUNK_DID", d.caller_id_number),
            allowed_country_codes=_env_list("ALLOWED_COUNTRY_CODES", "1", strip="+"),
            launch_rate_per_minute=_env_int("LAUNCH_RATE_PER_MINUTE", d.launch_rate_per_minute),
            ring_timeout_s=_env_int("RING_TIMEOUT", d.ring_timeout_s),
            desk_ring_timeout_s=_env_int("DESK_RING_TIMEOUT", d.desk_ring_timeout_s),
            max_hold_s=_env_int("MAX_HOLD_SECONDS", d.max_hold_s),
            max_calls_per_worker=_env_int("MAX_CALLS_PER_WORKER", d.max_calls_per_worker),
            call_start_rate=_env_non_negative("CALL_START_RATE", d.call_start_rate, unit="calls per second"),
            worker_heartbeat_s=_env_int("WORKER_HEARTBEAT", d.worker_heartbeat_s),
            worker_grace_s=_env_non_negative("WORKER_GRACE_S", d.worker_grace_s),
            api_key=_env("API_KEY"),
            service_key=_env("SERVICE_KEY"),
            llm_base_url=_env("LLM_BASE_URL"),
            llm_model=_env("LLM_MODEL"),
            llm_api_key=_env("LLM_API_KEY"),
            stt_base_url=_env("STT_BASE_URL"),
            stt_api_key=_env("STT_API_KEY"),
            stt_model=_env("STT_MODEL", d.stt_model),
            tts_base_url=_env("TTS_BASE_URL"),
            tts_api_key=_env("TTS_API_KEY"),
            tts_model=_env("TTS_MODEL", d.tts_model),
            tts_voice=_env("TTS_VOICE", d.tts_voice),
            recordings_dir=_env("RECORDINGS_DIR", d.recordings_dir),
            prompts_dir=_env("PROMPTS_DIR", d.prompts_dir),
        )
