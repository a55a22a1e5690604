#!/usr/bin/env python3
"""The control plane's capacity (docs/BENCHMARKS.md, "The play API"): POST
/v1/play for many accounts against steering on its embedded SQLite store, on
PostgreSQL with one instance, and on PostgreSQL with two instances, side by
side in one run. steering is pinned to one core (taskset -c 1), oca-bench to
the other (-c 0); PostgreSQL, when used, is pinned with oca-bench (-c 0), so
steering has its core to itself as with the database on a machine of its own.

For each store: closed loop at 4, 16 and 64 connections; open loop at 70% of
the best closed-loop rate; and one long closed-loop run (--long, default 5
minutes) to show whether throughput holds as history grows (plays per window).
Every run's report, with the exact oca-bench command line, goes to
docs/data/control/plays.json; nothing is typed by hand.

    bench/control.py [--short 30] [--long 300] [--accounts 1500] [--stores sqlite,pg1,pg2]

Needs root (PostgreSQL runs as the postgres user through runuser) and the
release binaries (built here: cargo build --release -p steering -p bench).
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REL = ROOT / "target" / "release"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
OUT = ROOT / "docs" / "data" / "control" / "plays.json"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throwaway cluster as the postgres user (it refuses root)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.pg(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--no-sync", "-E", "UTF8", "--locale=C"])
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200 -c shared_buffers=512MB")
        # On the load generator's core: steering has its core to itself, as
        # it would with the database on a machine of its own.
        self.pg(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"),
                 "-o", opts, "-w", "start"], pin="0")
        self.pg(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                 "-c", "CREATE DATABASE steering"])

    def pg(self, argv, pin=None):
        tool = [str(PG_BIN / argv[0])]
        if pin is not None:
            tool = ["taskset", "-c", pin] + tool
        run(["runuser", "-u", "postgres", "--"] + tool + argv[1:],
            stdout=subprocess.DEVNULL)

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/steering"

    def stop(self):
        try:
            self.pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def config(work, database, connections, instance, region, sims=0, isps=False):
    """steering's config; `connections`: its PostgreSQL pool (`database_connections`).
    `isps`: the simulated appliances are embedded in ISPs of four, ISP k
    serving 10.k.0.0/16, and steering trusts the bench's X-Forwarded-For (so
    `oca-bench plays --clients 10.0.0.0/12` plays from sixteen ISPs)."""
    text = f'''listen = "127.0.0.1:0"
database = "{database}"
database_connections = {connections}
origin_url = "http://127.0.0.1:9"
[play]
stream_timeout = "10s"
[instance]
id = "{instance}"
region = "{region}"
[[plan]]
name = "load"
max_height = 1080
max_streams = 1000000
[[device]]
name = "browser"
codecs = ["avc1", "mp4a"]
max_height = 1080
'''
    if sims:
        # Simulated appliances (oca-bench appliances): declared here, their
        # real addresses arrive with their registrations. Polled every 10 s.
        text = text.replace("[play]", '[health]\ninterval = "10s"\n[play]')
        for i in range(sims):
            text += (f'[[appliance]]\nid = "sim-{i}"\ncredential = "sim-{i}-sim-credential"\n'
                     f'tier = "embedded"\nsite = "sim-site-{i // 4}"\nregion = "eu-west"\n'
                     f'admin_url = "http://127.0.0.1:1"\ncapacity_bps = 10000000000\n')
            if isps:
                text += f'serves = ["10.{i // 4}.0.0/16"]\n'
    if isps:
        text = 'trusted_proxies = ["127.0.0.1/32"]\n' + text
    path = work / f"{instance}.toml"
    path.write_text(text)
    return path


def built_content():
    """The release binaries built, and the clear test content (made once):
    its directory. Clear: the play API is measured, not licences."""
    run(["cargo", "build", "--quiet", "--release", "-p", "steering", "-p", "bench"], cwd=ROOT)
    content = ROOT / "target" / "tmp" / "bench-control-content"
    if not (content / "titles" / "t1" / "title.toml").exists():
        run([str(ROOT / "scripts" / "make-content.sh"), "--clear", str(content), "t1", "8"])
    return content


def seeded(cfg, content, accounts, work):
    """The catalogue imported into `cfg`'s store and `accounts` load accounts
    seeded; the file of their viewer tokens."""
    steering = [str(REL / "steering"), "--config", str(cfg)]
    run(steering + ["catalog", "import", str(content)], stdout=subprocess.DEVNULL)
    tokens = work / "tokens"
    run(steering + ["users", "seed", "--count", str(accounts), "--prefix", "load",
                    "--plan", "load", "--region", "eu-west", "--tokens", str(tokens)],
        stdout=subprocess.DEVNULL)
    return tokens


def write_record(out, what, script, started, host, **fields):
    """A bench script's data file: what was measured, when, by which command
    line, on which machine, then `fields`."""
    data = {"what": what, "date": started, "command": " ".join([script] + sys.argv[1:]),
            "machine": host, **fields}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")


def start_steering(cfg, log):
    p = subprocess.Popen(["taskset", "-c", "1", str(REL / "steering"), "--config", str(cfg)],
                         stdout=subprocess.PIPE, stderr=log, text=True,
                         env={**os.environ, "STEERING_LOG": "warn"})
    line = p.stdout.readline()
    m = re.search(r"http=(\S+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"steering did not start: {line!r}")
    return p, "http://" + m.group(1)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User+system CPU seconds of `pids` so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def postgres_pids():
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip().startswith("postgres"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


STEERING_PIDS = []


class Bench:
    """What every single-steering bench script sets up and tears down: the content built, when and on
    which machine it runs, a work directory, and the processes it starts (steering's counted by
    `plays`), all stopped and the directory removed at the end, whatever happened."""

    def __init__(self, prefix):
        self.content = built_content()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.host = machine()
        self.work = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs = []

    def __enter__(self):
        return self

    def steering(self, cfg, log):
        """Start steering on `cfg`; its CPU is what `plays` measures. Returns (process, url)."""
        proc, url = start_steering(cfg, log)
        self.procs.append(proc)
        STEERING_PIDS[:] = [proc.pid]
        return proc, url

    def keep(self, proc):
        """Stop `proc` with the others at the end."""
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        proc.terminate()
        proc.wait(timeout=30)
        if proc in self.procs:
            self.procs.remove(proc)

    def __exit__(self, *exc):
        for p in list(self.procs):
            self.stop(p)
        STEERING_PIDS.clear()
        shutil.rmtree(self.work, ignore_errors=True)
        return False


def plays(urls, tokens, **opts):
    argv = ["taskset", "-c", "0", str(REL / "oca-bench"), "plays", "--tokens", str(tokens),
            "--threads", "1", "--json"]
    for u in urls:
        argv += ["--steering", u]
    for k, v in opts.items():
        argv += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    pg = postgres_pids()
    before = (cpu_seconds(STEERING_PIDS), cpu_seconds(pg), resource.getrusage(resource.RUSAGE_CHILDREN))
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    after = (cpu_seconds(STEERING_PIDS), cpu_seconds(pg), resource.getrusage(resource.RUSAGE_CHILDREN))
    report = json.loads(out)
    d = report["duration_s"]
    bench_cpu = (after[2].ru_utime + after[2].ru_stime) - (before[2].ru_utime + before[2].ru_stime)
    # Cores busy on average over the run: what limits it.
    report["cores_busy"] = {
        "steering": round((after[0] - before[0]) / d, 3),
        "postgres": round((after[1] - before[1]) / d, 3),
        "oca_bench": round(bench_cpu / d, 3),
    }
    # The command as it would be typed (binary by name, not by path).
    report["command"] = " ".join(a if not a.startswith(str(REL)) else Path(a).name for a in argv)
    return report


def renditions(content):
    """Catalog ids of t1's renditions: directories holding segments."""
    t1 = content / "titles" / "t1"
    out = sorted({str(p.parent.relative_to(content)) for p in t1.rglob("*.m4s")})
    return ",".join(out)


