"""Commands, configuration, recovery and safe mode on the real firmware."""

from __future__ import annotations

import json
import time

from protocol import messages, topics
from tests.firmware.helpers import DEVICE, SCHOOL, WAIT_S, poll


def _cmd(observer, cid, name, args=None, exp_in=60):
    observer.send(DEVICE, topics.COMMAND, messages.command(cid, name, args or {}, time.time() + exp_in))
    return observer.wait_for(messages.ACK, DEVICE, cid=cid)[0].msg


def test_repeated_command_id_is_answered_not_redone(launch, observer):
    proc = launch(resend_s=300)
    observer.wait_for(messages.BIRTH, DEVICE)
    assert _cmd(observer, "c-boot", "reboot")["result"] == "ok"
    assert proc.wait(WAIT_S) == 3
    proc.start()
    observer.wait_for(messages.BIRTH, DEVICE, count=2)
    # The gateway never saw the ack and sends the reboot again: answered from memory, no second reboot.
    observer.send(DEVICE, topics.COMMAND, messages.command("c-boot", "reboot", {}, time.time() + 60))
    again = observer.wait_for(messages.ACK, DEVICE, cid="c-boot", hist=False, count=2)[-1].msg
    assert again["result"] == "ok"
    assert _cmd(observer, "c-after", "ping")["result"] == "ok"
    assert proc.is_running
    assert len(observer.select(messages.BIRTH, DEVICE)) == 2


def test_expired_and_malformed_commands(launch, observer):
    launch()
    observer.wait_for(messages.BIRTH, DEVICE)
    assert _cmd(observer, "c-late", "power_off", exp_in=-5)["result"] == "expired"
    observer.send(DEVICE, topics.COMMAND, b'{"v":1,"kind":"cmd","cid":"c-x","name":"ping","exp":"soon"}')
    observer.send(DEVICE, topics.COMMAND, b"\xff\xfe")
    observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["errors"]["bad_commands"] == 2)


def test_desired_config_is_applied_kept_and_reported(launch, observer):
    proc = launch(health_s=1)
    observer.wait_for(messages.BIRTH, DEVICE)
    observer.send(DEVICE, topics.CONFIG, messages.config(7, {"health_s": 2, "debounce_s": 1}))
    birth = observer.wait_for(messages.BIRTH, DEVICE, where=lambda r: r.msg.get("config_version") == 7)[0]
    assert birth.msg["health_s"] == 2
    observer.send(DEVICE, topics.CONFIG, messages.config(8, {"broker_port": 1}))
    alarm = observer.wait_for(messages.ALARM, DEVICE, code=messages.CONFIG_REJECTED)[0].msg
    assert "version 8" in alarm["detail"] and "broker_port" in alarm["detail"]
    ack = _cmd(observer, "c-cfg", "set_config", {"version": 9, "values": {"health_s": "often"}})
    assert ack["result"] == "rejected"
    assert _cmd(observer, "c-cfg2", "set_config", {"version": 9, "values": {"resend_s": 5}})["result"] == "ok"
    proc.kill()
    proc.start()
    reborn = observer.wait_for(messages.BIRTH, DEVICE, where=lambda r: r.msg.get("config_version") == 9
                               and r.msg["boot"] != birth.msg["boot"])[-1]
    assert reborn.msg["health_s"] == 2


def test_garbage_config_falls_back_to_the_last_good_one(launch, observer, tmp_path):
    proc = launch()
    first = observer.wait_for(messages.BIRTH, DEVICE)[0]
    config = tmp_path / DEVICE / "config.json"
    assert json.loads((tmp_path / DEVICE / "config.json.good").read_text())["school"] == SCHOOL
    proc.kill()
    config.write_bytes(b'{"device_id": "esp32-a1b2c3d4e5f6", "school": \x00\x17 garbage')
    proc.start()
    observer.wait_for(messages.BIRTH, DEVICE, where=lambda r: r.msg["boot"] != first.msg["boot"])
    alarm = observer.wait_for(messages.ALARM, DEVICE, code=messages.CONFIG_INVALID)[0].msg
    assert "not JSON" in alarm["detail"]


