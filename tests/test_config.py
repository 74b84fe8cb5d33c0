"""Settings from the environment: parsing, clear errors, and secrets kept out of repr/logs."""

import pytest

from worker.config import Settings


def test_lists_and_numbers_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESL_HOSTS", " fs1:8021, fs2:8021 ,")
    monkeypatch.setenv("ALLOWED_COUNTRY_CODES", "+1, 44")
    monkeypatch.setenv("MAX_CALLS_PER_WORKER", "250")
    monkeypatch.setenv("ESL_TIMEOUT", "2.5")
    s = Settings.from_env()
    assert s.esl_hosts == ("fs1:8021", "fs2:8021")
    assert s.allowed_country_codes == ("1", "44")
    assert s.max_calls_per_worker == 250
    assert s.esl_timeout_s == 2.5


def test_bad_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RING_TIMEOUT", "sixty")
    with pytest.raises(ValueError, match="RING_TIMEOUT must be an integer"):
        Settings.from_env()


def test_secrets_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESL_PASSWORD", "s3cret-esl")
    monkeypatch.setenv("API_KEY", "s3cret-api")
    monkeypatch.setenv("LLM_API_KEY", "s3cret-llm")
    s = Settings.from_env()
    text = repr(s)
    assert "s3cret" not in text
    assert "esl_password='***'" in text
    assert s.esl_password == "s3cret-esl"


def test_worker_audio_and_paths_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIO_HUB_TICK_S", "0.05")
    monkeypatch.setenv("AUDIO_FORK_HUB_READS", "no")
    monkeypatch.setenv("AUDIO_FORK_READ_PACE_S", "0")
    monkeypatch.setenv("WORKER_GRACE_S", "120")
    monkeypatch.setenv("PROMPTS_DIR", "/prompts")
    monkeypatch.setenv("AUDIO_HUB_COHORTS", "2")
    s = Settings.from_env()
    assert s.audio_hub_cohorts == 2
    assert (s.audio_hub_tick_s, s.audio_fork_hub_reads, s.audio_fork_read_pace_s) == (0.05, False, 0.0)
    assert (s.worker_grace_s, s.prompts_dir, s.audio_hub_max_feed_s) == (120.0, "/prompts", 2.0)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AUDIO_HUB_TICK_S", "0", "AUDIO_HUB_TICK_S must be > 0 seconds"),
    ("AUDIO_HUB_COHORTS", "0", "AUDIO_HUB_COHORTS must be a whole number >= 1"),
    ("AUDIO_HUB_COHORTS", "two", "AUDIO_HUB_COHORTS must be an integer"),
    ("AUDIO_HUB_MAX_FEED_S", "-1", "AUDIO_HUB_MAX_FEED_S must be > 0 seconds"),
    ("WORKER_GRACE_S", "-5", "WORKER_GRACE_S must be >= 0 seconds"),
    ("AUDIO_FORK_HUB_READS", "maybe", "AUDIO_FORK_HUB_READS must be 1/true/yes or 0/false/no"),
])
def test_bad_worker_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                       message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings.from_env()
