#!/usr/bin/env python3
"""A launch's flash crowd against steering (docs/BENCHMARKS.md, "A flash
crowd"): `POST /v1/play` open loop at a calm rate, then rising 20x over 10
seconds and staying there, the plays spread over many client networks, with
admission control on (the default) and off, one after the other on the same
store. steering is pinned to one core, oca-bench to the other, as in
bench/control.py.

The plays come from sixteen ISPs (X-Forwarded-For addresses in
10.0.0.0/12), each with four simulated embedded appliances that oca-bench
runs alongside: every admitted play becomes a stream on the appliance it was
steered to, and the appliances heartbeat the egress of their streams every
second, so steering steers by the load the crowd causes.

The calm rate is a tenth of the capacity measured first in the same run
(closed loop, same fleet), so the peak asks for twice what steering can
decide: the excess must be refused, not queued. Per phase (calm, rise, peak)
the report has plays/s offered, admitted and refused, the admitted plays'
latency from their intended send time (no coordinated omission), the
appliances' load at the end of the phase and their heartbeats' latency
during it. Everything goes to docs/data/control/flash.json; nothing is typed
by hand.

    bench/flash.py [--accounts 1500] [--factor 20] [--connections 256] [--appliances 64]

Needs root (taskset) and the release binaries (built here).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import control  # noqa: E402  (steering's config, start, oca-bench plays)

ROOT = control.ROOT
OUT = ROOT / "docs" / "data" / "control" / "flash.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1500)
    ap.add_argument("--factor", type=float, default=20.0)
    ap.add_argument("--calm-share", type=float, default=0.1,
                    help="the calm rate as a share of the measured capacity")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--appliances", type=int, default=64,
                    help="simulated embedded appliances, four per ISP (a multiple of 4, at most 64)")
    ap.add_argument("--appliance-gbps", type=float, default=4.0)
    ap.add_argument("--stream-mbps", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    runs = []
    with control.Bench("bench-flash-") as bench:
        work, content = bench.work, bench.content
        database = str(work / "steering.db")
        isps = a.appliances // 4
        if a.appliances % 4 or isps not in (1, 2, 4, 8, 16):
            raise SystemExit("--appliances: 4, 8, 16, 32 or 64 (four per ISP, ISPs 10.0/16 to 10.15/16)")
        cfg = control.config(work, database, 16, "steer-a", "eu-west", sims=a.appliances, isps=True)
        fleet = {"appliances": a.appliances, "appliance-renditions": control.renditions(content),
                 "appliance-gbps": a.appliance_gbps, "stream-mbps": a.stream_mbps,
                 "clients": f"10.0.0.0/{16 - (isps - 1).bit_length()}"}
        tokens = control.seeded(cfg, content, a.accounts, work)
        log = open(work / "steering.log", "w")
        base = cfg.read_text()
        capacity = None
        for admission in (True, False):
            cfg.write_text(base if admission else base + "[admission]\nenabled = false\n")
            proc, url = bench.steering(cfg, log)
            if capacity is None:
                closed = control.plays([url], tokens, connections=16, duration="8s", window="8s",
                                       **fleet)
                capacity = closed["ok_per_s"]
                runs.append(dict(closed, label="capacity (closed loop, 16 connections)"))
            calm = round(capacity * a.calm_share, 1)
            report = control.plays([url], tokens, rate=calm, surge=a.factor, **{
                "surge-at": "10s", "surge-over": "10s", "duration": "30s", "window": "10s",
                "connections": a.connections, "timeout": "5s"}, **fleet)
            runs.append(dict(report, label="admission on" if admission else "admission off",
                             admission=admission))
            bench.stop(proc)
    control.write_record(a.out, "a flash crowd of new plays against steering, with admission control on and off",
                         "bench/flash.py", bench.started, bench.host, accounts=a.accounts, factor=a.factor,
                         appliances=a.appliances, appliance_gbps=a.appliance_gbps,
                         stream_mbps=a.stream_mbps, runs=runs)


if __name__ == "__main__":
    main()
