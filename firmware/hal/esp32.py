"""Hardware layer for the ESP32: Wi-Fi, NTP, watchdog, reset cause, IDF heap figures, the flash
filesystem, the classroom parts on their buses, and whole-image firmware updates through esp32.Partition.

Imported only on the chip (`sys.platform == "esp32"`). Pin numbers are PINS, overridable per device by
the config's `pins` object.
"""

import asyncio
import gc
import time

import esp32
import machine
import network
import ntptime

from protocol import topics

WIFI_TIMEOUT_S = 20
# Seconds from 1970 to 2000, for ports whose time() counts from 2000.
EPOCH_2000 = 946684800
# Before NTP has answered, a clock earlier than this is the RTC's power-on default, not the time.
PLAUSIBLE_EPOCH = 1704067200
# The reader is polled this often for a card.
CARD_POLL_MS = 100
FEEDBACK_MS = {"ok": 80, "dup": 30, "error": 400}
IMAGE_BLOCK = 4096

# Default wiring of the ClassOps classroom board (ESP32-WROOM-32).
PINS = {
    "i2c_scl": 22, "i2c_sda": 21,
    "pms_uart": 1, "pms_tx": 17, "pms_rx": 16,
    "mic_adc": 34,
    "spi_sck": 18, "spi_mosi": 23, "spi_miso": 19, "rc522_cs": 5,
    "led_green": 25, "led_red": 26, "buzzer": 27,
    "relay": 32, "power_sense": 35,
    "display_uart": 2, "display_tx": 13, "display_rx": 14,
}

_RESET_NAMES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deepsleep"),
    ("SOFT_RESET", "soft"),
)


def _makedirs(path):
    import os

    cur = ""
    for part in path.split("/"):
        if part:
            cur += "/" + part
            try:
                os.mkdir(cur)
            except OSError:
                pass


class Esp32Hal:
    """Backend for the one device that this chip is."""

    shared = False

    def __init__(self, cfg):
        self._cfg = cfg
        self.pins = dict(PINS)
        if cfg.get("pins"):
            self.pins.update(cfg["pins"])
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self.device_id = cfg["device_id"] or topics.device_id_from_mac(self._wlan.config("mac"))
        self.data_dir = cfg["data_dir"] or "/data"
        _makedirs(self.data_dir)
        self._epoch_offset = EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0
        self._clock_ok = False
        self._drop_callbacks = []
        self._i2c = None
        self._relay = None
        cause = machine.reset_cause()
        self._reset = "unknown"
        for attr, name in _RESET_NAMES:
            if getattr(machine, attr, None) == cause:
                self._reset = name
                break

    def fw_version(self):
        """MicroPython version as x.y.z."""
        import sys

        v = sys.implementation.version
        return "micropython-%d.%d.%d" % (v[0], v[1], v[2])

    def time(self):
        """Unix epoch seconds, whatever epoch this port's time() uses."""
        return time.time() + self._epoch_offset

    def clock_ok(self):
        """True once NTP has set the clock, or the RTC already holds a plausible time."""
        return self._clock_ok or self.time() > PLAUSIBLE_EPOCH

    async def sync_clock(self):
        """Set the RTC by NTP (the gateway, or the configured server); whether it worked."""
        if not self._wlan.isconnected():
            return False
        if self._cfg.get("ntp_host"):
            ntptime.host = self._cfg["ntp_host"]
        try:
            ntptime.settime()
        except (OSError, OverflowError):
            return False
        self._clock_ok = True
        return True

    def reset_reason(self):
        """machine.reset_cause() by name."""
        return self._reset

    def heap(self):
        """(free MicroPython heap, largest free block of the IDF heap that MicroPython's grows into)."""
        block = 0
        for region in esp32.idf_heap_info(esp32.HEAP_DATA):
            if region[2] > block:
                block = region[2]
        return gc.mem_free(), block

    def rssi(self):
        """Signal of the access point, or None while not associated."""
        if not self._wlan.isconnected():
            return None
        try:
            return self._wlan.status("rssi")
        except (OSError, ValueError):
            return None

    async def network_up(self):
        """Join the configured Wi-Fi if not joined."""
        wlan = self._wlan
        if wlan.isconnected():
            return
        ssid = self._cfg["wifi_ssid"]
        if not ssid:
            raise OSError("no wifi_ssid configured")
        wlan.connect(ssid, self._cfg["wifi_password"] or "")
        waited = 0
        while not wlan.isconnected():
            if waited >= WIFI_TIMEOUT_S * 10:
                wlan.disconnect()
                raise OSError("wifi join timed out")
            await asyncio.sleep_ms(100)
            waited += 1

    def network_reset(self):
        """Restart the Wi-Fi station: a station stuck half-associated recovers only this way."""
        try:
            self._wlan.disconnect()
        except OSError:
            pass
        self._wlan.active(False)
        self._wlan.active(True)

    def on_link_drop(self, callback):
        """The MQTT keepalive notices a dropped Wi-Fi on the chip; callbacks are kept for symmetry."""
        self._drop_callbacks.append(callback)

    def watchdog(self, timeout_ms):
        """The hardware watchdog; once started it cannot be stopped, only fed."""
        return machine.WDT(timeout=timeout_ms)

    def restart(self):
        """Hard restart; the next boot reports reset cause soft."""
        machine.reset()

    def tasks(self):
        """No extra tasks on the chip."""
        return []

    def firmware_image(self):
        """Whole-image updates into the other OTA partition."""
        return FirmwareImage()

    # Sensor node.

    def i2c(self):
        """The sensor I2C bus at 100 kHz (the SCD4x's and BH1750's common rate)."""
        if self._i2c is None:
            self._i2c = machine.I2C(0, scl=machine.Pin(self.pins["i2c_scl"]),
                                    sda=machine.Pin(self.pins["i2c_sda"]), freq=100000)
        return self._i2c

    def pms_uart(self):
        """The PMS5003's UART, 9600 8N1."""
        p = self.pins
        return machine.UART(p["pms_uart"], 9600, tx=p["pms_tx"], rx=p["pms_rx"], rxbuf=256)

    def mic_adc(self):
        """The microphone amplifier on an ADC1 pin (ADC2 is unusable while Wi-Fi runs)."""
        adc = machine.ADC(machine.Pin(self.pins["mic_adc"]))
        adc.atten(machine.ADC.ATTN_11DB)
        return adc

    # Attendance terminal.

    def rc522(self):
        """The RC522 on SPI bus 2 at 1 MHz."""
        from app.drivers.rc522 import Rc522

        p = self.pins
        spi = machine.SPI(2, baudrate=1000000, polarity=0, phase=0, sck=machine.Pin(p["spi_sck"]),
                          mosi=machine.Pin(p["spi_mosi"]), miso=machine.Pin(p["spi_miso"]))
        return Rc522(spi, machine.Pin(p["rc522_cs"], machine.Pin.OUT))

    async def card_wait(self):
        """The reader has no card interrupt wired: poll."""
        await asyncio.sleep_ms(CARD_POLL_MS)

    def card_done(self, uid, result):
        """Nothing to report on the chip."""

    def feedback(self, kind):
        """Green LED and a short beep for ok, a blip for dup, red and a long beep for error."""
        led = machine.Pin(self.pins["led_green" if kind != "error" else "led_red"], machine.Pin.OUT)
        buzzer = machine.PWM(machine.Pin(self.pins["buzzer"]), freq=2700, duty_u16=32768)
        led.value(1)
        asyncio.create_task(_feedback_off(led, buzzer, FEEDBACK_MS.get(kind, 80)))

    # Blackboard controller.

    def relay(self):
        """The mains relay's driver pin (high: closed)."""
        if self._relay is None:
            self._relay = machine.Pin(self.pins["relay"], machine.Pin.OUT)
        return self._relay

    def power_sense(self):
        """The current sensor's comparator output (high: the display draws power)."""
        return machine.Pin(self.pins["power_sense"], machine.Pin.IN)

    def display_stream(self):
        """The display's RS-232 port through a MAX3232 on a UART, 9600 8N1."""
        from protocol import display

        p = self.pins
        return machine.UART(p["display_uart"], display.BAUDRATE, tx=p["display_tx"], rx=p["display_rx"])


