"""The real firmware on the MicroPython unix port against a real Mosquitto: presence, health, card taps,
end-to-end event delivery, reboot survival and commands."""

from __future__ import annotations

import time

import pytest

from protocol import messages, topics
from simulator.firmware import EXIT_RESTART
from simulator.observer import Observer
from tests.firmware.helpers import DEVICE, SCHOOL, WAIT_S

pytestmark = pytest.mark.slow

CARD = "04a1b2c3"


def _poll(condition, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_birth_is_retained_on_status_with_boot_facts(launch, observer, broker):
    launch(role="attendance", fw="fw-test", app="app-test")
    birth = observer.wait_for(messages.BIRTH, DEVICE)[0]
    msg = birth.msg
    assert birth.topic == topics.up(SCHOOL, DEVICE, topics.STATUS)
    assert messages.is_boot_id(msg["boot"])
    assert (msg["role"], msg["fw"], msg["app"]) == ("attendance", "fw-test", "app-test")
    assert msg["reset"] == "power_on"
    assert msg["health_s"] == 1 and msg["clock_ok"] is True
    assert abs(msg["ts"] - time.time()) < 60

    late = Observer(broker.port, SCHOOL)
    try:
        retained = late.wait_for(messages.BIRTH, DEVICE)[0]
    finally:
        late.stop()
    assert retained.retain and retained.msg == msg


def test_health_reports_heap_rssi_errors_and_buffer(launch, observer):
    launch()
    first, second = observer.wait_for(messages.HEALTH, DEVICE, count=2)[:2]
    msg = second.msg
    assert msg["heap_free"] > 0 and msg["heap_max_block"] > 0 and msg["rssi"] == -55
    assert msg["buffered"] == 0
    assert {"mqtt_reconnects", "events_dropped", "bad_commands"} <= set(msg["errors"])
    assert second.msg["seq"] > first.msg["seq"] and second.msg["boot"] == first.msg["boot"]
    assert msg["uptime_s"] >= 1


def test_tap_is_resent_until_the_gateway_acks_it(launch, observer, hwbus):
    launch()
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    # A tap taken before the link is up goes out as a replay (hist true); this one must not.
    observer.wait_for(messages.BIRTH, DEVICE)
    assert hwbus.tap(DEVICE, CARD.upper()) == "ok"
    first = observer.wait_for(messages.ATTENDANCE, DEVICE)[0].msg
    assert first["card"] == CARD and first["hist"] is False and first["clock_ok"] is True
    key = {"boot": first["boot"], "seq": first["seq"]}

    resent = observer.wait_for(messages.ATTENDANCE, DEVICE, count=2, **key)[1].msg
    assert resent["hist"] is True and resent["ts"] == first["ts"] and resent["card"] == CARD

    observer.event_ack(DEVICE, observer.select(messages.ATTENDANCE, DEVICE, **key)[:1])
    drained = observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["buffered"] == 0
                                and r.msg["seq"] > first["seq"])[-1]
    sent = len(observer.select(messages.ATTENDANCE, DEVICE, **key))
    # Three more health periods, well over resend_s, without another copy of the acknowledged event.
    observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["seq"] >= drained.msg["seq"] + 3)
    assert len(observer.select(messages.ATTENDANCE, DEVICE, **key)) == sent
    assert hwbus.taps[0][:3] == (DEVICE, CARD.upper(), "ok")


def test_same_card_within_debounce_counts_once(launch, observer, hwbus):
    launch(debounce_s=1)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    assert hwbus.tap(DEVICE, CARD) == "ok"
    assert hwbus.tap(DEVICE, CARD) == "ignored"
    assert hwbus.tap(DEVICE, "04d4e5f6a7b8c9") == "ok"
    _poll(lambda: hwbus.tap(DEVICE, CARD) == "ok", what="debounce to expire")
    cards = [r.msg["card"] for r in observer.wait_for(messages.ATTENDANCE, DEVICE, count=3, hist=False)]
    assert sorted(cards) == sorted([CARD, CARD, "04d4e5f6a7b8c9"])
    assert [t[2] for t in hwbus.taps].count("ignored") >= 1


