"""ClassOps device application: the MQTT link, the event ring buffer and the Device itself."""

VERSION = "0.1.0"
