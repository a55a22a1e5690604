#!/usr/bin/env python3
"""Predictive pre-positioning on a simulated fleet (docs/BENCHMARKS.md, "Fill
planning on a simulated fleet"): `oca-bench fleet-sim` runs steering's own
planners (current, forecast, oracle) and decision code over 30 simulated days
of a 5,000-title, 100-site fleet at several per-site disk sizes, and once more
with the forecast planner alone on one thread, timed. Every figure comes from
the files written here; nothing is typed by hand.

    bench/fleet.py [--sizes 0.1,0.02,...] [--days 30] [--seed 1]

Writes docs/data/fleet/sim.json (the curve, and the full hour-by-hour report
of the first size), docs/data/fleet/hourly.svg (its picture) and
docs/data/fleet/speed.json (one planner, one thread: the time budget).
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "data" / "fleet"
BENCH = ROOT / "target" / "release" / "oca-bench"


def sim(args, extra, results):
    cmd = [str(BENCH), "fleet-sim", "--days", str(args.days), "--seed", str(args.seed),
           "--results", str(results)] + extra
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The first size is the one reported hour by hour.
    ap.add_argument("--sizes", default="0.1,0.02,0.05,0.2,0.3,0.4,0.5,0.6")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "bench"], cwd=ROOT, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    sim(args, ["--disk-fraction", args.sizes, "--svg", str(OUT / "hourly.svg")], OUT / "sim.json")
    sim(args, ["--planner", "forecast", "--threads", "1"], OUT / "speed.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
