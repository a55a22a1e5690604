#!/usr/bin/env python3
"""Home pages from cache at the play API's rate (docs/BENCHMARKS.md, "Home
rows from cache"): steering with the recommendation service (`steering
recommender` on the same SQLite store), the play API's capacity measured
first (closed loop; its plays are also the history the model learns from),
every account's home page asked for once to fill the cache, then `GET
/v1/home` open loop at the play API's capacity with `oca-bench plays --home`.
steering is pinned to one core and oca-bench to the other, as in
bench/control.py. Writes docs/data/control/home.json; nothing is typed by hand.

    bench/home.py [--accounts 1500] [--duration 20]

Needs root (taskset) and the release binaries (built here).
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import control  # noqa: E402  (steering's config, start, oca-bench plays)

ROOT = control.ROOT
OUT = ROOT / "docs" / "data" / "control" / "home.json"


def start_recommender(cfg, log):
    p = subprocess.Popen(["taskset", "-c", "1", str(control.REL / "steering"), "recommender",
                          "--config", str(cfg), "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=log, text=True,
                         env={**os.environ, "STEERING_LOG": "warn"})
    line = p.stdout.readline()
    m = re.search(r"http=(\S+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"the recommender did not start: {line!r}")
    return p, m.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1500)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    runs = []
    with control.Bench("bench-home-") as bench:
        work, content = bench.work, bench.content
        cfg = control.config(work, str(work / "steering.db"), 16, "steer-a", "eu-west")
        tokens = control.seeded(cfg, content, a.accounts, work)
        log = open(work / "steering.log", "w")
        rec, addr = start_recommender(cfg, log)
        bench.keep(rec)
        cfg.write_text(cfg.read_text() + f'[recommendations]\nurl = "http://{addr}/rows"\n')
        _, url = bench.steering(cfg, log)
        capacity = control.plays([url], tokens, connections=16, duration="8s", window="8s")
        runs.append(dict(capacity, label="plays: capacity (closed loop, 16 connections)"))
        rate = round(capacity["ok_per_s"])
        warm = control.plays([url], tokens, home=True, connections=16, duration="5s", window="5s")
        runs.append(dict(warm, label="home: every account once and more (closed loop), filling the cache"))
        run = control.plays([url], tokens, home=True, rate=rate, connections=64,
                            duration=f"{a.duration}s", window=f"{a.duration}s")
        runs.append(dict(run, label=f"home: open loop at the play API's capacity ({rate}/s)"))
        metrics = subprocess.run(["curl", "-s", f"{url}/metrics"], capture_output=True, text=True).stdout
        sources = {m.group(1): float(m.group(2)) for m in
                   re.finditer(r'^steering_home_rows_total\{reason="(\w+)"\} (\S+)', metrics, re.M)}
    control.write_record(a.out, "home pages from steering's cache of the recommendation service's rows, "
                         "at the play API's rate", "bench/home.py", bench.started, bench.host,
                         accounts=a.accounts, rows_by_source=sources, runs=runs)


if __name__ == "__main__":
    main()
