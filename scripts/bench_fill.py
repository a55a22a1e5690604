#!/usr/bin/env python3
"""Fill throughput: fill-agent against curl, from the same nginx origin, side by side.

What it measures: how fast `fill-agent` fills an empty appliance disk from an
origin, and what CPU that costs, against `curl` downloading the same objects from
the same origin with the same parallelism in the same run. For every byte
fill-agent streams the body to a temporary file, hashes it (SHA-256), accounts it
against the global rate cap, then fsyncs, verifies and renames the object into
place and tells oca; curl only writes the bytes to files (no hash, no fsync).

Setup, all on loopback: a synthetic packaged title (`titles/bench`: an HLS
multivariant playlist, 4 variants, each a VOD media playlist with an init segment
and 4-second segments of random bytes, `--mib` in all in `--segment-mib` segments),
imported by `steering catalog import`; steering (its own temp config and database,
`origin_url` = the nginx origin, one embedded appliance `e1` with a fill window);
nginx serving the packaged directory as the origin (stripping `/t/<token>/`, as
tests/src/stack.rs does); an oca for `e1` with an empty disk, registered through
its `[control]` section; and fill-agent (rate cap out of the way, `--concurrency`
downloads at once, `--clock-start` inside the window, `poll_interval = "100ms"` so
the pass that finds nothing left follows the filling pass at once), run until its
status file says `complete`.

Rounds: curl once to warm the origin's files in the page cache, then `--rounds`
times a fill-agent round (a fresh oca with an empty disk and a fresh fill-agent)
followed by a curl round (`curl --parallel --parallel-max CONCURRENCY` over
`http://ORIGIN/<key>` for every object of the plan, into an empty directory on the
same filesystem). `sync` before each timed round; destinations deleted after each.

Figures per round and the median: wall seconds (fill-agent: from its start until
the status file, polled every 50 ms, says `complete`; curl: the whole command),
MB/s (10^6 bytes), Gbit/s, CPU seconds (fill-agent: utime+stime from
/proc/PID/stat; curl: RUSAGE_CHILDREN delta) and CPU seconds per GiB. fill-agent
writes its status file once a second, so its wall time also shows "to last
commit" (the newest ctime of a committed object, set by the rename), which has no
such granularity.

    scripts/bench_fill.py [--mib 400] [--rounds 3] [--concurrency 4]
                          [--segment-mib 2] [--build] [--keep] [--json FILE]
                          [--disk-io threads,io_uring] [--baseline BIN | --baseline-rev REV]

Several fill-agents side by side: every round runs one per `--disk-io` setting
(the first is the headline, the others are labelled by their setting) and, with
`--baseline BIN` (or `--baseline-rev REV`, built from git), an earlier build
(`before`), and curl, in an order that rotates from round to round (whatever
runs right after curl is slowed by the writeback of curl's dirty pages).
The log of each says which disk path it really took (io_uring, or threads when
the kernel refused io_uring).

--json FILE keeps every round's raw figures (seconds, bytes, CPU seconds), the
machine, the date and this command line, for bench/run.py.

Needs the release binaries of steering, oca and fill-agent (built with
`cargo build --release -p steering -p oca -p fill-agent` if one is missing, or
always with --build), nginx and curl (installed with apt-get if missing). Prints
progress on stderr and the Markdown result on stdout. Stops every process it
started (by pid) and removes its temp directories, also on errors.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
sys.path.insert(0, os.path.join(ROOT, "bench"))
from figures import data  # noqa: E402  (measurement files: machine facts, command, date)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import baseline  # noqa: E402  (earlier builds, for side-by-side runs)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A midnight UTC; the window is 02:00-06:00 and fill-agent's clock starts at 03:00.
MIDNIGHT = 1_795_046_400
IN_WINDOW = MIDNIGHT + 3 * 3600
APPLIANCE = "e1"
CREDENTIAL = "e1-credential-0123456789"
VARIANTS = [(800_000, "640x360"), (1_600_000, "960x540"), (3_000_000, "1280x720"), (6_000_000, "1920x1080")]
GIB = 1 << 30
KEEP = False  # --keep: leave every round's directory (configs, logs) in place


def log(msg):
    print(f"[bench_fill] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tools and binaries

def ensure_tools():
    missing = [pkg for pkg, binary in (("nginx-light", "nginx"), ("curl", "curl"))
               if not shutil.which(binary) and not os.path.exists("/usr/sbin/" + binary)]
    if missing:
        log(f"installing {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def ensure_binaries(force):
    names = ["steering", "oca", "fill-agent"]
    if force or not all(os.path.exists(os.path.join(RELEASE, n)) for n in names):
        log("building steering, oca and fill-agent (release)")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "steering", "-p", "oca", "-p", "fill-agent"],
                       cwd=ROOT, check=True)


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# ---------------------------------------------------------------- content

def make_content(packaged, mib, segment_mib):
    """titles/bench: title.toml, master.m3u8, v1..v4/{index.m3u8, init.mp4, seg-NNNNN.m4s}."""
    tdir = os.path.join(packaged, "titles", "bench")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "title.toml"), "w") as f:
        f.write('name = "Bench"\nregions = ["*"]\n')
    seg_bytes = int(segment_mib * (1 << 20))
    segments = max(len(VARIANTS), round(mib / segment_mib))
    master = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v, (bandwidth, resolution) in enumerate(VARIANTS, 1):
        n = segments // len(VARIANTS) + (1 if v <= segments % len(VARIANTS) else 0)
        vdir = os.path.join(tdir, f"v{v}")
        os.makedirs(vdir)
        master += [f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={resolution},'
                   f'CODECS="avc1.64001f,mp4a.40.2"', f"v{v}/index.m3u8"]
        media = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:0",
                 "#EXT-X-PLAYLIST-TYPE:VOD", '#EXT-X-MAP:URI="init.mp4"']
        with open(os.path.join(vdir, "init.mp4"), "wb") as f:
            f.write(os.urandom(1500))
        for i in range(n):
            name = f"seg-{i:05}.m4s"
            with open(os.path.join(vdir, name), "wb") as f:
                f.write(os.urandom(seg_bytes))
            media += ["#EXTINF:4.000,", name]
        media.append("#EXT-X-ENDLIST")
        with open(os.path.join(vdir, "index.m3u8"), "w") as f:
            f.write("\n".join(media) + "\n")
    with open(os.path.join(tdir, "master.m3u8"), "w") as f:
        f.write("\n".join(master) + "\n")


# ---------------------------------------------------------------- processes

class Proc:
    """A process we started: its first stdout line is the banner with its addresses."""

    def __init__(self, name, args, env, logfile, banner=True, timeout=30):
        self.name = name
        self.log_path = logfile
        self.log = open(logfile, "wb")
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE if banner else subprocess.DEVNULL,
                                      stderr=self.log, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **env})
        self.started = time.time()
        self.banner = ""
        if banner:
            got = []
            reader = threading.Thread(target=lambda: got.append(self.popen.stdout.readline().decode()),
                                      daemon=True)
            reader.start()
            reader.join(timeout)
            if not got or not got[0]:
                self.stop()
                raise RuntimeError(f"{name} did not start: {self.tail()}")
            self.banner = got[0].strip()
            # Nothing else is printed on stdout; keep draining it so a stray line never blocks.
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            for _ in self.popen.stdout:
                pass
        except (OSError, ValueError):
            pass

    @property
    def pid(self):
        return self.popen.pid

    def field(self, name):
        for word in self.banner.split():
            if word.startswith(name):
                return word[len(name):].split(",")[0]
        raise RuntimeError(f"no {name} in {self.name}'s banner {self.banner!r}")

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=2000):
        try:
            if not self.log.closed:
                self.log.flush()
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace=5):
        """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout:
            try:
                self.popen.stdout.close()
            except OSError:
                pass
        self.log.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connect(port, proc, deadline=30):
    until = time.time() + deadline
    while time.time() < until:
        if not proc.alive():
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def start_nginx(root, work):
    """nginx serving `root` as the origin, /t/<token>/ stripped (as tests/src/stack.rs)."""
    for attempt in range(5):
        d = os.path.join(work, f"nginx-{attempt}")
        os.makedirs(os.path.join(d, "tmp"))
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {d}/tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /t/ {{ rewrite ^/t/[^/]+/(.*)$ /$1 last; }}
    }}
}}
""")
        p = Proc("nginx", [nginx_binary(), "-c", conf, "-p", d], {}, os.path.join(d, "stderr.log"), banner=False)
        if wait_connect(port, p):
            return p, f"127.0.0.1:{port}"
        p.stop()
    raise RuntimeError("nginx did not start")


def http_json(url, headers=None, timeout=10):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def http_text(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_until(what, fn, deadline=30, every=0.05):
    until = time.time() + deadline
    last = None
    while time.time() < until:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ValueError) as e:
            last = e
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


# ---------------------------------------------------------------- steering

def steering_config(d, origin):
    path = os.path.join(d, "steering.toml")
    with open(path, "w") as f:
        f.write(f"""listen = "127.0.0.1:0"
