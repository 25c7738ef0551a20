"""Commands and configs from the cloud are held to the protocol's bounds when they arrive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gateway.config import GatewaySettings
from gateway.downlink import DownlinkRelay
from gateway.metrics import Metrics
from protocol import limits

DEV = "esp32-246f28000001"


async def _unused_store(*args: object) -> None:
    raise AssertionError("no store call expected")


def test_commands_and_configs_out_of_bounds_are_refused_on_arrival(tmp_path: Path) -> None:
    metrics = Metrics()
    settings = GatewaySettings(school="S001", school_secret="school-secret-0123456789", data_dir=tmp_path)
    relay = DownlinkRelay(settings, _unused_store, None, metrics, client=httpx.AsyncClient())  # type: ignore[arg-type]
    try:
        good = {"cid": "c-1", "device": DEV, "name": "reboot", "args": {}, "exp": 1795454769}
        assert relay._command_ok(good)
        deep: dict = {}
        node = deep
        for _ in range(limits.MAX_DEPTH):
            node["a"] = {}
            node = node["a"]
        for bad in ({"name": "n" * (limits.MAX_NAME_LEN + 1)}, {"args": deep}, {"exp": 2**64},
                    {"args": {"n": 2**63}}):
            assert not relay._command_ok({**good, **bad}), bad
        assert metrics.get("downlink_bad_commands") == 4
        assert relay._config_ok({"device": DEV, "version": 3, "values": {"health_s": 60}})
        assert not relay._config_ok({"device": DEV, "version": 2**63, "values": {}})
        assert not relay._config_ok({"device": DEV, "version": 3, "values": {f"k{i}": i for i in range(65)}})
        assert metrics.get("downlink_bad_configs") == 2
    finally:
        asyncio.run(relay.aclose())
