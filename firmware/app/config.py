"""Device configuration: one JSON object in a file, validated, with defaults filled in.

Fields (type, default):

    device_id    str  esp32-<12 hex>; on the host required, on the chip defaults to the MAC's id
    school       str  school code, required
    role         str  sensor | attendance | blackboard ("attendance")
    broker_host  str  required
    broker_port  int  1883
    username     str  MQTT user (None: anonymous)
    password     str  MQTT password (None)
    keepalive_s  int  MQTT keepalive (60)
    health_s     int  health period (60)
    data_dir     str  directory of the flash files (the HAL's default)
    hwbus        str  host only: "HOST:PORT" of the virtual hardware bus (None: no card reader)
    debounce_s   num  the same card within this time counts once (3)
    resend_s     num  re-send an event not acknowledged by the gateway after this time (10)
    buffer_slots int  events the flash ring buffer holds (256)
    fw           str  firmware version reported in the birth (the HAL's MicroPython version)
    app          str  application version reported in the birth (app.VERSION)
    wifi_ssid    str  chip only
    wifi_password str chip only
"""

import json

from protocol import messages, topics

# name: (type code, default); 's' str, 'i' int, 'n' number. REQUIRED marks fields without default.
REQUIRED = object()
FIELDS = {
    "device_id": ("s", None),
    "school": ("s", REQUIRED),
    "role": ("s", "attendance"),
    "broker_host": ("s", REQUIRED),
    "broker_port": ("i", 1883),
    "username": ("s", None),
    "password": ("s", None),
    "keepalive_s": ("i", 60),
    "health_s": ("i", 60),
    "data_dir": ("s", None),
    "hwbus": ("s", None),
    "debounce_s": ("n", 3),
    "resend_s": ("n", 10),
    "buffer_slots": ("i", 256),
    "fw": ("s", None),
    "app": ("s", None),
    "wifi_ssid": ("s", None),
    "wifi_password": ("s", None),
}


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


def _type_ok(value, code):
    if isinstance(value, bool):
        return False
    if code == "s":
        return isinstance(value, str)
    if code == "i":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def validate(raw):
    """Check a decoded config dict; return a new dict with every field present."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    for name in raw:
        if name not in FIELDS:
            raise ConfigError("unknown config field %r" % (name,))
    cfg = {}
    for name in FIELDS:
        code, default = FIELDS[name]
        value = raw.get(name)
        if value is None:
            if default is REQUIRED:
                raise ConfigError("config needs field %r" % (name,))
            cfg[name] = default
            continue
        if not _type_ok(value, code):
            raise ConfigError("config field %r has the wrong type" % (name,))
        cfg[name] = value
    if cfg["device_id"] is not None and not topics.is_device_id(cfg["device_id"]):
        raise ConfigError("device_id must be esp32-<12 lowercase hex>")
    if not topics.is_school_code(cfg["school"]):
        raise ConfigError("school must be 1-32 letters, digits, '_' or '-'")
    if cfg["role"] not in messages.ROLES:
        raise ConfigError("role must be one of " + ", ".join(messages.ROLES))
    if not 0 < cfg["broker_port"] < 65536:
        raise ConfigError("broker_port out of range")
    if not 0 <= cfg["keepalive_s"] <= 65535:
        raise ConfigError("keepalive_s must be 0..65535")
    for name in ("health_s", "buffer_slots"):
        if cfg[name] < 1:
            raise ConfigError("%s must be at least 1" % name)
    for name in ("debounce_s", "resend_s"):
        if cfg[name] < 0:
            raise ConfigError("%s must not be negative" % name)
    if cfg["hwbus"] is not None:
        parse_address(cfg["hwbus"])
    return cfg


def parse_address(text):
    """'HOST:PORT' to (host, port)."""
    cut = text.rfind(":")
    if cut < 1:
        raise ConfigError("address must be HOST:PORT, got %r" % (text,))
    try:
        port = int(text[cut + 1:])
    except ValueError:
        raise ConfigError("bad port in %r" % (text,))
    return text[:cut], port


def load(path):
    """Read and validate the config file at `path`."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc))
    except ValueError as exc:
        raise ConfigError("%s is not JSON: %s" % (path, exc))
    return validate(raw)
