"""Device configuration: one JSON object in a file, validated, with defaults filled in.

A file that cannot be used falls back to the last good copy (`<path>.good`, written after every good
load), so a botched edit or a torn write never leaves a device without a config. The gateway's desired
config (`values` of a `config` message, or the `set_config` command) may change only the REMOTE fields;
it is kept in `<data_dir>/desired.json` and laid over the file at every boot.

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
    hwbus        str  host only: "HOST:PORT" of the virtual hardware bus (None: no virtual hardware)
    debounce_s   num  the same card within this time counts once (3)
    resend_s     num  re-send an event not acknowledged by the gateway after this time (10)
    buffer_slots int  events the flash ring buffer holds (256)
    fw           str  firmware version reported in the birth (the HAL's MicroPython version)
    app          str  application version reported in the birth (app.VERSION)
    wifi_ssid    str  chip only
    wifi_password str chip only
    ntp_host     str  NTP server (the school gateway, or pool.ntp.org when None)
    sensors      list sensor node: drivers to run, of sht4x sht3x scd4x pms5003 bh1750 mic (all but sht3x)
    telemetry_s  num  sensor node and blackboard: telemetry period (60)
    stuck_reads  int  identical raw readings in a row that count as a stuck sensor (6)
    display_port str  blackboard: the display's serial port; host: a tty path, chip: "uart2"
    display_addr int  blackboard: the display's RS-232 address (1)
    display_input str blackboard: input source to select after power on (None: leave it)
    display_boot_s num blackboard: how long the display may take to answer after mains on (20)
    display_poll_s num blackboard: how often the display's state is queried (10)
    sense_grace_s num blackboard: power sense may disagree this long after a switch (15)
    relay_off_delay_s num blackboard: mains stays on this long after standby (30)
    schedule     dict blackboard: weekly power schedule (app/schedule.py), None: manual only
    tz_min       int  the school's offset from UTC in minutes, for the schedule (480, Asia/Shanghai)
    watchdog_s   num  watchdog timeout (30)
    reboot_after_s num offline this long (no broker) restarts the device (1800)
    wifi_reset_after int failed broker connects in a row before Wi-Fi is restarted (3)
    boot_ok_s    num  a boot that runs this long is a good boot (60)
    safe_after   int  boots in a row that fail before boot_ok_s lead to safe mode (5)
    ota_selftest_s num a new app version must pass its self-test within this time (120)
    pins         dict chip only: pin numbers by name, overriding hal/esp32.py's PINS
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
    "ntp_host": ("s", None),
    "sensors": ("l", None),
    "telemetry_s": ("n", 60),
    "stuck_reads": ("i", 6),
    "display_port": ("s", None),
    "display_addr": ("i", 1),
    "display_input": ("s", None),
    "display_boot_s": ("n", 20),
    "display_poll_s": ("n", 10),
    "sense_grace_s": ("n", 15),
    "relay_off_delay_s": ("n", 30),
    "schedule": ("d", None),
    "tz_min": ("i", 480),
    "watchdog_s": ("n", 30),
    "reboot_after_s": ("n", 1800),
    "wifi_reset_after": ("i", 3),
    "boot_ok_s": ("n", 60),
    "safe_after": ("i", 5),
    "ota_selftest_s": ("n", 120),
    "pins": ("d", None),
}
# Fields the gateway may set remotely; identity, broker and storage stay with the file on the device.
REMOTE = (
    "keepalive_s", "health_s", "debounce_s", "resend_s", "telemetry_s", "stuck_reads", "sensors",
    "display_input", "display_poll_s", "sense_grace_s", "relay_off_delay_s", "schedule", "tz_min",
    "reboot_after_s", "ntp_host",
)
SENSOR_NAMES = ("sht4x", "sht3x", "scd4x", "pms5003", "bh1750", "mic")
DEFAULT_SENSORS = ["sht4x", "scd4x", "pms5003", "bh1750", "mic"]
GOOD_SUFFIX = ".good"
DESIRED_FILE = "desired.json"


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


def _type_ok(value, code):
    if isinstance(value, bool):
        return False
    if code == "s":
        return isinstance(value, str)
    if code == "i":
        return isinstance(value, int)
    if code == "l":
        return isinstance(value, list)
    if code == "d":
        return isinstance(value, dict)
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
    for name in ("debounce_s", "resend_s", "relay_off_delay_s", "sense_grace_s"):
        if cfg[name] < 0:
            raise ConfigError("%s must not be negative" % name)
    for name in ("telemetry_s", "stuck_reads", "display_boot_s", "display_poll_s", "watchdog_s",
                 "reboot_after_s", "wifi_reset_after", "boot_ok_s", "safe_after", "ota_selftest_s"):
        if cfg[name] <= 0:
            raise ConfigError("%s must be positive" % name)
    if cfg["hwbus"] is not None:
        parse_address(cfg["hwbus"])
    if cfg["sensors"] is None:
        cfg["sensors"] = list(DEFAULT_SENSORS)
    for name in cfg["sensors"]:
        if name not in SENSOR_NAMES:
            raise ConfigError("unknown sensor %r; known: %s" % (name, ", ".join(SENSOR_NAMES)))
    if not -720 <= cfg["tz_min"] <= 840:
        raise ConfigError("tz_min must be -720..840")
    if cfg["display_input"] is not None:
        from protocol import display

        if cfg["display_input"] not in display.SOURCES:
            raise ConfigError("display_input must be one of " + ", ".join(display.SOURCES))
    if cfg["schedule"] is not None:
        from app import schedule

        try:
            schedule.Schedule(cfg["schedule"], cfg["tz_min"])
        except ValueError as exc:
            raise ConfigError("schedule: %s" % exc)
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


def read_raw(path):
    """The JSON object in the file at `path`, unvalidated; ConfigError if it cannot be read."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc))
    except (ValueError, UnicodeError) as exc:
        raise ConfigError("%s is not JSON: %s" % (path, exc))
    return raw


