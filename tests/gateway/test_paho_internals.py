"""paho's internals that the broker link's read path relies on are where it expects them.

paho-mqtt is pinned to the minor version these were checked against; a paho release that moves or
changes one of them fails here, before the gateway reads a message with it."""

from __future__ import annotations

import importlib.metadata
import inspect
import time

import paho.mqtt.client as mqtt

from gateway.broker import _FastClient
from gateway.paho_internals import IN_PACKET_KEYS, PAHO_CHECKED, PRIVATE_ATTRIBUTES, PRIVATE_METHODS, PahoInternals

# Methods of paho's that the read path's classes override on purpose.
OVERRIDDEN = {"__init__", "loop_read", "_packet_read", "_sock_close"}


def _client() -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-internals-check", clean_session=False)


def test_the_installed_paho_is_the_version_the_internals_were_checked_against() -> None:
    installed = importlib.metadata.version("paho-mqtt")
    assert installed.split(".")[:2] == PAHO_CHECKED.split("."), installed


def test_each_private_method_exists_with_the_expected_parameters() -> None:
    for name, params in PRIVATE_METHODS.items():
        method = getattr(mqtt.Client, name, None)
        assert callable(method), f"paho's Client has no method {name}"
        found = tuple(inspect.signature(method).parameters)[1:]
        assert found == params, f"{name}{found}, expected {params}"
    assert tuple(inspect.signature(mqtt.Client.loop_read).parameters)[1:] == ("max_packets",)


def test_each_private_attribute_and_the_partial_packet_state_exist() -> None:
    client = _client()
    for name in PRIVATE_ATTRIBUTES:
        assert hasattr(client, name), f"paho's Client has no attribute {name}"
    assert tuple(client._in_packet) == IN_PACKET_KEYS
    assert hasattr(client._msgtime_mutex, "__enter__") and hasattr(client._in_callback_mutex, "__enter__")
    # The keepalive compares _last_bytes_received with this clock.
    assert mqtt.time_func is time.monotonic


def test_paho_reads_and_closes_through_the_methods_the_read_path_overrides() -> None:
    assert "self._packet_read()" in inspect.getsource(mqtt.Client.loop_read)
    assert "self._sock_close()" in inspect.getsource(mqtt.Client._loop_rc_handle)
    assert "self._in_packet" in inspect.getsource(mqtt.Client._packet_handle)


def test_the_read_path_adds_no_name_that_paho_uses() -> None:
    client = _client()
    paho_names = set(dir(mqtt.Client)) | set(vars(client))
    for cls in (PahoInternals, _FastClient):
        added = {name for name in vars(cls) if not name.startswith("__")} - OVERRIDDEN
        assert not added & paho_names, f"{cls.__name__} shadows paho's {sorted(added & paho_names)}"
    fast = _FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-internals-check", on_publishes=print)
    own = set(vars(fast)) - set(vars(client))
    assert own == {"_rbuf", "_on_publishes", "_read_gate", "_last_read", "reads", "read_bytes", "link"}