def test_bad_uid_is_refused_by_the_reader(launch, hwbus):
    launch()
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    assert hwbus.tap(DEVICE, "xyz") == "ignored"


def test_pending_events_survive_kill_and_replay_with_their_key(launch, observer, hwbus, broker):
    proc = launch(resend_s=300)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    observer.wait_for(messages.BIRTH, DEVICE)
    cards = ["04000001", "04000002", "04000003"]
    for card in cards:
        assert hwbus.tap(DEVICE, card) == "ok"
    sent = observer.wait_for(messages.ATTENDANCE, DEVICE, count=3)
    boot = sent[0].msg["boot"]
    observer.event_ack(DEVICE, sent[:1])
    observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["buffered"] == 2)

    proc.kill()
    will = observer.wait_for(messages.WILL, DEVICE)[0]
    assert will.msg == messages.will(DEVICE, boot)
    late = Observer(broker.port, SCHOOL)
    try:
        assert late.wait_for(messages.WILL, DEVICE)[0].retain
    finally:
        late.stop()

    proc.start()
    births = observer.wait_for(messages.BIRTH, DEVICE, count=2)
    assert births[1].msg["boot"] != boot and births[1].msg["reset"] == "power_on"
    replayed = observer.wait_for(messages.ATTENDANCE, DEVICE, count=2, boot=boot, hist=True)
    expected = {(s.msg["seq"], s.msg["card"]) for s in sent[1:]}
    assert {(r.msg["seq"], r.msg["card"]) for r in replayed} == expected
    assert sent[0].msg["seq"] not in {r.msg["seq"] for r in replayed}
    observer.event_ack(DEVICE, replayed)
    observer.wait_for(messages.HEALTH, DEVICE,
                      where=lambda r: r.msg["boot"] != boot and r.msg["buffered"] == 0)


def test_commands_are_acked_as_events(launch, observer):
    launch()
    birth = observer.wait_for(messages.BIRTH, DEVICE)[0]
    now = time.time()
    observer.send(DEVICE, topics.COMMAND, messages.command("c-old", "ping", {}, now - 10))
    observer.send(DEVICE, topics.COMMAND, messages.command("c-ping", "ping", {}, now + 60))
    observer.send(DEVICE, topics.COMMAND, messages.command("c-what", "dance", {}, now + 60))
    observer.send(DEVICE, topics.COMMAND, b"{not json")
    observer.send(DEVICE, topics.COMMAND, b'{"v":1,"kind":"cmd","cid":"c-x"}')

    results = {}
    for cid, expected in (("c-old", "expired"), ("c-ping", "ok"), ("c-what", "rejected")):
        ack = observer.wait_for(messages.ACK, DEVICE, cid=cid, hist=False)[0]
        assert ack.topic == topics.up(SCHOOL, DEVICE, topics.ACK)
        assert ack.msg["boot"] == birth.msg["boot"]
        results[cid] = ack.msg["result"]
        assert results[cid] == expected
    health = observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["errors"]["bad_commands"] >= 2)
    assert health[-1].msg["errors"]["bad_commands"] == 2


def test_reboot_command_acks_then_exits_for_restart(launch, observer):
    proc = launch(resend_s=300)
    birth = observer.wait_for(messages.BIRTH, DEVICE)[0]
    observer.send(DEVICE, topics.COMMAND, messages.command("c-boot", "reboot", {}, time.time() + 60))
    ack = observer.wait_for(messages.ACK, DEVICE, cid="c-boot")[0]
    assert ack.msg["result"] == "ok"
    assert proc.wait(WAIT_S) == EXIT_RESTART

    proc.start()
    reborn = observer.wait_for(messages.BIRTH, DEVICE, count=2)[1]
    assert reborn.msg["reset"] == "soft" and reborn.msg["boot"] != birth.msg["boot"]
    replay = observer.wait_for(messages.ACK, DEVICE, cid="c-boot", hist=True)[0]
    assert (replay.msg["boot"], replay.msg["seq"]) == (ack.msg["boot"], ack.msg["seq"])


