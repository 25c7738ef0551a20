"""Commands and desired configuration from the cloud to the school's devices.

The gateway long-polls the cloud (outbound HTTPS only, through the school's firewall), keeps what it
gets in its store, and relays it over MQTT:

- a command goes to its device at once if the device is online, otherwise when its next birth arrives,
  unless it has expired by then; the device's ack travels back as an event like any other, and the
  gateway tells the cloud when the command reached the broker (`command_status` delivered);
- a desired config is published retained on the device's config topic, so that a rebooting device gets
  it from the broker even while the gateway or the cloud is away, and again at the device's birth when
  the version it reports is older.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from gateway.broker import BrokerLink
from gateway.config import GatewaySettings
from gateway.errors import StoreUnwritable, StoreWorkerError
from gateway.metrics import Metrics
from gateway.serial_display import SerialDisplay
from gateway.store_client import StoreClient
from gateway.supervise import backoff_delay
from protocol import messages, topics

log = logging.getLogger(__name__)

DOWNLINK_PATH = "/api/v1/gateway/downlink"
LONG_POLL_S = 25
NOT_OFFERED_RETRY_S = 300.0



def _encodes(build: Any, *args: Any) -> bool:
    """Whether the message `build(*args)` is within the protocol's bounds, as a device will check it.

    One that is not is refused when it arrives, not each time it would be published.
    """
    try:
        messages.encode(build(*args))
    except messages.ProtocolError as exc:
        log.warning("a downlink message breaks the protocol: %s", exc)
        return False
    return True


class DownlinkRelay:
    """Pulls commands and configs from the cloud and hands them to the devices."""

    def __init__(self, settings: GatewaySettings, store: StoreClient, broker: BrokerLink,
                 metrics: Metrics, client: httpx.AsyncClient | None = None,
                 displays: dict[str, SerialDisplay] | None = None) -> None:
        self._settings = settings
        self._displays = displays or {}
        self._store = store
        self._broker = broker
        self._metrics = metrics
        self._client = client or httpx.AsyncClient(base_url=settings.cloud.url,
                                                   timeout=LONG_POLL_S + settings.cloud.timeout_s,
                                                   verify=settings.cloud.tls_verify())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def pull(self) -> bool:
        """One long-poll; True if the cloud answered. Commands and configs are stored, then relayed."""
        cursor = await self._store.config_cursor()
        try:
            resp = await self._client.get(
                DOWNLINK_PATH, params={"wait": LONG_POLL_S, "config_cursor": cursor},
                headers={"Authorization": f"Bearer {self._settings.cloud.token}"},
            )
        except httpx.HTTPError as exc:
            log.debug("downlink poll failed: %r", exc)
            return False
        if resp.status_code == 404:
            log.warning("the cloud offers no command downlink yet; asking again in %.0fs", NOT_OFFERED_RETRY_S)
            await asyncio.sleep(NOT_OFFERED_RETRY_S)
            return False
        if resp.status_code != 200:
            log.warning("downlink poll answered %s: %s", resp.status_code, resp.text[:200])
            return False
        try:
            body = resp.json()
            commands = [c for c in body.get("commands", []) if self._command_ok(c)]
            configs = [c for c in body.get("configs", []) if self._config_ok(c)]
            new_cursor = int(body.get("config_cursor", cursor))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("downlink answer unreadable: %r", exc)
            self._metrics.inc("downlink_bad_answers")
            return False
        if commands:
            await self._store.queue_commands(commands)
            self._metrics.inc("commands_received", len(commands))
        changed = await self._store.set_desired_configs(configs, new_cursor)
        for config in changed:
            self._publish_config(config)
        online = {d["id"] for d in await self._store.devices() if d["presence"] == "online"}
        for command in await self._store.open_commands(None, True):
            if command["device"] in online:
                await self._publish_command(command)
        return True

    def _command_ok(self, c: Any) -> bool:
        ok = (isinstance(c, dict) and isinstance(c.get("cid"), str) and 0 < len(c["cid"]) <= 64
              and topics.is_device_id(c.get("device")) and isinstance(c.get("name"), str)
              and isinstance(c.get("args", {}), dict) and isinstance(c.get("exp"), int | float)
              and _encodes(messages.command, c["cid"], c["name"], c.get("args", {}), c["exp"]))
        if not ok:
            log.warning("ignoring a malformed command from the cloud: %r", c)
            self._metrics.inc("downlink_bad_commands")
        return ok

    def _config_ok(self, c: Any) -> bool:
        ok = (isinstance(c, dict) and topics.is_device_id(c.get("device"))
              and isinstance(c.get("version"), int) and isinstance(c.get("values"), dict)
              and _encodes(messages.config, c["version"], c["values"]))
        if not ok:
            log.warning("ignoring a malformed config from the cloud: %r", c)
            self._metrics.inc("downlink_bad_configs")
        return ok

    async def _publish_command(self, command: dict[str, Any]) -> None:
        if command["exp"] <= time.time():
            return
        display = self._displays.get(command["device"])
        if display is not None:
            # Wired to the gateway itself: carried out here, and its ack goes through the store.
            await self._store.command_published(command["cid"])
            await display.execute(command["cid"], command["name"], command["args"], command["exp"])
            self._metrics.inc("commands_relayed")
            return
        payload = messages.encode(messages.command(command["cid"], command["name"], command["args"],
                                                   command["exp"]))
        self._broker.publish(topics.down(self._settings.school, command["device"], topics.COMMAND), payload, qos=1)
        await self._store.command_published(command["cid"])
        self._metrics.inc("commands_relayed")

    def _publish_config(self, config: dict[str, Any]) -> None:
        payload = messages.encode(messages.config(config["version"], config["values"]))
        topic = topics.down(self._settings.school, config["device"], topics.CONFIG)
        self._broker.publish(topic, payload, qos=1, retain=True)
        self._metrics.inc("configs_relayed")

    async def device_online(self, device: str, reported_config_version: int | None = None) -> None:
        """A device was born: give it what waited for it."""
        for command in await self._store.open_commands(device):
            await self._publish_command(command)
        config = await self._store.desired_config(device)
        if config is not None and (reported_config_version is None or reported_config_version < config["version"]):
            self._publish_config(config)

    async def run(self) -> None:
        """Long-poll the cloud for ever, with backoff while it is away."""
        failures = 0
        while True:
            try:
                if await self.pull():
                    failures = 0
                    continue
            except (StoreUnwritable, StoreWorkerError) as exc:
                # Configs the store did not keep come again: the next poll sends the cursor it still has.
                # Commands the cloud handed out in that answer are not relayed, and end expired there.
                self._metrics.inc("downlink_store_errors")
                log.warning("downlink poll could not use the store, trying again: %s", exc)
            failures += 1
            cloud = self._settings.cloud
            await asyncio.sleep(backoff_delay(failures - 1, cloud.backoff_min_s, cloud.backoff_max_s))