def with_appliances(store, urls, tokens, short, sims, content):
    """Saturation again (closed loop, 16 connections) and the open loop at 70%
    of it, while `sims` simulated appliances heartbeat every 10 s (and are
    polled when they fall silent)."""
    print(f"{store}: {sims} appliances heartbeating", flush=True)
    duration = 3 * short
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(REL / "oca-bench"), "appliances", "--steering", urls[0],
         "--count", str(sims), "--interval", "10s", "--duration", f"{duration + 50}s",
         "--renditions", renditions(content), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = sim.stderr.readline()
    if "registered" not in line:
        sim.kill()
        raise SystemExit(f"appliance simulation did not start: {line!r}")
    # Two intervals: the registrations and first (full-inventory) heartbeats
    # of the whole fleet take about fifteen seconds to pass.
    time.sleep(20)
    print(f"{store}: closed loop, 16 connections, {short} s, with the fleet", flush=True)
    closed = plays(urls, tokens, connections=16, duration=f"{short}s")
    closed["with_appliances"] = sims
    rate = round(0.7 * closed["ok_per_s"])
    print(f"{store}: open loop at {rate}/s with the fleet", flush=True)
    run = plays(urls, tokens, connections=64, rate=rate, duration=f"{2 * short}s")
    # The simulation ends on its own at --duration (registration included).
    out, err = sim.communicate(timeout=duration + 300)
    run["appliances"] = json.loads(out)
    run["appliances"]["command"] = " ".join(sim.args[3:]).replace(str(REL) + "/", "")
    return [closed, run]