async def _feedback_off(led, buzzer, ms):
    await asyncio.sleep_ms(ms)
    buzzer.deinit()
    led.value(0)


class FirmwareImage:
    """A MicroPython firmware image written into the next OTA partition, booted with the bootloader's
    rollback armed, and confirmed only after the app's self-test passes on the new image."""

    async def update(self, base_url, image):
        """Stream image {"path", "sha256", "size"} from base_url into the next partition; make it boot."""
        import hashlib
        from binascii import hexlify

        from app.ota import OtaError, http_get

        if not isinstance(image, dict) or not isinstance(image.get("path"), str):
            raise OtaError("image must be {path, sha256, size}")
        size = image.get("size")
        if not isinstance(size, int) or size <= 0:
            raise OtaError("image needs its size")
        target = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
        blocks = target.ioctl(4, 0)  # block count
        if size > blocks * IMAGE_BLOCK:
            raise OtaError("image of %d bytes does not fit the partition" % size)
        h = hashlib.sha256()
        buf = bytearray(IMAGE_BLOCK)
        state = [0, 0]  # bytes in buf, next block

        def sink(chunk):
            h.update(chunk)
            pos = 0
            while pos < len(chunk):
                n = min(IMAGE_BLOCK - state[0], len(chunk) - pos)
                buf[state[0]:state[0] + n] = chunk[pos:pos + n]
                state[0] += n
                pos += n
                if state[0] == IMAGE_BLOCK:
                    target.writeblocks(state[1], buf)
                    state[1] += 1
                    state[0] = 0

        base = base_url if base_url.endswith("/") else base_url + "/"
        got = await http_get(base + image["path"], sink, size)
        if state[0]:
            for i in range(state[0], IMAGE_BLOCK):
                buf[i] = 0xFF
            target.writeblocks(state[1], buf)
        if got != size or hexlify(h.digest()).decode() != image.get("sha256", "").lower():
            raise OtaError("firmware image does not match its sha256")
        target.set_boot()

    def confirm(self):
        """Tell the bootloader the running image works; without this it rolls back at the next reset."""
        esp32.Partition.mark_app_valid_cancel_rollback()