database = "{d}/steering.db"
heartbeat_interval = "200ms"
origin_url = "http://{origin}"
[health]
interval = "200ms"
timeout = "500ms"
down_after = 2
up_after = 2
[fill]
window = "02:00-06:00"
[[network]]
prefix = "127.1.0.0/16"
asn = 64501
region = "eu-west"
[[appliance]]
id = "{APPLIANCE}"
credential = "{CREDENTIAL}"
tier = "embedded"
site = "isp-a-ams"
region = "eu-west"
admin_url = "http://127.0.0.1:1"
capacity_bps = 10000000000
serves = ["127.1.0.0/16"]
""")
    return path


def start_steering(work, packaged, origin):
    d = os.path.join(work, "steering")
    os.makedirs(d)
    cfg = steering_config(d, origin)
    binary = os.path.join(RELEASE, "steering")
    out = subprocess.run([binary, "catalog", "import", packaged, "--config", cfg], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"steering catalog import: {out.stderr.strip()}")
    log(f"catalog import: {out.stdout.strip()}")
    p = Proc("steering", [binary, "--config", cfg], {"STEERING_LOG": "warn"}, os.path.join(d, "stderr.log"))
    return p, p.field("http=")


def fill_plan(steering):
    return http_json(f"http://{steering}/v1/appliances/{APPLIANCE}/fill-plan",
                     {"Authorization": f"Bearer {APPLIANCE}:{CREDENTIAL}"})


def appliance_entry(steering):
    for a in http_json(f"http://{steering}/v1/appliances"):
        if a.get("id") == APPLIANCE:
            return a
    return None


# ---------------------------------------------------------------- rounds

def settle(deadline=60):
    """Before a timed run: sync, then wait until the kernel has no dirty or writeback pages to speak of
    (the previous run's gigabyte, written or deleted, must not be written back during this one)."""
    os.sync()
    until = time.time() + deadline
    while time.time() < until:
        with open("/proc/meminfo") as f:
            kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)}
        if kb.get("Dirty", 0) + kb.get("Writeback", 0) < 16 * 1024:
            return
        time.sleep(0.1)


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is fields[0], utime is field 14 overall (fields[11]), stime fields[12].
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_files(root):
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            out.append(os.path.join(dirpath, name))
    return out


