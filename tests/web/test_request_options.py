"""The job options the worker reads are checked at the boundary, with the failing field named."""

import pytest

from worker.errors import SchemaViolation
from worker.queueing import check_schema

BASE = {"number": "+15550100100", "intent": "dispute a charge"}


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 3, "retry_backoff_s": 30},
        {"call_back_on_agent_hangup": True, "callback": "accept"},
        {"screen": True, "screen_timeout_s": 15},
    ],
)
def test_valid_options_pass(options: dict) -> None:
    check_schema("hold_slayer_request", {**BASE, "options": options})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"retries": 99}, "retries"),
        ({"retries": -1}, "retries"),
        ({"retry_backoff_s": 0}, "retry_backoff_s"),
        ({"callback": "maybe"}, "callback"),
        ({"call_back_on_agent_hangup": "yes"}, "call_back_on_agent_hangup"),
        ({"screen_timeout_s": 0}, "screen_timeout_s"),
    ],
)
def test_bad_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(SchemaViolation) as info:
        check_schema("hold_slayer_request", {**BASE, "options": options})
    assert field in str(info.value.details)
