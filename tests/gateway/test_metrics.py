"""The gateway's /metrics exposition: Prometheus' format with # HELP and # TYPE, under the names the
docs list, and quantiles of the most recent observations."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import SAMPLES_KEPT, Metrics


def _families(metrics: Metrics) -> dict[str, tuple[str, str, dict[tuple[str, tuple], float]]]:
    out = {}
    for family in text_string_to_metric_families(metrics.render_prometheus()):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def test_the_exposition_has_types_help_and_the_documented_names() -> None:
    metrics = Metrics()
    metrics.inc("messages_in", 5)
    metrics.inc("messages_rejected", 2, label="bad_json")
    metrics.inc("messages_rejected", label="flood")
    metrics.set("backlog_records", 3)
    metrics.observe_many("commit_latency_seconds", [i / 100 for i in range(100)])
    text = metrics.render_prometheus()
    assert "# TYPE classops_gateway_messages_rejected_total counter" in text
    assert 'classops_gateway_messages_rejected_total{reason="bad_json"} 2' in text
    families = _families(metrics)
    assert families["classops_gateway_messages_in"][:2] == ("counter", "Messages delivered by the broker.")
    assert families["classops_gateway_messages_in"][2] == {("classops_gateway_messages_in_total", ()): 5.0}
    assert families["classops_gateway_messages_rejected"][2] == {
        ("classops_gateway_messages_rejected_total", (("reason", "bad_json"),)): 2.0,
        ("classops_gateway_messages_rejected_total", (("reason", "flood"),)): 1.0,
    }
    assert families["classops_gateway_backlog_records"][0] == "gauge"
    kind, _, latency = families["classops_gateway_commit_latency_seconds"]
    assert kind == "summary"
    assert latency == {("classops_gateway_commit_latency_seconds", (("quantile", q),)): v
                       for q, v in (("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99))}


def test_quantiles_follow_new_observations_and_only_the_most_recent_count() -> None:
    metrics = Metrics()
    metrics.observe_many("store_commit_seconds", [1.0] * SAMPLES_KEPT)
    assert metrics.snapshot()["store_commit_seconds{quantile=0.5}"] == 1.0
    # A scrape between observations sees the new ones; the oldest give way once SAMPLES_KEPT are newer.
    metrics.observe_many("store_commit_seconds", [2.0] * (SAMPLES_KEPT // 2 + 1))
    assert metrics.snapshot()["store_commit_seconds{quantile=0.5}"] == 2.0
    metrics.observe("store_commit_seconds", 3.0)
    assert metrics.snapshot()["store_commit_seconds{quantile=0.99}"] == 2.0
    metrics.observe_many("store_commit_seconds", [3.0] * SAMPLES_KEPT)
    assert 'classops_gateway_store_commit_seconds{quantile="0.5"} 3.0' in metrics.render_prometheus()
