"""The paho-mqtt internals the broker link's fast read path uses, all in this one module.

paho has no public way to read many packets with one recv(), hand them on as one batch, or queue
ready-made bytes, so the read path reaches into paho's Client. Every private name it uses is here,
listed in PRIVATE_METHODS and PRIVATE_ATTRIBUTES; they were checked against paho-mqtt PAHO_CHECKED
(pyproject.toml pins that minor version), and tests/gateway/test_paho_internals.py fails when a paho
release moves or changes one of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import paho.mqtt.client as mqtt

PAHO_CHECKED = "2.2"
_PUBACK = 0x40
T = TypeVar("T")

# paho's Client methods the read path calls or overrides, with their parameters after `self`.
PRIVATE_METHODS: dict[str, tuple[str, ...]] = {
    "_packet_read": (),
    "_packet_handle": (),
    "_packet_queue": ("command", "packet", "mid", "qos", "info"),
    "_sock_recv": ("bufsize",),
    "_sock_close": (),
    "_loop_rc_handle": ("rc",),
}
# paho's Client attributes the read path reads or sets.
PRIVATE_ATTRIBUTES = ("_sock", "_msgtime_mutex", "_last_bytes_received", "_in_packet", "_in_callback_mutex")
# paho's partial-packet state, as `_packet_handle` reads it from `_in_packet`.
IN_PACKET_KEYS = ("command", "have_remaining", "remaining_count", "remaining_mult", "remaining_length", "packet",
                  "to_process", "pos")


def _in_packet(command: int, body: bytes) -> dict[str, object]:
    return {"command": command, "have_remaining": 1 if command else 0, "remaining_count": [],
            "remaining_mult": 1, "remaining_length": len(body), "packet": bytearray(body), "to_process": 0,
            "pos": 0}


class PahoInternals(mqtt.Client):
    """paho's Client, with what a batch reader needs of its internals as a few methods.

    A subclass implements `read_packets`, which runs where paho would read one packet, and may extend
    `socket_closed`; the other methods are what it may do with paho's state.
    """

    def read_packets(self) -> mqtt.MQTTErrorCode:
        """Read from the socket and handle what came; called when the socket has data."""
        raise NotImplementedError

    def socket_closed(self) -> None:
        """The connection's socket was closed (its unread state is to be dropped)."""

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        return self.read_packets()

    def _sock_close(self) -> None:
        self.socket_closed()
        super()._sock_close()

    def has_socket(self) -> bool:
        """Whether a connection's socket is open."""
        return self._sock is not None

    def receive(self, size: int) -> bytes:
        """Read up to `size` bytes from the socket (b"" when the broker closed it)."""
        return self._sock_recv(size)

    def mark_received(self) -> None:
        """Tell paho's keepalive that the broker was heard from just now."""
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()

    def handle_packet(self, command: int, body: bytes) -> mqtt.MQTTErrorCode:
        """Let paho handle one complete packet (its first byte and the bytes after its length)."""
        self._in_packet = _in_packet(command, body)  # type: ignore[assignment]
        try:
            return self._packet_handle()
        finally:
            self._in_packet = _in_packet(0, b"")  # type: ignore[assignment]

    def read_failed(self, rc: mqtt.MQTTErrorCode) -> mqtt.MQTTErrorCode:
        """What paho does after a failed read: close the connection and say so."""
        return self._loop_rc_handle(rc)

    def deliver(self, callback: Callable[[T], None], value: T) -> None:
        """Call `callback(value)` as paho calls its own callbacks, under its callback lock."""
        with self._in_callback_mutex:
            callback(value)

    def queue_raw(self, data: bytes) -> None:
        """Queue ready-made packets to be written as they are."""
        # Queued as a PUBACK: paho writes it as it is and runs no publish callback for it.
        self._packet_queue(_PUBACK, data, 0, 0)
