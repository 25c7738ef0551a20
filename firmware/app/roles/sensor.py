"""Environment sensor node: reads each configured sensor every telemetry period and publishes the
readings; a sensor that fails is named in `faults` with the kind of failure, never sent as a reading."""

import asyncio

from app.drivers import NO_ANSWER, STUCK, SensorError
from protocol import messages

# Failed reads in a row before the sensor_fault alarm is raised; one bad read is often noise on the bus.
FAULT_READS = 2


def _driver(name, hal):
    if name in ("sht4x", "sht3x"):
        from app.drivers.sht4x import Sht3x, Sht4x

        return (Sht4x if name == "sht4x" else Sht3x)(hal.i2c())
    if name == "scd4x":
        from app.drivers.scd4x import Scd4x

        return Scd4x(hal.i2c())
    if name == "bh1750":
        from app.drivers.bh1750 import Bh1750

        return Bh1750(hal.i2c())
    if name == "pms5003":
        from app.drivers.pms5003 import Pms5003

        return Pms5003(hal.pms_uart())
    from app.drivers.mic import Microphone

    return Microphone(hal.mic_adc())


class SensorNode:
    """The sensor node role."""

    def __init__(self, device):
        self.device = device
        self.drivers = [_driver(name, device.hal) for name in device.cfg["sensors"]]
        n = len(self.drivers)
        self._last_raw = [None] * n
        self._same = [0] * n
        self._fails = [0] * n
        self._alarm = None
        self.last_faults = {}
        self.reads_ok = 0

    def tasks(self):
        return [("sensors", self._loop)]

    async def command(self, name, args):
        return None

    async def selftest(self):
        """Ok when at least one sensor reads; a node with every sensor dead is not working."""
        readings, faults = await self.sample()
        if readings or not self.drivers:
            return None
        return "no sensor answers: " + ",".join("%s:%s" % (k, faults[k]) for k in faults)

    async def sample(self):
        """(readings, faults) of one pass over every sensor."""
        readings = {}
        faults = {}
        stuck_after = self.device.cfg["stuck_reads"] - 1
        for i in range(len(self.drivers)):
            drv = self.drivers[i]
            try:
                got = await drv.read()
            except SensorError as exc:
                got = exc
            except OSError:
                got = SensorError(NO_ANSWER)
            if got is None:
                continue
            if not isinstance(got, SensorError) and drv.CHECK_STUCK:
                raw = got[1]
                self._same[i] = self._same[i] + 1 if raw == self._last_raw[i] else 0
                self._last_raw[i] = raw
                if self._same[i] >= stuck_after:
                    got = SensorError(STUCK)
            if isinstance(got, SensorError):
                faults[drv.NAME] = got.kind
                self._fails[i] += 1
                self.device.errors["sensor_faults"] += 1
            else:
                self._fails[i] = 0
                self.reads_ok += 1
                for name in got[0]:
                    readings[name] = got[0][name]
        self.last_faults = faults
        return readings, faults

    def _update_alarm(self, faults):
        failing = []
        for i in range(len(self.drivers)):
            if self._fails[i] >= FAULT_READS:
                name = self.drivers[i].NAME
                failing.append("%s:%s" % (name, faults.get(name, "fault")))
        detail = ",".join(failing) if failing else None
        if detail != self._alarm:
            if detail is None:
                self.device.alarm(messages.SENSOR_FAULT, "clear")
            else:
                self.device.alarm(messages.SENSOR_FAULT, "raise", detail)
            self._alarm = detail

    async def _loop(self):
        while True:
            readings, faults = await self.sample()
            self._update_alarm(faults)
            fields = {"readings": readings}
            if faults:
                fields["faults"] = faults
            await self.device.send_sample(messages.TELEMETRY, fields)
            await asyncio.sleep(self.device.cfg["telemetry_s"])
