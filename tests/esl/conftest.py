import pytest

from tests.esl.captures import CAPTURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that read the FreeSWITCH captures are skipped, with the reason, where shared/ is absent."""
    if CAPTURES.is_dir():
        return
    skip = pytest.mark.skip(reason=f"FreeSWITCH captures not found at {CAPTURES} (set HS_SHARED_DIR)")
    for item in items:
        if "tests/esl/" in str(item.fspath) and item.module is not None and (
            "CAPTURES" in vars(item.module) or "captures" in vars(item.module)
        ):
            item.add_marker(skip)