def fill_round(work, n, steering, objects, concurrency, variant):
    """A fresh oca (empty disk) and fill-agent (`variant`: its binary and disk_io); the round's figures."""
    d = os.path.join(work, f"fill-{n}-{variant['label']}")
    disk = os.path.join(d, "disk0")
    os.makedirs(disk)
    status_file = os.path.join(d, "fill-status.json")
    ocfg = os.path.join(d, "oca.toml")
    with open(ocfg, "w") as f:
        f.write(f"""listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["{disk}"]
workers = 1
max_connections = 1000
capacity_mbps = 10000
fill_status = "{status_file}"
[control]
url = "http://{steering}"
appliance_id = "{APPLIANCE}"
credential = "{CREDENTIAL}"
cache_dir = "{d}/oca-control-cache"
tier = "embedded"
site = "isp-a-ams"
region = "eu-west"
""")
    oca = Proc("oca", [os.path.join(RELEASE, "oca"), "--config", ocfg], {"OCA_LOG": "warn"},
               os.path.join(d, "oca.log"))
    agent = None
    try:
        admin = oca.field("admin=")
        def registered():
            a = appliance_entry(steering) or {}
            return a.get("eligible") is True and a.get("info", {}).get("admin_url") == f"http://{admin}"
        wait_until(f"{APPLIANCE} registered and up", registered)
        acfg = os.path.join(d, "fill-agent.toml")
        with open(acfg, "w") as f:
            f.write(f"""stores = ["{disk}"]
oca_admin = "http://{admin}"
status_file = "{status_file}"
metrics_listen = "127.0.0.1:0"
rate_bps = 100000000000
concurrency = {concurrency}
poll_interval = "100ms"
{f'disk_io = "{variant["disk_io"]}"' if variant["disk_io"] else ""}
[control]
url = "http://{steering}"
appliance_id = "{APPLIANCE}"
credential = "{CREDENTIAL}"
cache_dir = "{d}/fill-cache"
""")
        settle()
        agent = Proc("fill-agent", [variant["binary"], "--config", acfg,
                                    "--clock-start", str(IN_WINDOW)],
                     {"FILL_AGENT_LOG": "info"}, os.path.join(d, "fill-agent.log"))
        t0 = agent.started
        status = None
        deadline = t0 + 1800
        while True:
            try:
                with open(status_file) as f:
                    status = json.load(f)
            except (OSError, ValueError):
                status = None
            if status and status.get("state") == "complete":
                t_complete = time.time()
                break
            if not agent.alive():
                raise RuntimeError(f"fill-agent exited: {agent.tail()}")
            if time.time() > deadline:
                raise RuntimeError(f"fill not complete after 30 minutes: {status}")
            time.sleep(0.05)
        cpu = proc_cpu_seconds(agent.pid)
        metrics = http_text(f"http://{agent.field('metrics=')}/metrics")
        agent.stop()
        logged = agent.tail(200000)
        summary = [line for line in logged.splitlines() if "fill pass summary" in line]
        # Which disk path it really took (io_uring may be refused by the kernel).
        disk_path = ("io_uring" if "through io_uring" in logged else
                     "threads (io_uring refused)" if "io_uring unavailable" in logged else
                     "threads" if variant["disk_io"] == "threads" else "blocking on the runtime (before)")
        # What is on the disk: every planned object, at its size.
        objdir = os.path.join(disk, "objects")
        files = tree_files(objdir)
        got = {os.path.relpath(p, objdir): os.stat(p) for p in files}
        missing = [k for k, size in objects if k not in got or got[k].st_size != size]
        if missing or len(got) != len(objects):
            raise RuntimeError(f"disk does not match the plan: {len(missing)} missing or wrong, "
                               f"{len(got)} files for {len(objects)} objects")
        nbytes = sum(s.st_size for s in got.values())
        last_commit = max(s.st_ctime for s in got.values())
        from_origin = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                          if line.startswith('fill_bytes_total{') and 'kind="origin"' in line)
        ok = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith('fill_objects_total{outcome="ok"}'))
        if int(from_origin) != nbytes or int(ok) != len(objects):
            raise RuntimeError(f"fill-agent metrics disagree: {from_origin} bytes from the origin, {ok} objects ok")
        return {"secs": t_complete - t0, "secs_commit": last_commit - t0, "bytes": nbytes, "cpu": cpu,
                "failures": status.get("failures", 0), "summary": summary, "disk_path": disk_path}
    finally:
        if agent:
            agent.stop()
        oca.stop()
        if not KEEP:
            shutil.rmtree(d, ignore_errors=True)


