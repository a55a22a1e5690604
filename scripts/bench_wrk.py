#!/usr/bin/env python3
"""oca against nginx with wrk, side by side in one run.

Serves the same files from both servers, alternates them round by round (so the
noise of a shared machine lands on both), and reports for each: requests/s,
Gbit/s, and the server's own CPU seconds (user+system from /proc) per GiB served.
On loopback wrk itself is often the ceiling, so CPU per GiB is the figure that
separates the servers.

    scripts/bench_wrk.py [--duration 10] [--rounds 3] [--layouts pinned,spread]
                         [--sizes 2m,64k] [--servers oca,nginx,oca-shared,oca-buffered,oca-mapped] [--profile]
                         [--json FILE]

--profile samples each server with `perf record` during its last round and keeps
where its CPU went, by category (the TLS library, user-space copies, the kernel's
copies into the socket and out of the page cache, the rest of the kernel).

--json FILE keeps every round (unit in each key), the machine, the date and this
command line, for bench/run.py to render docs/BENCHMARKS.md from.

Layouts: `pinned` = each server gets one worker on CPU 0 and wrk runs on CPU 1;
`spread` = two workers, nothing pinned. Needs nginx and wrk (installed if missing).
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from figures import data  # noqa: E402  (measurement files: machine facts, command, date)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZES = {"2m": (2 << 20, 64), "64k": (64 << 10, 2000), "1m": (1 << 20, 128), "1k": (1 << 10, 1000)}

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
local headers = {}
if os.getenv("BENCH_CLOSE") == "1" then headers["Connection"] = "close" end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.bytes,
    summary.duration, latency:percentile(99), summary.errors.status + summary.errors.read
    + summary.errors.write + summary.errors.connect + summary.errors.timeout))
end
"""


def ensure_tools():
    missing = [p for p, b in (("nginx-light", "nginx"), ("wrk", "wrk"), ("linux-perf", "perf"))
               if not shutil.which(b) and not os.path.exists("/usr/sbin/" + b)]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def make_content(root):
    objects = os.path.join(root, "objects")
    for name, (size, count) in SIZES.items():
        d = os.path.join(objects, "bench", name)
        os.makedirs(d, exist_ok=True)
        block = os.urandom(size)
        for i in range(count):
            with open(os.path.join(d, f"seg-{i:05}.m4s"), "wb") as f:
                f.write(block[i % 251:] + block[:i % 251])  # distinct bytes per object
        with open(os.path.join(root, f"paths-{name}.txt"), "w") as f:
            f.writelines(f"/bench/{name}/seg-{i:05}.m4s\n" for i in range(count))
    # Warm the page cache: this is a test of the serving path, not of the disk.
    subprocess.run(["cat"] + [os.path.join(dp, fn) for dp, _, fns in os.walk(objects) for fn in fns],
                   stdout=subprocess.DEVNULL, check=True)


def make_cert(work):
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o644)  # nginx workers read it as an unprivileged user
    return cert, key


