"""Limits of /api/v1/gateway/sync: batch size and a token bucket per gateway."""

import pytest

from cloud.api.ratelimit import TokenBuckets
from cloud.core.config import Settings
from tests.cloud.helpers import tap


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        max_sync_records=3,
        sync_rate_per_s=0.5,
        sync_burst=3,
        maintenance_interval_s=0,
    )


def test_batch_over_the_limit_is_refused_whole(sync):
    response = sync([tap(n) for n in range(1, 5)])

    assert response.status_code == 413
    assert "at most 3" in response.json()["detail"]


def test_batch_at_the_limit_is_accepted(sync):
    assert sync([tap(n) for n in range(1, 4)]).json()["confirmed"] == [1, 2, 3]


def test_a_gateway_over_its_rate_gets_429_with_retry_after(sync):
    answers = [sync([]) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].headers["retry-after"] == "2"
    assert "faster than" in answers[3].json()["detail"]
    assert sync([], school="s2").status_code == 200


def test_token_buckets_refill_at_their_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])

    assert [buckets.take("g") for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 0.5
    assert buckets.take("g") == 0.0
    assert buckets.take("other") == 0.0
    now[0] = 100.0
    assert [buckets.take("g") for _ in range(3)] == [0.0, 0.0, 0.5]