def test_device_reconnects_after_broker_restart_and_replays(launch, observer, hwbus, broker):
    launch()
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    birth = observer.wait_for(messages.BIRTH, DEVICE)[0]
    broker.stop()
    assert hwbus.tap(DEVICE, CARD) == "ok"
    broker.start()
    # The observer's own reconnect may trail the device's, so the replay itself can go unseen; the
    # resend after resend_s then shows the event, still with its first boot's key.
    observer.wait_for(messages.BIRTH, DEVICE, count=2)
    event = observer.wait_for(messages.ATTENDANCE, DEVICE, card=CARD, hist=True)[0]
    assert event.msg["boot"] == birth.msg["boot"]
    observer.wait_for(messages.HEALTH, DEVICE, where=lambda r: r.msg["errors"]["mqtt_reconnects"] >= 1)


def test_one_vm_hosts_several_devices(launch, observer, hwbus):
    ids = [DEVICE, "esp32-0a0b0c0d0e0f"]
    launch(device_ids=ids)
    for dev in ids:
        assert hwbus.wait_connected(dev, WAIT_S)
        assert hwbus.tap(dev, CARD) == "ok"
    for dev in ids:
        observer.wait_for(messages.BIRTH, dev)
        assert observer.wait_for(messages.ATTENDANCE, dev)[0].msg["card"] == CARD
        observer.wait_for(messages.HEALTH, dev)


def test_device_without_hardware_bus_still_reports(launch, observer):
    launch(hwbus=None)
    observer.wait_for(messages.BIRTH, DEVICE)
    observer.wait_for(messages.HEALTH, DEVICE)


def test_full_buffer_taken_offline_replays_within_the_heap(launch, observer, hwbus, broker):
    broker.stop()
    launch(resend_s=2)
    assert hwbus.wait_connected(DEVICE, WAIT_S)
    results = [hwbus.tap(DEVICE, f"{0x04000000 + i:08x}") for i in range(260)]
    assert results.count("ok") == 256 and results[256:] == ["ignored"] * 4
    broker.start()
    # The observer reconnects on its own schedule and may miss the replay itself; the resends after
    # resend_s carry the same keys.
    observer.wait_for(messages.ATTENDANCE, DEVICE, hist=True, timeout=60,
                      where=lambda r: len({x.msg["seq"] for x in observer.select(
                          messages.ATTENDANCE, DEVICE)}) == 256)
    replayed = list({r.msg["seq"]: r for r in observer.select(messages.ATTENDANCE, DEVICE)}.values())
    assert len(replayed) == 256 and all(r.msg["hist"] for r in replayed)
    health = observer.wait_for(messages.HEALTH, DEVICE)[-1].msg
    assert health["buffered"] == 256 and health["errors"]["events_dropped"] == 4
    assert health["errors"]["internal"] == 0
    # Like a gateway: acknowledge in small batches (a 128-key eack alone needs ~10 KB of heap to
    # decode on the 64-bit port) and acknowledge again whatever comes again.
    deadline = time.monotonic() + 60
    while observer.select(messages.HEALTH, DEVICE)[-1].msg["buffered"] and time.monotonic() < deadline:
        for start in range(0, 256, 32):
            observer.event_ack(DEVICE, replayed[start:start + 32])
        seen = len(observer.select(messages.HEALTH, DEVICE))
        observer.wait_for(messages.HEALTH, DEVICE, count=seen + 2)
    assert observer.select(messages.HEALTH, DEVICE)[-1].msg["buffered"] == 0