class Server:
    def __init__(self, kind, root, workers, cpus, work, tls=None, binary=None, extra=""):
        self.kind, self.root, self.workers, self.cpus, self.work = kind, root, workers, cpus, work
        # oca: the workspace's release build unless another build is measured beside it.
        self.binary = binary or os.path.join(ROOT, "target/release/oca")
        self.extra = extra  # more oca config lines
        self.tls = tls  # (cert, key) or None
        self.port = free_port()
        self.proc = None
        self.scheme = "https" if tls else "http"

    def start(self):
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        if self.kind.startswith("oca"):
            threading = "shared" if self.kind == "oca-shared" else "per-core"
            # oca-buffered: HTTPS bodies read into a buffer before they are encrypted (by default
            # oca encrypts them straight from mappings of the objects; oca-mapped says so explicitly).
            mapped = {"oca-buffered": "tls_mapped_bodies = false\n",
                      "oca-mapped": "tls_mapped_bodies = true\n"}.get(self.kind, "")
            conf = os.path.join(self.work, f"{self.kind}.toml")
            with open(conf, "w") as f:
                listen = (f'listen = []\ntls_listen = ["127.0.0.1:{self.port}"]\n'
                          f'tls_cert = "{self.tls[0]}"\ntls_key = "{self.tls[1]}"\n') if self.tls \
                    else f'listen = ["127.0.0.1:{self.port}"]\n'
                f.write(listen + f'admin_listen = "127.0.0.1:{free_port()}"\n'
                        f'stores = ["{self.root}"]\nworkers = {self.workers}\nthreading = "{threading}"\n'
                        f'max_connections = 100000\naccess = "open"\n' + mapped + self.extra)
            self.proc = subprocess.Popen(pin + [self.binary, "--config", conf],
                                         stdout=subprocess.DEVNULL, env={**os.environ, "OCA_LOG": "warn"})
        else:
            conf = os.path.join(self.work, "nginx.conf")
            tls_conf = ""
            if self.tls:
                tls_conf = (f"ssl_certificate {self.tls[0]}; ssl_certificate_key {self.tls[1]}; "
                            "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:20m; "
                            "ssl_session_tickets on; ssl_buffer_size 16k;")
            with open(conf, "w") as f:
                f.write(f"""daemon off;
master_process on;
worker_processes {self.workers};
pid {self.work}/nginx.pid;
error_log {self.work}/nginx-error.log warn;
events {{ worker_connections 20000; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    default_type application/octet-stream;
    client_body_temp_path {self.work}/nginx-tmp;
    {tls_conf}
    server {{
        listen 127.0.0.1:{self.port} {"ssl" if self.tls else ""} reuseport backlog=4096;
        root {self.root}/objects;
        location / {{ add_header Cache-Control "public, max-age=31536000, immutable"; }}
    }}
}}
""")
            self.proc = subprocess.Popen(pin + ["nginx", "-c", conf, "-p", self.work],
                                         stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def pids(self):
        pids = [self.proc.pid]
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        except OSError:
            pass
        return pids

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind.startswith("oca") else signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Where a server's CPU goes, from `perf report` lines (dso, symbol): the first matching rule names the
# category. nginx's libcrypto has no symbols here, so a TLS library counts whole.
PROFILE_RULES = [
    ("TLS library (record layer and AES-GCM)",
     lambda dso, sym: dso.startswith(("libcrypto", "libssl")) or re.search(r"aes|gcm|ghash|ring::|rustls", sym)),
    ("user-space copies (memcpy/memmove)", lambda dso, sym: dso.startswith("libc") and re.search(r"mem(move|cpy)", sym)),
    ("kernel: copying into the socket", lambda dso, sym: sym == "_copy_from_iter"),
    ("kernel: copying out of the page cache", lambda dso, sym: sym in ("_copy_to_iter", "copy_page_to_iter",
                                                                    "filemap_read", "filemap_get_read_batch")),
    ("kernel: the rest (TCP, loopback delivery, scheduling)", lambda dso, sym: dso == "[kernel.kallsyms]"),
    ("the rest of the server", lambda dso, sym: True),
]


def profile(data_file):
    """Shares (0..1) of the samples in `data_file` per PROFILE_RULES category."""
    out = subprocess.run(["perf", "report", "-i", data_file, "--no-children", "--sort", "dso,sym", "--stdio",
                          "-g", "none", "--percent-limit", "0"], capture_output=True, text=True, timeout=300).stdout
    shares = {name: 0.0 for name, _ in PROFILE_RULES}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        name = next(n for n, rule in PROFILE_RULES if rule(dso, sym))
        shares[name] += pct / 100
    return shares


def run_wrk(server, size, conns, duration, cpus, work, close=False, perf=False):
    """One wrk run against `server`; figures with their unit in the key."""
    lua = os.path.join(work, "bench.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    pin = ["taskset", "-c", cpus] if cpus else []
    threads = 1 if cpus else 2
    pids = server.pids()
    recorder, perf_data = None, os.path.join(work, f"perf-{server.kind}.data")
    if perf:  # sampled for the whole run, at a rate that costs the server little
        recorder = subprocess.Popen(["perf", "record", "-F", "499", "-o", perf_data, "-p",
                                     ",".join(map(str, pids)), "--", "sleep", str(duration)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = cpu_ticks(pids)
    argv = pin + ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "-s", lua,
                  f"{server.scheme}://127.0.0.1:{server.port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                         env={**os.environ, "BENCH_PATHS": os.path.join(server.root, f"paths-{size}.txt"),
                              "BENCH_CLOSE": "1" if close else "0"})
    after = cpu_ticks(pids)
    shares = None
    if recorder:
        recorder.wait(timeout=duration + 60)
        shares = profile(perf_data)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    reqs, nbytes, dur_us, p99_us, errors = map(int, line.split()[1:])
    secs = dur_us / 1e6
    cpu = (after - before) / CLK_TCK
    gib = nbytes / (1 << 30)
    return {"requests": reqs, "bytes": nbytes, "duration_s": secs, "req_per_s": reqs / secs,
            "gbit_per_s": nbytes * 8 / secs / 1e9, "server_cpu_s": cpu,
            "server_cpu_s_per_gib": cpu / gib if gib else None, "latency_p99_us": p99_us, "errors": errors,
            "rss_kib": rss_kib(pids), "cpu_shares": shares, "wrk_command": shlex.join(argv[:-3] + ["-s", "bench.lua", argv[-1]])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sizes", default="2m,64k")
    ap.add_argument("--layouts", default="pinned,spread")
    ap.add_argument("--servers", default="oca,nginx")
    ap.add_argument("--tls", action="store_true", help="HTTPS (same self-signed certificate for both servers)")
    ap.add_argument("--close", action="store_true",
                    help="a new connection per request (with --tls: handshakes/s)")
    ap.add_argument("--profile", action="store_true",
                    help="sample each server with `perf record` in its last round; where its CPU went, by category")
    ap.add_argument("--json", help="write every round, the machine and the command here")
    args = ap.parse_args()
    started, command, host = data.now(), data.command(), data.machine()
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "oca"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="oca-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    root = os.path.join(work, "store")
    os.makedirs(os.path.join(work, "nginx-tmp"))
    make_content(root)
    tls = make_cert(work) if args.tls else None
    results = []
    layouts = {"pinned": (1, "0", "1"), "spread": (2, None, None)}
    try:
        for layout in args.layouts.split(","):
            workers, server_cpus, client_cpus = layouts[layout]
            servers = [Server(k, root, workers, server_cpus, work, tls) for k in args.servers.split(",")]
            for s in servers:
                s.start()
            try:
                for size in args.sizes.split(","):
                    for rnd in range(args.rounds):
                        for s in servers:
                            r = run_wrk(s, size, args.conns, args.duration, client_cpus, work, args.close,
                                        perf=args.profile and rnd == args.rounds - 1)
                            r.update(server=s.kind, layout=layout, size=size, round=rnd, conns=args.conns)
                            results.append(r)
                            print(f"{layout:6} {size:4} round {rnd} {s.kind:10} {r['req_per_s']:10.0f} req/s "
                                  f"{r['gbit_per_s']:6.2f} Gbit/s  cpu {r['server_cpu_s_per_gib'] or 0:.3f} s/GiB  "
                                  f"p99 {r['latency_p99_us'] / 1000:.2f} ms  errors {r['errors']}", flush=True)
            finally:
                for s in servers:
                    s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedians over rounds; ratio = first server / second server")
    kinds = args.servers.split(",")
    figs = ("req_per_s", "gbit_per_s", "server_cpu_s_per_gib", "latency_p99_us")
    print("| layout | size | server | req/s | Gbit/s | server CPU s/GiB | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for layout in args.layouts.split(","):
        for size in args.sizes.split(","):
            med = {}
            for k in kinds:
                rs = [r for r in results if r["layout"] == layout and r["size"] == size and r["server"] == k]
                med[k] = {m: data.median(r[m] for r in rs) or 0 for m in figs}
                print(f"| {layout} | {size} | {k} | {med[k]['req_per_s']:.0f} | {med[k]['gbit_per_s']:.2f} | "
                      f"{med[k]['server_cpu_s_per_gib']:.3f} | {med[k]['latency_p99_us'] / 1000:.2f} |")
            if len(kinds) > 1:
                a, b = med[kinds[0]], med[kinds[1]]
                print(f"| {layout} | {size} | **{kinds[0]}/{kinds[1]}** | "
                      + " | ".join(f"{a[m] / b[m]:.2f}x" if b[m] else "–" for m in figs) + " |")
    if args.json:
        data.write(args.json, {"tool": "scripts/bench_wrk.py", "command": command, "date": started,
                               "machine": host, "options": vars(args), "rounds": results})

if __name__ == "__main__":
    sys.exit(main())