def measure(store, urls, tokens, short, long, sims=0, content=None):
    runs = []
    for c in (4, 16, 64):
        print(f"{store}: closed loop, {c} connections, {short} s", flush=True)
        runs.append(plays(urls, tokens, connections=c, duration=f"{short}s"))
    best = max(r["ok_per_s"] for r in runs)
    print(f"{store}: closed loop, 16 connections, {long} s (history)", flush=True)
    history = plays(urls, tokens, connections=16, duration=f"{long}s", window="30s")
    runs.append(history)
    # Saturation is what the store sustains: a short run's peak can be a
    # transient (PostgreSQL's was, by a quarter), and an open loop above
    # what is sustained only builds a queue.
    sustained = min(best, history["ok_per_s"])
    rate = round(0.7 * sustained)
    print(f"{store}: open loop at {rate}/s (70% of {sustained:.0f})", flush=True)
    runs.append(plays(urls, tokens, connections=64, rate=rate, duration=f"{2 * short}s"))
    return {"store": store, "instances": len(urls), "saturation_per_s": best,
            "sustained_per_s": sustained, "runs": runs}


def machine():
    """The same fields bench/run.py records (bench/figures/data.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from figures import data

    return data.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", type=int, default=30)
    ap.add_argument("--long", type=int, default=300)
    ap.add_argument("--accounts", type=int, default=1500)
    ap.add_argument("--stores", default="sqlite,pg1,pg2")
    ap.add_argument("--appliances", type=int, default=10000,
                    help="simulated appliances for the last run (0: none)")
    ap.add_argument("--pg-connections", type=int, default=16,
                    help="each instance's PostgreSQL pool (database_connections)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    content = built_content()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = machine()
    results = []
    for store in a.stores.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"bench-control-{store}-"))
        pg = Postgres() if store.startswith("pg") else None
        procs = []
        try:
            database = pg.url() if pg else str(work / "steering.db")
            cfgs = [config(work, database, a.pg_connections, "steer-a", "eu-west")]
            if store == "pg2":
                cfgs.append(config(work, database, a.pg_connections, "steer-b", "eu-west"))
            tokens = seeded(cfgs[0], content, a.accounts, work)
            log = open(work / "steering.log", "w")
            urls = []
            for cfg in cfgs:
                p, url = start_steering(cfg, log)
                procs.append(p)
                STEERING_PIDS.append(p.pid)
                urls.append(url)
            result = measure(store, urls, tokens, a.short, a.long)
            if a.appliances:
                # Restarted with the simulated fleet declared (so the runs
                # above are not polling it), on the same database.
                for p in procs:
                    p.terminate()
                    p.wait(timeout=30)
                procs.clear()
                STEERING_PIDS.clear()
                urls = []
                for i, name in enumerate(["steer-a", "steer-b"][: len(cfgs)]):
                    cfg = config(work, database, a.pg_connections, name, "eu-west", a.appliances)
                    p, url = start_steering(cfg, log)
                    procs.append(p)
                    STEERING_PIDS.append(p.pid)
                    urls.append(url)
                result["runs"] += with_appliances(store, urls, tokens, a.short, a.appliances,
                                                  content)
            results.append(result)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
            STEERING_PIDS.clear()
            if pg:
                pg.stop()
            shutil.rmtree(work, ignore_errors=True)
    write_record(a.out, "POST /v1/play under load: steering pinned to one core, oca-bench on the other",
                 "bench/control.py", started, host, accounts=a.accounts, stores=results)


if __name__ == "__main__":
    main()
