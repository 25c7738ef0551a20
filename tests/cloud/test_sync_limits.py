"""Batch size limits of /api/v1/gateway/sync."""

import pytest

from cloud.core.config import Settings
from tests.cloud.conftest import tap


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, max_sync_records=3)


def test_batch_over_the_limit_is_refused_whole(sync):
    response = sync([tap(n) for n in range(1, 5)])

    assert response.status_code == 413
    assert "at most 3" in response.json()["detail"]


def test_batch_at_the_limit_is_accepted(sync):
    assert sync([tap(n) for n in range(1, 4)]).json()["confirmed"] == [1, 2, 3]
