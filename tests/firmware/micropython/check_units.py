"""Schedule, display protocol and drivers against the fake parts, on MicroPython:
`micropython check_units.py WORKDIR`; exit 0 when all pass."""

import asyncio
import sys

from app.drivers import SensorError
from app.drivers.bh1750 import Bh1750
from app.drivers.mic import Microphone
from app.drivers.pms5003 import Pms5003
from app.drivers.rc522 import Rc522, ReaderError, crc_a
from app.drivers.scd4x import Scd4x
from app.drivers.sht4x import Sht3x, Sht4x
from app.ringbuf import RingBuffer
from app.schedule import Schedule, days_from_civil
from hal import fakes

from protocol import display

WORK = sys.argv[1]
# 2026-11-23 (a Monday) 00:00 in Asia/Shanghai, as Unix time.
MONDAY = days_from_civil(2026, 11, 23) * 86400 - 8 * 3600


def run(coro):
    return asyncio.run(coro)


def check_days_from_civil():
    assert days_from_civil(1970, 1, 1) == 0
    assert days_from_civil(2000, 3, 1) == 11017
    assert days_from_civil(2026, 11, 23) == 20780


def check_schedule_week_holidays_and_makeup():
    s = Schedule({"week": [["12345", "07:30", "12:00"], ["12345", "13:30", "17:30:30"]],
                  "holidays": ["2026-11-25", ["2026-11-27", "2026-11-28"]],
                  "makeup": [["2026-11-29", 1]]}, 480)
    assert s.state(MONDAY + 7 * 3600) == (False, MONDAY + 7 * 3600 + 1800)
    assert s.state(MONDAY + 8 * 3600) == (True, MONDAY + 12 * 3600)
    assert s.state(MONDAY + 17 * 3600 + 1830) == (False, MONDAY + 86400 + 7 * 3600 + 1800)
    wednesday = MONDAY + 2 * 86400
    assert s.state(wednesday + 9 * 3600)[0] is False
    # Friday and Saturday are holidays; Sunday is a make-up Monday.
    on, nxt = s.state(MONDAY + 3 * 86400 + 18 * 3600)
    assert not on and nxt == MONDAY + 6 * 86400 + 7 * 3600 + 1800, (nxt - MONDAY) / 3600
    assert Schedule({}, 480).state(MONDAY) == (False, None)
    for bad in ({"week": [["8", "07:00", "08:00"]]}, {"week": [["1", "09:00", "08:00"]]},
                {"week": [["1", "7:60", "08:00"]]}, {"holidays": ["2026-13-01"]}, {"colour": 1},
                {"makeup": [["2026-11-29", 9]]}, []):
        try:
            Schedule(bad, 480)
        except ValueError:
            continue
        raise AssertionError("accepted " + repr(bad))


def check_display_protocol_round_trip():
    p = display.Parser()
    frames = p.feed(b"\x00junk" + display.power_set(True) + display.input_set("ops")[:3])
    assert frames == [(1, display.POWER_SET, b"\x01")], frames
    assert p.feed(display.input_set("ops")[3:]) == [(1, display.INPUT_SET, b"\x06")]
    status, data = display.parse_reply(p.feed(display.reply(1, display.HOURS_GET, 0,
                                                             display.encode_hours(1234)))[0],
                                       display.HOURS_GET)
    assert status == display.ACK and display.decode_hours(data) == 1234
    bad = bytearray(display.power_get())
    bad[-1] ^= 1
    assert p.feed(bytes(bad)) == [] and p.bad >= 1


def check_sensirion_drivers_against_fakes():
    i2c = fakes.FakeI2C()
    sht, sht3, scd, bh = fakes.Sht4xPart(21.5, 40), fakes.Sht3xPart(30, 70), fakes.Scd4xPart(900), \
        fakes.Bh1750Part(250)
    i2c.parts.update({0x44: sht, 0x45: sht3, 0x62: scd, 0x23: bh})
    r, _ = run(Sht4x(i2c).read())
    assert abs(r["temp_c"] - 21.5) < 0.05 and abs(r["rh_pct"] - 40) < 0.1, r
    r, _ = run(Sht3x(i2c).read())
    assert abs(r["temp_c"] - 30) < 0.05 and abs(r["rh_pct"] - 70) < 0.1, r
    r, _ = run(Scd4x(i2c).read())
    assert abs(r["co2_ppm"] - 900) <= 3, r
    r, _ = run(Bh1750(i2c).read())
    assert abs(r["lux"] - 250) < 2, r
    for part, kind in ((sht, "crc"), (scd, "no_answer")):
        part.set_fault(kind)
    for drv, kind in ((Sht4x(i2c), "crc"), (Scd4x(i2c), "no_answer")):
        try:
            run(drv.read())
        except SensorError as exc:
            assert exc.kind == kind, exc.kind
        else:
            raise AssertionError("no fault from " + drv.NAME)
    sht.set_fault("stuck")
    raws = [run(Sht4x(i2c).read())[1] for _ in range(3)]
    assert raws[0] == raws[1] == raws[2]


def check_uart_and_adc_drivers_against_fakes():
    pms = fakes.Pms5003Part(42)
    r, _ = run(Pms5003(pms).read())
    assert r["pm25_ugm3"] == 42 and r["pm10_ugm3"] == 54, r
    pms.set_fault("crc")
    try:
        run(Pms5003(pms).read())
    except SensorError as exc:
        assert exc.kind == "crc"
    mic = fakes.MicPart(70)
    r, raw = run(Microphone(mic).read())
    assert abs(r["noise_dba"] - 70) < 1.5, r
    mic.set_fault("stuck")
    assert run(Microphone(mic).read())[1] == run(Microphone(mic).read())[1]
    mic.set_fault("no_answer")
    try:
        run(Microphone(mic).read())
    except SensorError as exc:
        assert exc.kind == "no_answer"


def check_rc522_reads_4_7_and_10_byte_uids_once():
    assert crc_a(b"\x50\x00") == b"\x57\xcd"
    part = fakes.Rc522Part()
    reader = Rc522(part, fakes.FakePin())
    reader.init()
    assert reader.read_uid() is None
    for uid in (b"\x04\xa1\xb2\xc3", b"\x04\xa1\xb2\xc3\xd4\xe5\xf6", bytes(range(1, 11))):
        part.present(uid)
        assert reader.read_uid() == uid
        assert reader.read_uid() is None  # halted: the same hold is read once
        part.remove()
    part.fault = "no_answer"
    try:
        reader.version()
    except ReaderError:
        pass
    else:
        raise AssertionError("a silent reader passed its version check")


def check_ring_buffer_spreads_wear_over_every_slot():
    path = WORK + "/wear"
    rb = RingBuffer(path, 8, 64)
    for _lap in range(5):
        for _ in range(8):
            rb.ack(rb.append(b"e"))
        rb.close()
        rb = RingBuffer(path, 8, 64)
    # Every slot holds a record of the last lap: each was written once per lap, none more often.
    numbers = sorted(rb._read_slot(s)[1] for s in range(8))
    assert numbers == list(range(33, 41)), numbers


def main():
    failed = 0
    for name in sorted(globals()):
        if name.startswith("check_"):
            try:
                globals()[name]()
                print("ok", name)
            except Exception as exc:
                failed += 1
                print("FAIL", name)
                sys.print_exception(exc)
    sys.exit(1 if failed else 0)


main()