def curl_round(work, n, origin, objects, concurrency):
    d = os.path.join(work, f"curl-{n}")
    out = os.path.join(d, "out")
    os.makedirs(out)
    cfg = os.path.join(d, "curl.cfg")
    with open(cfg, "w") as f:
        for key, _ in objects:
            f.write(f'url = "http://{origin}/{key}"\noutput = "{out}/{key}"\n')
    cmd = ["curl", "--silent", "--show-error", "--fail", "--create-dirs", "--parallel",
           "--parallel-max", str(concurrency), "--config", cfg]
    try:
        settle()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        secs = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            raise RuntimeError(f"curl failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        got = {os.path.relpath(p, out): os.path.getsize(p) for p in tree_files(out)}
        nbytes = sum(got.values())
        if any(got.get(k) != size for k, size in objects) or len(got) != len(objects):
            raise RuntimeError("curl's downloads do not match the plan")
        return {"secs": secs, "bytes": nbytes, "cpu": cpu}
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- report

def mbps(r, key="secs"):
    return r["bytes"] / 1e6 / r[key]


def gbit(r, key="secs"):
    return r["bytes"] * 8 / 1e9 / r[key]


def cpu_gib(r):
    return r["cpu"] / (r["bytes"] / GIB)


def variants_report(rounds, curls):
    """Median per variant: MB/s to last commit, its ratio to curl's, CPU per GiB and its ratio."""
    med = statistics.median
    lines = ["Disk paths side by side (medians; MB/s to the last commit):", "",
             "| fill-agent | path taken | MB/s | /curl | CPU s/GiB | /curl |", "|---|---|---|---|---|---|"]
    for label in rounds[0]:
        fs = [r[label] for r in rounds]
        ratio = med(mbps(f, "secs_commit") / mbps(c) for f, c in zip(fs, curls))
        cpu = med(cpu_gib(f) / cpu_gib(c) for f, c in zip(fs, curls))
        lines.append(f"| {label} | {fs[0]['disk_path']} | {med(mbps(f, 'secs_commit') for f in fs):,.0f} | "
                     f"{ratio:.2f}× | {med(cpu_gib(f) for f in fs):.3f} | {cpu:.2f}× |")
    return "\n".join(lines)


def report(fills, curls, args, nobjects, command):
    med = statistics.median
    rows = []
    for f, c in zip(fills, curls):
        rows.append((f["secs"], f["secs_commit"], mbps(f), mbps(f, "secs_commit"), gbit(f), gbit(f, "secs_commit"),
                     c["secs"], mbps(c), gbit(c), mbps(f) / mbps(c), mbps(f, "secs_commit") / mbps(c),
                     f["cpu"], c["cpu"], cpu_gib(f), cpu_gib(c), cpu_gib(f) / cpu_gib(c)))
    labels = [str(i) for i in range(1, len(rows) + 1)] + ["**median**"]
    rows.append(tuple(med(r[i] for r in rows) for i in range(len(rows[0]))))
    bold = lambda i, text: f"**{text}**" if i == len(rows) - 1 else text
    lines = ["Throughput (fill-agent: to `complete` in its status file / to its last commit):", "",
             "| round | fill-agent s | fill-agent MB/s | fill-agent Gbit/s | curl s | curl MB/s | curl Gbit/s | "
             "fill-agent/curl MB/s |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        lines.append(f"| {labels[i]} | {r[0]:.2f} / {r[1]:.2f} | {bold(i, f'{r[2]:,.0f} / {r[3]:,.0f}')} | "
                     f"{r[4]:.2f} / {r[5]:.2f} | {r[6]:.2f} | {bold(i, f'{r[7]:,.0f}')} | {r[8]:.2f} | "
                     f"{bold(i, f'{r[9]:.2f}× / {r[10]:.2f}×')} |")
    lines += ["", "CPU (fill-agent: utime+stime of its process, start to `complete`; curl: its own, from "
              "`getrusage(RUSAGE_CHILDREN)`):", "",
              "| round | fill-agent CPU s | curl CPU s | fill-agent CPU s/GiB | curl CPU s/GiB | "
              "fill-agent/curl CPU per GiB |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        lines.append(f"| {labels[i]} | {r[11]:.2f} | {r[12]:.2f} | {bold(i, f'{r[13]:.3f}')} | "
                     f"{bold(i, f'{r[14]:.3f}')} | {bold(i, f'{r[15]:.2f}×')} |")
    total = fills[0]["bytes"]
    lines += ["", f"{nobjects} objects, {total:,} bytes ({total / (1 << 20):.0f} MiB; {args.segment_mib:g} MiB "
              f"segments, 4 variants), {args.concurrency} downloads at once for both, {args.rounds} rounds "
              f"after one warm-up curl run; fill-agent failures: "
              f"{sum(f['failures'] for f in fills)}. fill-agent writes its status file once a second, so "
              f"\"to `complete`\" includes up to a second of that cadence; \"to last commit\" is the newest "
              f"ctime among the committed objects (set by the rename).", "",
              f"Command: `{command}`"]
    return "\n".join(lines)


def figures(f):
    return {"seconds_to_complete": f["secs"], "seconds_to_last_commit": f["secs_commit"],
            "bytes": f["bytes"], "cpu_s": f["cpu"], "failures": f["failures"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=float, default=400, help="total size of the title (MiB)")
    ap.add_argument("--segment-mib", type=float, default=2, help="segment size (MiB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4, help="downloads at once (fill-agent and curl)")
    ap.add_argument("--build", action="store_true", help="run cargo build --release first even if binaries exist")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs) for inspection")
    ap.add_argument("--json", help="write every round, the machine and the command here")
    ap.add_argument("--disk-io", default="threads,io_uring",
                    help="fill-agent's disk_io settings to measure, comma-separated; the first is the headline")
    ap.add_argument("--baseline", metavar="BIN",
                    help="also measure this fill-agent binary (an earlier build, as `before`), same config "
                         "without disk_io")
    ap.add_argument("--baseline-rev", metavar="REV",
                    help="as --baseline, with fill-agent built at this git revision (kept in target/baseline/)")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    started, command, host = data.now(), data.command(), data.machine()

    ensure_tools()
    ensure_binaries(args.build)
    work = tempfile.mkdtemp(prefix="bench-fill-")
    os.chmod(work, 0o755)  # nginx may run its worker as another user
    procs = []
    try:
        packaged = os.path.join(work, "packaged")
        log(f"making {args.mib:g} MiB of content in {packaged}")
        make_content(packaged, args.mib, args.segment_mib)
        nginx, origin = start_nginx(packaged, work)
        procs.append(nginx)
        steering, saddr = start_steering(work, packaged, origin)
        procs.append(steering)
        plan = fill_plan(saddr)
        objects = [(o["key"], o["size"]) for item in plan["items"] for o in item["objects"]]
        kinds = {s["kind"] for item in plan["items"] for s in item["sources"]}
        if not objects or kinds != {"origin"}:
            raise RuntimeError(f"unexpected plan: {len(objects)} objects, sources {kinds}")
        log(f"plan v{plan['version']}: {len(plan['items'])} renditions, {len(objects)} objects, "
            f"{sum(s for _, s in objects):,} bytes, origin {origin}, steering {saddr}")
        log("warm-up: curl once")
        w = curl_round(work, 0, origin, objects, args.concurrency)
        log(f"warm-up curl: {w['secs']:.2f} s, {mbps(w):,.0f} MB/s")
        variants = [{"label": v, "binary": os.path.join(RELEASE, "fill-agent"), "disk_io": v}
                    for v in args.disk_io.split(",") if v]
        if args.baseline:
            variants.append({"label": "before", "binary": os.path.abspath(args.baseline), "disk_io": None})
        elif args.baseline_rev:
            binary, commit = baseline.binary("fill-agent", "fill-agent", args.baseline_rev)
            variants.append({"label": f"before ({commit})", "binary": binary, "disk_io": None})
        fills, curls, rounds = [], [], []
        for n in range(1, args.rounds + 1):
            # Each round in another order, curl included: the run after curl's
            # (its gigabyte of dirty pages being written back) is slower, and no
            # variant may always be the one in that place.
            runs = variants + [None]
            k = (n - 1) % len(runs)
            by_label, c = {}, None
            for v in runs[k:] + runs[:k]:
                if v is None:
                    c = curl_round(work, n, origin, objects, args.concurrency)
                    log(f"round {n} curl: {c['secs']:.2f} s ({mbps(c):,.0f} MB/s), CPU {c['cpu']:.2f} s")
                    continue
                f = fill_round(work, n, saddr, objects, args.concurrency, v)
                by_label[v["label"]] = f
                log(f"round {n} fill-agent {v['label']} ({f['disk_path']}): {f['secs']:.2f} s to complete "
                    f"({mbps(f):,.0f} MB/s), {f['secs_commit']:.2f} s to last commit "
                    f"({mbps(f, 'secs_commit'):,.0f} MB/s), CPU {f['cpu']:.2f} s; "
                    + "; ".join(s.split("fill pass summary", 1)[1].strip() for s in f["summary"]))
            rounds.append({v["label"]: by_label[v["label"]] for v in variants})
            fills.append(by_label[variants[0]["label"]])
            curls.append(c)
        print(report(fills, curls, args, len(objects), command), flush=True)
        print("\n" + variants_report(rounds, curls), flush=True)
        if args.json:
            data.write(args.json, {
                "tool": "scripts/bench_fill.py", "command": command, "date": started, "machine": host,
                "options": vars(args), "objects": len(objects), "variants": len(VARIANTS),
                "warmup_curl": {"seconds": w["secs"], "bytes": w["bytes"], "cpu_s": w["cpu"]},
                "rounds": [{"fill_agent": figures(f),
                            "variants": {label: {**figures(v), "disk_path": v["disk_path"]} for label, v in r.items()},
                            "curl": {"seconds": c["secs"], "bytes": c["bytes"], "cpu_s": c["cpu"]}}
                           for f, r, c in zip(fills, rounds, curls)]})
    finally:
        for p in reversed(procs):
            p.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
