"""Gateway flood: how long a well-behaved device waits for its eacks while another device floods.

A real Mosquitto runs on the files `classops gateway mosquitto-config` writes and a real gateway process on
it, with the flood guard as shipped (`[broker] device_rate_per_s`, `device_burst` at their defaults). One
device with valid credentials sends attendance taps over a raw socket as fast as the socket takes them,
at QoS 0 in one run and QoS 1 in another, while a quiet device taps at QoS 1 at a student's pace and times
each tap until the gateway's eack names it (`simulator/hostile.py`). Each run prints

`flood_qos=<0|1> guard=on flood_msgs_per_s=<n> flood_msgs_dropped=<n> quiet_taps_acked=<n>/<n>
quiet_eack_latency_p50_s=<s> quiet_eack_latency_p99_s=<s> quiet_eack_latency_max_s=<s>`

- flood_msgs_per_s: the flooder's messages written to the broker from the first quiet tap to the last
  eack, over that time;
- flood_msgs_dropped: the gateway's `messages_rejected_total{reason="flood"}` at the end of the run;
- quiet_taps_acked: the quiet taps an eack named by the end of the run (ACK_DEADLINE_S after the last);
- the latencies, of those taps: from a tap's publishing to the eack that names it, end to end through
  the broker, the gateway's store commit and back.

The runs with `guard=off` are the same with a burst no flood empties in a run, for comparison: every
flood message then reaches the store. The gateway's cloud is unreachable; records stay in its backlog.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from gateway.config import BrokerSettings
from simulator.hostile import FloodedSchool, Flooder, QuietDevice, latency_figures
from simulator.stack import wait_for

SCHOOL = "BENCHF1"
LOUD = "esp32-aaaaaaaaaaaa"
QUIET = "esp32-bbbbbbbbbbbb"
# A bucket that a flood of 100,000 messages a second would take hours to empty: no guard, in effect.
UNGUARDED_BURST = 10**9
# How long the quiet device's last taps may wait for their eacks before the run is reported as it stands.
ACK_DEADLINE_S = 30.0


def run(root: Path, *, qos: int, burst: int, taps: int, tap_every_s: float) -> str:
    """One flood with the quiet device tapping through it; its figures as one line of name=value."""
    school = FloodedSchool(root, school=SCHOOL, devices=[LOUD, QUIET],
                           rate_per_s=BrokerSettings().device_rate_per_s, burst=burst)
    flooder = Flooder(school.broker.port, SCHOOL, LOUD, school.password(LOUD), qos)
    quiet: QuietDevice | None = None
    try:
        school.start()
        quiet = QuietDevice(school.broker.port, SCHOOL, QUIET, school.password(QUIET))
        wait_for(quiet.ready.is_set, 30, "the quiet device's subscription")
        flooder.start()
        began, sent_before = time.monotonic(), flooder.sent
        for seq in range(1, taps + 1):
            quiet.tap(seq)
            time.sleep(tap_every_s)  # a student's pace
        try:
            wait_for(lambda: quiet.all_acked() or not flooder.alive, ACK_DEADLINE_S, "the quiet device's eacks")
        except TimeoutError:
            pass  # reported below as fewer taps acked than sent
        if not flooder.alive:
            raise RuntimeError("the flooder stopped before the quiet device's last eack")
        flooded = flooder.sent - sent_before
        elapsed = time.monotonic() - began
        dropped = school.metric('messages_rejected_total{reason="flood"}')
        latencies = quiet.latencies()
    finally:
        flooder.stop()
        if quiet is not None:
            quiet.close()
        school.stop()
    return (f"flood_qos={qos} guard={'off' if burst == UNGUARDED_BURST else 'on'} "
            f"flood_msgs_per_s={flooded / elapsed:.0f} flood_msgs_dropped={dropped:.0f} "
            f"quiet_taps_acked={len(latencies)}/{taps} "
            + (latency_figures(latencies) if latencies else "quiet_eack_latency_max_s=inf"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taps", type=int, default=80, help="the quiet device's taps in each run")
    parser.add_argument("--tap-every", type=float, default=0.25, help="seconds between the quiet taps")
    parser.add_argument("--no-unguarded", action="store_true", help="skip the runs without the flood guard")
    parser.add_argument("--small", action="store_true", help="a quick run that only shows the bench works")
    args = parser.parse_args()
    burst = BrokerSettings().device_burst
    runs = [(0, burst), (1, burst)] + ([] if args.no_unguarded else [(0, UNGUARDED_BURST), (1, UNGUARDED_BURST)])
    if args.small:
        # Without the guard a QoS 0 flood can keep the quiet taps waiting up to ACK_DEADLINE_S: left out.
        args.taps = 8
        runs = [r for r in runs if r != (0, UNGUARDED_BURST)]
    with tempfile.TemporaryDirectory(prefix="classops-bench-") as tmp:
        for i, (qos, run_burst) in enumerate(runs):
            print(run(Path(tmp) / f"run-{i}", qos=qos, burst=run_burst, taps=args.taps,
                      tap_every_s=args.tap_every), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
