"""The three roles on the real firmware: sensor node, attendance terminal, blackboard controller."""

from __future__ import annotations

import time

from protocol import messages, topics
from tests.firmware.helpers import DEVICE, WAIT_S, poll


def _telemetry(observer, where, timeout=WAIT_S):
    return observer.wait_for(messages.TELEMETRY, DEVICE, where=where, timeout=timeout)[-1].msg


def _cmd(observer, cid, name, args=None, exp_in=60):
    observer.send(DEVICE, topics.COMMAND, messages.command(cid, name, args or {}, time.time() + exp_in))
    return observer.wait_for(messages.ACK, DEVICE, cid=cid, timeout=WAIT_S)[0].msg


def test_sensor_node_reports_readings_from_every_driver(launch, observer, hwbus):
    launch(role="sensor", telemetry_s=0.5)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    hwbus.set_sensor(DEVICE, "sht4x", "24.5,51")
    hwbus.set_sensor(DEVICE, "scd4x", 1234)
    hwbus.set_sensor(DEVICE, "pms5003", 35)
    hwbus.set_sensor(DEVICE, "bh1750", 420)
    hwbus.set_sensor(DEVICE, "mic", 62)
    # A pass over the sensors may straddle the settings; wait for one that saw them all.
    msg = _telemetry(observer, lambda r: r.msg["readings"].get("temp_c", 0) > 24
                     and r.msg["readings"].get("co2_ppm", 0) > 1200 and r.msg["readings"].get("pm25_ugm3") == 35
                     and r.msg["readings"].get("noise_dba", 0) > 55)
    r = msg["readings"]
    assert abs(r["temp_c"] - 24.5) < 0.1 and abs(r["rh_pct"] - 51) < 0.5
    assert abs(r["co2_ppm"] - 1234) <= 3 and abs(r["lux"] - 420) < 2
    assert abs(r["noise_dba"] - 62) < 1.5
    assert "faults" not in msg


def test_sensor_faults_are_errors_not_readings_and_raise_an_alarm(launch, observer, hwbus):
    launch(role="sensor", telemetry_s=0.3, stuck_reads=4)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.TELEMETRY, DEVICE)
    hwbus.sensor_fault(DEVICE, "scd4x", "crc")
    hwbus.sensor_fault(DEVICE, "sht4x", "no_answer")
    hwbus.sensor_fault(DEVICE, "mic", "stuck")
    msg = _telemetry(observer, lambda r: len(r.msg.get("faults", {})) == 3)
    assert msg["faults"] == {"scd4x": "crc", "sht4x": "no_answer", "mic": "stuck"}
    assert not {"co2_ppm", "temp_c", "rh_pct", "noise_dba"} & set(msg["readings"])
    assert {"lux", "pm25_ugm3"} <= set(msg["readings"])
    alarm = observer.wait_for(messages.ALARM, DEVICE, code=messages.SENSOR_FAULT, state="raise",
                              where=lambda r: r.msg["detail"].count(":") == 3)[-1].msg
    assert "scd4x:crc" in alarm["detail"] and "mic:stuck" in alarm["detail"]
    for name in ("scd4x", "sht4x", "mic"):
        hwbus.sensor_fault(DEVICE, name, "none")
    observer.wait_for(messages.ALARM, DEVICE, code=messages.SENSOR_FAULT, state="clear")
    health = observer.wait_for(messages.HEALTH, DEVICE)[-1].msg
    assert health["errors"]["sensor_faults"] >= 3


def test_attendance_feedback_and_seven_byte_uid(launch, observer, hwbus):
    launch(debounce_s=30)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    assert hwbus.tap(DEVICE, "04a1b2c3d4e5f6") == "ok"
    assert hwbus.wait_output(DEVICE, "feedback", "ok", WAIT_S)
    assert hwbus.tap(DEVICE, "04a1b2c3d4e5f6") == "ignored"
    assert hwbus.wait_output(DEVICE, "feedback", "dup", WAIT_S)
    assert hwbus.tap(DEVICE, "0102030405060708090a") == "ok"
    cards = {r.msg["card"] for r in observer.wait_for(messages.ATTENDANCE, DEVICE, count=2)}
    assert cards == {"04a1b2c3d4e5f6", "0102030405060708090a"}


def test_card_reader_fault_raises_and_clears_its_alarm(launch, observer, hwbus):
    launch()
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    hwbus.reader_fault(DEVICE, "no_answer")
    assert hwbus.tap(DEVICE, "04a1b2c3") == "ignored"
    observer.wait_for(messages.ALARM, DEVICE, code=messages.READER_FAULT, state="raise")
    hwbus.reader_fault(DEVICE, "none")
    poll(lambda: hwbus.tap(DEVICE, "04a1b2c3") == "ok", what="reader back")
    observer.wait_for(messages.ALARM, DEVICE, code=messages.READER_FAULT, state="clear")