def load(path):
    """Read and validate the config file at `path`."""
    return validate(read_raw(path))


def load_with_fallback(path):
    """(config, problem): the file at `path` validated, and its copy saved as the last good one; or,
    when the file cannot be used, the last good copy and the reason the file was refused."""
    try:
        raw = read_raw(path)
        cfg = validate(raw)
    except ConfigError as exc:
        try:
            return load(path + GOOD_SUFFIX), str(exc)
        except ConfigError:
            raise exc
    good = path + GOOD_SUFFIX
    try:
        same = read_raw(good) == raw
    except ConfigError:
        same = False
    if not same:
        write_json(good, raw)
    return cfg, None


def write_json(path, value):
    """Write `value` as JSON so that a power cut leaves either the old file or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    import os

    os.rename(tmp, path)


def remote_values(values):
    """Check a desired config's `values`: only REMOTE fields; ConfigError otherwise."""
    if not isinstance(values, dict):
        raise ConfigError("values must be an object")
    for name in values:
        if name not in REMOTE:
            raise ConfigError("field %r cannot be set remotely" % (name,))
    return values


def merged(cfg, values):
    """A new validated config: `cfg` with the desired `values` laid over it."""
    remote_values(values)
    raw = {}
    for name in cfg:
        if cfg[name] is not None:
            raw[name] = cfg[name]
    for name in values:
        raw[name] = values[name]
    return validate(raw)


def load_desired(data_dir):
    """(version, values) of the desired config kept on flash, or (None, {})."""
    try:
        raw = read_raw(data_dir + "/" + DESIRED_FILE)
        return raw["version"], remote_values(raw["values"])
    except (ConfigError, KeyError, TypeError):
        return None, {}


def save_desired(data_dir, version, values):
    """Keep the desired config that is now applied."""
    write_json(data_dir + "/" + DESIRED_FILE, {"version": version, "values": values})
