"""MQTT client checks on MicroPython against a scripted fake broker: exact bytes on the wire.

`micropython check_mqtt.py PORT [PORT ...]` with free TCP ports (the port cannot tell which port a
server got); exit 0 when all pass.
"""

import asyncio
import sys

from app.mqtt import MQTTClient, MQTTError

PORTS = [int(p) for p in sys.argv[1:]]


class FakeBroker:
    """Accepts one connection at a time, records what it reads, answers from a script."""

    def __init__(self):
        self.got = bytearray()
        self.replies = []
        self.server = None
        self.writer = None

    async def _serve(self, reader, writer):
        self.writer = writer
        try:
            while True:
                data = await reader.read(512)
                if not data:
                    break
                self.got.extend(data)
                while self.replies:
                    writer.write(self.replies.pop(0))
                await writer.drain()
        except OSError:
            # The check closed this end itself to play a broker that hangs up.
            pass


async def open_pair(connack=b"\x20\x02\x00\x00", **kwargs):
    port = PORTS.pop()
    broker = FakeBroker()
    broker.server = await asyncio.start_server(broker._serve, "127.0.0.1", port)
    broker.replies.append(connack)
    client = MQTTClient("dev1", "127.0.0.1", port, **kwargs)
    return broker, client


async def close_pair(broker, client):
    client.close()
    broker.server.close()
    await broker.server.wait_closed()


async def check_connect_bytes():
    broker, client = await open_pair(user="u", password="pw", keepalive=30)
    client.set_will("t/w", b"bye", retain=True, qos=1)
    await client.connect()
    want = (b"\x10\x21\x00\x04MQTT\x04\xee\x00\x1e" + b"\x00\x04dev1" + b"\x00\x03t/w" + b"\x00\x03bye"
            + b"\x00\x01u" + b"\x00\x02pw")
    assert bytes(broker.got) == want, bytes(broker.got)
    assert client.connected
    await close_pair(broker, client)


async def check_refused_connack_raises():
    broker, client = await open_pair(connack=b"\x20\x02\x00\x05")
    try:
        await client.connect()
        raise AssertionError("connect should fail")
    except MQTTError as exc:
        assert exc.code == 5
    await close_pair(broker, client)


async def check_publish_subscribe_and_acks():
    seen = []
    broker, client = await open_pair(on_message=lambda t, p: seen.append((t, p)))
    await client.connect()
    broker.got = bytearray()
    # A retained QoS 1 message overtakes the SUBACK; subscribe() must handle and acknowledge it.
    broker.replies.append(b"\x32\x09\x00\x03a/b\x00\x07hi" + b"\x90\x03\x00\x01\x01")
    assert await client.subscribe("a/#", 1) == 1
    await asyncio.sleep_ms(50)
    assert bytes(broker.got) == b"\x82\x08\x00\x01\x00\x03a/#\x01" + b"\x40\x02\x00\x07", bytes(broker.got)
    assert seen == [("a/b", b"hi")], seen

    runner = asyncio.create_task(client.run())
    broker.got = bytearray()
    pid = await client.publish("x/y", b"data", retain=True, qos=1)
    assert pid == 2 and not client.acked(pid)
    await asyncio.sleep_ms(50)
    assert bytes(broker.got) == b"\x33\x0b\x00\x03x/y\x00\x02data", bytes(broker.got)
    broker.writer.write(b"\x40\x02\x00\x02")
    await broker.writer.drain()
    assert await client.wait_acked(pid, 1000)
    broker.got = bytearray()
    assert await client.publish("x/y", b"q0") == 0
    await asyncio.sleep_ms(50)
    assert bytes(broker.got) == b"\x30\x07\x00\x03x/yq0", bytes(broker.got)

    # The broker hangs up: run() ends with OSError.
    broker.writer.close()
    broker.writer.s.close()
    try:
        await asyncio.wait_for(runner, 2)
        raise AssertionError("run should fail")
    except OSError:
        pass
    assert not client.connected
    await close_pair(broker, client)


async def check_abort_ends_run_with_oserror():
    broker, client = await open_pair()
    await client.connect()
    runner = asyncio.create_task(client.run())
    await asyncio.sleep_ms(20)
    client.abort(110)
    try:
        await asyncio.wait_for(runner, 2)
        raise AssertionError("run should fail")
    except OSError as exc:
        assert exc.args[0] == 110, exc.args
    await close_pair(broker, client)


async def main():
    failed = 0
    for name in sorted(globals()):
        if name.startswith("check_"):
            try:
                await globals()[name]()
                print("ok", name)
            except Exception as exc:
                failed += 1
                print("FAIL", name)
                sys.print_exception(exc)
    return failed


sys.exit(1 if asyncio.run(main()) else 0)
