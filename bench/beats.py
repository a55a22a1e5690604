#!/usr/bin/env python3
"""The play API with playback heartbeats from every active play
(docs/BENCHMARKS.md, "Heartbeats"): `POST /v1/play` closed loop (capacity)
and open loop at a quarter of it (latency and CPU per request, with steering
not saturated), each without and with every admitted play then heartbeating (`oca-bench plays --play-heartbeats`), interleaved so
the machine's drift hits both alike. steering is pinned to one core,
oca-bench to the other, as in bench/control.py.

The plays come from four ISPs (X-Forwarded-For addresses in 10.0.0.0/14),
each with four simulated embedded appliances oca-bench runs alongside, so the
heartbeats' samples are measurements of real pathways of each play. Each
play watches for `--watch` and heartbeats every `--every` (six heartbeats a
play at the defaults, the last saying ended), so once the first plays end
there are as many active plays as `--watch` worth of admitted ones, all
reporting: the windows after `--watch` are the steady state the figures
take. Everything goes to docs/data/control/heartbeats.json; nothing is
typed by hand.

    bench/beats.py [--accounts 1500] [--reps 3] [--duration 50] [--watch 30] [--every 5]

Needs root (taskset) and the release binaries (built here).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import control  # noqa: E402  (steering's config, start, oca-bench plays)

ROOT = control.ROOT
OUT = ROOT / "docs" / "data" / "control" / "heartbeats.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=50)
    ap.add_argument("--watch", type=int, default=30)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--open-share", type=float, default=0.25,
                    help="the open loop's rate as a share of the capacity without heartbeats")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    if a.watch >= a.duration:
        raise SystemExit("--watch must be shorter than --duration, or no play ends")
    runs = []
    with control.Bench("bench-beats-") as bench:
        work, content = bench.work, bench.content
        cfg = control.config(work, str(work / "steering.db"), 16, "steer-a", "eu-west",
                             sims=16, isps=True)
        # The production stream timeout (control.py's 10 s lets plays that
        # are never ended expire within a run): heartbeats write a play's
        # sighting once a quarter of it, so a short one would measure more
        # writes than steering makes.
        cfg.write_text(cfg.read_text().replace('stream_timeout = "10s"', 'stream_timeout = "2m"'))
        fleet = {"appliances": 16, "appliance-renditions": control.renditions(content),
                 "clients": "10.0.0.0/14"}
        beats = {"play-heartbeats": f"{a.every}s", "watch": f"{a.watch}s"}
        tokens = control.seeded(cfg, content, a.accounts, work)
        log = open(work / "steering.log", "w")
        _, url = bench.steering(cfg, log)
        common = {"duration": f"{a.duration}s", "window": "10s", **fleet}
        capacity = None
        for rep in range(1, a.reps + 1):
            for with_beats in (False, True):
                extra = beats if with_beats else {}
                closed = control.plays([url], tokens, connections=16, **common, **extra)
                runs.append(dict(closed, label="closed loop, 16 connections", rep=rep,
                                 heartbeats=with_beats))
                if capacity is None:
                    capacity = closed["ok_per_s"]
                rate = round(capacity * a.open_share, 1)
                opened = control.plays([url], tokens, rate=rate, connections=64, **common, **extra)
                runs.append(dict(opened, label=f"open loop at {rate}/s", rep=rep,
                                 heartbeats=with_beats))
    control.write_record(a.out, "the play API with playback heartbeats from every active play, against without",
                         "bench/beats.py", bench.started, bench.host, accounts=a.accounts, watch_s=a.watch,
                         every_s=a.every, duration_s=a.duration, open_share=a.open_share, runs=runs)


if __name__ == "__main__":
    main()
