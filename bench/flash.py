#!/usr/bin/env python3
"""A launch's flash crowd against steering (docs/BENCHMARKS.md, "A flash
crowd"): `POST /v1/play` open loop at a calm rate, then rising 20x over 10
seconds and staying there, the plays spread over many client networks, with
admission control on (the default) and off, one after the other on the same
store. steering is pinned to one core, oca-bench to the other, as in
bench/control.py.

The calm rate is a tenth of the capacity measured first in the same run
(closed loop), so the peak asks for twice what steering can decide: the
excess must be refused, not queued. Per phase (calm, rise, peak) the report
has plays/s offered, admitted and refused, and the admitted plays' latency
from their intended send time (no coordinated omission). Everything goes to
docs/data/control/flash.json; nothing is typed by hand.

    bench/flash.py [--accounts 1500] [--factor 20] [--connections 256]

Needs root (taskset) and the release binaries (built here).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
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
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    control.run(["cargo", "build", "--quiet", "--release", "-p", "steering", "-p", "bench"], cwd=ROOT)
    content = ROOT / "target" / "tmp" / "bench-control-content"
    if not (content / "titles" / "t1" / "title.toml").exists():
        control.run([str(ROOT / "scripts" / "make-content.sh"), "--clear", str(content), "t1", "8"])
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = control.machine()
    work = Path(tempfile.mkdtemp(prefix="bench-flash-"))
    runs = []
    proc = None
    try:
        database = str(work / "steering.db")
        cfg = control.config(work, database, 16, "steer-a", "eu-west")
        steering = [str(control.REL / "steering"), "--config", str(cfg)]
        control.run(steering + ["catalog", "import", str(content)], stdout=subprocess.DEVNULL)
        tokens = work / "tokens"
        control.run(steering + ["users", "seed", "--count", str(a.accounts), "--prefix", "load",
                                "--plan", "load", "--region", "eu-west", "--tokens", str(tokens)],
                    stdout=subprocess.DEVNULL)
        log = open(work / "steering.log", "w")
        base = cfg.read_text()
        capacity = None
        for admission in (True, False):
            cfg.write_text(base if admission else base + "[admission]\nenabled = false\n")
            proc, url = control.start_steering(cfg, log)
            control.STEERING_PIDS[:] = [proc.pid]
            if capacity is None:
                closed = control.plays([url], tokens, connections=16, duration="8s", window="8s")
                capacity = closed["ok_per_s"]
                runs.append(dict(closed, label="capacity (closed loop, 16 connections)"))
            calm = round(capacity * a.calm_share, 1)
            report = control.plays([url], tokens, rate=calm, surge=a.factor, **{
                "surge-at": "10s", "surge-over": "10s", "duration": "30s", "window": "10s",
                "connections": a.connections, "timeout": "5s"})
            runs.append(dict(report, label="admission on" if admission else "admission off",
                             admission=admission))
            proc.terminate()
            proc.wait(timeout=30)
            proc = None
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        control.STEERING_PIDS.clear()
        shutil.rmtree(work, ignore_errors=True)
    data = {
        "what": "a flash crowd of new plays against steering, with admission control on and off",
        "date": started,
        "command": "bench/flash.py " + " ".join(sys.argv[1:]),
        "machine": host,
        "accounts": a.accounts,
        "factor": a.factor,
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
