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
