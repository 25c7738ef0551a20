"""Helpers that tests of several parts share: real external processes such as the MQTT broker."""