def test_repeated_failed_boots_enter_safe_mode_and_a_reboot_leaves_it(launch, observer, tmp_path):
    flash = tmp_path / DEVICE / "flash"
    flash.mkdir(parents=True)
    (flash / "boots.json").write_text(json.dumps({"failed": 5}))
    proc = launch(safe_after=5)
    birth = observer.wait_for(messages.BIRTH, DEVICE)[0].msg
    assert birth["safe_mode"] is True
    observer.wait_for(messages.ALARM, DEVICE, code=messages.SAFE_MODE, state="raise")
    assert _cmd(observer, "c-ping", "ping")["result"] == "ok"
    assert _cmd(observer, "c-on", "power_on")["detail"] == "safe mode"
    assert _cmd(observer, "c-boot", "reboot", {"normal": True})["result"] == "ok"
    assert proc.wait(WAIT_S) == 3
    proc.start()
    reborn = observer.wait_for(messages.BIRTH, DEVICE, count=2)[-1].msg
    assert "safe_mode" not in reborn
    assert json.loads((tmp_path / DEVICE / "config.json").read_text())["school"] == SCHOOL


def test_wifi_drop_mid_stream_loses_and_doubles_nothing(launch, observer, hwbus):
    proc = launch(resend_s=300, wifi_reset_after=2)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    cards = [f"{0x05000000 + i:08x}" for i in range(20)]
    for i, card in enumerate(cards):
        if i == 7:
            hwbus.set_wifi(DEVICE, False)
        if i == 14:
            # Down long enough for the recovery ladder's Wi-Fi rung (two failed connects).
            poll(lambda: proc.log_text().count("link down") >= 3, what="reconnect attempts")
            hwbus.set_wifi(DEVICE, True)
        assert hwbus.tap(DEVICE, card) == "ok"
    poll(lambda: {r.msg["card"] for r in observer.select(messages.ATTENDANCE, DEVICE)} == set(cards),
         timeout=40, what="every tap")
    got = observer.select(messages.ATTENDANCE, DEVICE)
    keys = {(r.msg["boot"], r.msg["seq"]) for r in got}
    assert len(keys) == len(cards)
    observer.event_ack(DEVICE, got)
    # A health report sent after the last tap (a later seq) with nothing left buffered: one from before
    # the taps has buffered 0 too, and no errors yet.
    last = max(r.msg["seq"] for r in got)
    health = observer.wait_for(messages.HEALTH, DEVICE,
                               where=lambda r: r.msg["buffered"] == 0 and r.msg["seq"] > last)[-1].msg
    assert health["errors"]["mqtt_reconnects"] >= 1 and health["errors"]["wifi_resets"] >= 1


def test_pending_taps_survive_sigkill_none_lost_none_doubled(launch, observer, hwbus, broker):
    # The observer reconnects on its own schedule and may miss the replay; resends carry the same keys.
    proc = launch(resend_s=2)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    broker.stop()
    cards = [f"{0x06000000 + i:08x}" for i in range(30)]
    for card in cards:
        assert hwbus.tap(DEVICE, card) == "ok"
    proc.kill()
    broker.start()
    proc.start()
    poll(lambda: {r.msg["card"] for r in observer.select(messages.ATTENDANCE, DEVICE)} == set(cards),
         timeout=40, what="every tap replayed")
    got = observer.select(messages.ATTENDANCE, DEVICE)
    assert all(r.msg["hist"] for r in got)
    assert len({(r.msg["boot"], r.msg["seq"]) for r in got}) == len(cards)
    observer.event_ack(DEVICE, got)
    # Drained: a health report of the restarted boot (whose buffer starts with the taps) with none left.
    boot = observer.select(messages.BIRTH, DEVICE)[-1].msg["boot"]
    observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["buffered"] == 0 and r.msg["boot"] == boot)


def test_recovery_ladder_reboots_a_device_offline_too_long(launch, observer, broker, hwbus):
    proc = launch(reboot_after_s=3, wifi_reset_after=1)
    first = observer.wait_for(messages.BIRTH, DEVICE)[0].msg
    broker.stop()
    assert proc.wait(WAIT_S) == 3
    assert "restarting: offline for 3 s" in proc.log_text()
    broker.start()
    proc.start()
    reborn = observer.wait_for(messages.BIRTH, DEVICE, where=lambda r: r.msg["boot"] != first["boot"])[0].msg
    assert reborn["reset"] == "soft"
