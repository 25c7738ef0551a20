"""ClassOps protocol v1: MQTT topics and payloads shared by device firmware and gateway."""

from protocol.messages import PROTOCOL_VERSION, ProtocolError  # noqa: F401
from protocol.topics import TopicError  # noqa: F401
