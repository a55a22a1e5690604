#!/usr/bin/env python3
"""Time oca's start-up index of a store with N objects (default 100,000).

Objects are sparse 2 MiB files (so the index sees realistic sizes without using
disk), spread as a packager would: titles/tNNN/vRUNG/seg-NNNNN.m4s. Reports the
`store indexed` time oca logs, warm (dentries and inodes cached) and, when the
kernel lets us drop caches, cold.

    scripts/bench_startup.py [--objects 100000] [--disks 1] [--json FILE]

--json FILE keeps every start (index and ready times), the machine, the date
and this command line, for bench/run.py.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from figures import data  # noqa: E402  (measurement files: machine facts, command, date)


def populate(root, count, disks):
    per_title = 4 * 250  # 4 rungs x 250 segments
    for i in range(count):
        title, rest = divmod(i, per_title)
        rung, seg = divmod(rest, 250)
        disk = os.path.join(root, f"disk{i % disks}", "objects", f"titles/t{title:04}/v{rung}")
        os.makedirs(disk, exist_ok=True)
        with open(os.path.join(disk, f"seg-{seg:05}.m4s"), "wb") as f:
            f.truncate(2 << 20)


def start_once(root, disks):
    args = [os.path.join(ROOT, "target/release/oca"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--access", "open"]
    for d in range(disks):
        args += ["--store", os.path.join(root, f"disk{d}")]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OCA_LOG": "info"})
    p.stdout.readline()  # "oca listening ..." once bound and indexed
    ready = time.monotonic() - t0
    p.terminate()
    _, err = p.communicate(timeout=30)
    m = re.search(r"store indexed.*?objects=(\d+).*?elapsed_ms=(\d+)", err)
    return int(m.group(1)), int(m.group(2)), ready


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--disks", type=int, default=1)
    ap.add_argument("--json", help="write every start, the machine and the command here")
    args = ap.parse_args()
    started, command, host = data.now(), data.command(), data.machine()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "oca"], cwd=ROOT, check=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="oca-startup-") as root:
        populate(root, args.objects, args.disks)
        for label in ("warm", "warm", "warm"):
            n, ms, ready = start_once(root, args.disks)
            runs.append({"cache": label, "objects": n, "index_ms": ms, "ready_ms": ready * 1000})
        if drop_caches():
            n, ms, ready = start_once(root, args.disks)
            runs.append({"cache": "cold", "objects": n, "index_ms": ms, "ready_ms": ready * 1000})
    for r in runs:
        print(f"{r['cache']}: {r['objects']} objects on {args.disks} disk(s): index {r['index_ms']} ms, "
              f"ready (exec to listening) {r['ready_ms']:.0f} ms")
    if args.json:
        data.write(args.json, {"tool": "scripts/bench_startup.py", "command": command, "date": started,
                               "machine": host, "options": vars(args), "runs": runs})

if __name__ == "__main__":
    sys.exit(main())