def _blackboard(launch, display, **fields):
    settings = {"role": "blackboard", "display_port": display.port, "relay_off_delay_s": 0,
                "display_boot_s": 3, "display_poll_s": 1, "sense_grace_s": 2, "telemetry_s": 0.5}
    settings.update(fields)
    return launch(**settings)


def test_blackboard_power_input_and_usage(launch, observer, hwbus, display):
    _blackboard(launch, display, display_input="ops")
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    assert _cmd(observer, "c-on", "power_on")["result"] == "ok"
    assert display.power and display.mains and display.source == "ops"
    assert hwbus.output(DEVICE, "relay") == "1"
    assert _cmd(observer, "c-in", "set_input", {"source": "hdmi2"})["result"] == "ok"
    assert display.source == "hdmi2"
    assert _cmd(observer, "c-in-bad", "set_input", {"source": "scart"})["result"] == "rejected"
    # A sample taken while the display was still starting knows no input yet: wait for the input set.
    msg = _telemetry(observer, lambda r: r.msg["readings"]["power"] == 1 and r.msg["readings"].get("input") == 2
                     and r.msg["readings"]["usage_h"] > 0)
    assert msg["readings"]["relay"] == 1
    assert _cmd(observer, "c-off", "power_off")["result"] == "ok"
    assert not display.power
    assert display.wait(lambda d: not d.mains, WAIT_S)
    _telemetry(observer, lambda r: r.msg["readings"]["power"] == 0 and r.msg["readings"]["relay"] == 0)


def test_blackboard_display_faults_raise_alarms(launch, observer, hwbus, display):
    _blackboard(launch, display)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    display.inject("no_power_on")
    ack = _cmd(observer, "c-on1", "power_on")
    assert ack["result"] == "error" and "refused" in ack["detail"]
    observer.wait_for(messages.ALARM, DEVICE, code=messages.DISPLAY_POWER_FAULT, state="raise")
    display.heal()
    display.inject("no_answer")
    ack = _cmd(observer, "c-on2", "power_on")
    assert ack["result"] == "error" and "no_answer" in ack["detail"]
    observer.wait_for(messages.ALARM, DEVICE, code=messages.DISPLAY_NO_ANSWER, state="raise")
    display.heal()
    assert _cmd(observer, "c-on3", "power_on")["result"] == "ok"
    observer.wait_for(messages.ALARM, DEVICE, code=messages.DISPLAY_NO_ANSWER, state="clear")
    # Someone switches the panel off with its own button: power sense disagrees with the command.
    display.press_power(False)
    observer.wait_for(messages.ALARM, DEVICE, code=messages.DISPLAY_POWER_MISMATCH, state="raise")


def _local_hms(t, tz_min=480):
    local = int(t) + tz_min * 60
    return time.strftime("%H:%M:%S", time.gmtime(local)), time.gmtime(local).tm_wday + 1


def test_schedule_runs_with_the_broker_down_and_state_survives_a_kill(launch, observer, hwbus, display,
                                                                     broker):
    now = time.time()
    on_at, weekday = _local_hms(now + 6)
    off_at, _ = _local_hms(now + 3600)
    if off_at < on_at:
        off_at = "24:00"
    schedule = {"week": [[str(weekday), on_at, off_at]], "holidays": ["2001-01-01"]}
    proc = _blackboard(launch, display, schedule=schedule)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    broker.stop()
    assert not display.power
    assert display.wait(lambda d: d.power, 30), "the schedule did not switch the board on"
    proc.kill()
    proc.start()
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    # Restored from flash and the schedule, with no broker: stays on; a manual off holds after a kill.
    assert display.wait(lambda d: d.power and d.mains, 10)
    broker.start()
    observer.wait_for(messages.BIRTH, DEVICE, count=2, timeout=40)
    assert _cmd(observer, "c-off", "power_off")["result"] == "ok"
    proc.kill()
    proc.start()
    observer.wait_for(messages.BIRTH, DEVICE, count=3, timeout=40)
    _telemetry(observer, lambda r: r.msg["boot"] == observer.select(messages.BIRTH, DEVICE)[-1].msg["boot"]
               and r.msg["readings"]["want"] == 0)
    assert not display.power


def test_schedule_command_validates(launch, observer, hwbus, display):
    _blackboard(launch, display)
    observer.wait_for(messages.BIRTH, DEVICE)
    bad = _cmd(observer, "c-s1", "set_schedule", {"schedule": {"week": [["8", "07:00", "08:00"]]}})
    assert bad["result"] == "rejected" and "days" in bad["detail"]
    good = _cmd(observer, "c-s2", "set_schedule", {"schedule": {"week": [["12345", "07:30", "17:30"]]}})
    assert good["result"] == "ok"
    assert _cmd(observer, "c-s3", "power_on", {"until": "soon"})["result"] == "rejected"


def test_role_commands_are_refused_by_other_roles(launch, observer):
    launch(role="attendance")
    observer.wait_for(messages.BIRTH, DEVICE)
    ack = _cmd(observer, "c-x", "power_on")
    assert ack["result"] == "rejected" and ack["detail"] == "not for this role"
