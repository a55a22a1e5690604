#!/usr/bin/env python3
"""Measure oca against nginx, side by side, and render docs/BENCHMARKS.md from the measurements.

    bench/run.py                      # every section, then render (each data file has its wall time)
    bench/run.py --sections plain,idle --rounds 3 --duration 8s
    bench/run.py --render             # re-render docs/BENCHMARKS.md and RELIABILITY.md, no measuring
    bench/run.py --check              # exit 1 if a rendered doc differs from its data

Each section writes its raw measurements to docs/data/benchmarks/<section>.json:
every round of every figure (unit in each key), the date, the machine (CPU
model, cores, memory, kernel) and the exact command with every option. The
whole of docs/BENCHMARKS.md, and the tables of docs/RELIABILITY.md, are rendered
from the files in docs/data/ (bench/figures/), so sections can be rerun one at a
time and no figure is ever typed by hand. Installs nginx, wrk and openssl if
missing, builds oca and oca-bench, generates the content, starts the servers
(pinned the same way), and stops what it started by pid.

Sections:
  noise      nginx against itself in both layouts: this machine's noise, which
             every ratio is judged against ("within noise")
  plain      2 MiB (64 and 256 connections), 64 KiB, 2 MiB ranges of a 1 GiB file;
             pinned (1 worker on CPU 0, client on CPU 1) and spread (2 workers)
  openloop   fixed arrival rate at 70% of nginx's saturation (64 KiB), latency from
             intended send time
  idle       resident memory with 10,000 idle keep-alive connections
  cold       hot-object p99 while cold objects are read from disk
  wrk        cross-check of the 2 MiB case with wrk, a client we did not write
  tls        HTTPS throughput and handshakes/s (wrk)
  threading  oca per-core runtimes against one shared runtime
  startup    index time with 100,000 objects
  decide     steering decisions in process (cargo bench)
  fill       fill-agent filling an empty disk from an nginx origin, against curl
"""

import argparse
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from figures import data, render  # noqa: E402

OCA_BENCH = os.path.join(ROOT, "target", "release", "oca-bench")

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import baseline  # noqa: E402  (earlier builds, measured beside the current one)

_spec = importlib.util.spec_from_file_location("bench_wrk", os.path.join(ROOT, "scripts", "bench_wrk.py"))
wrkmod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wrkmod)

ALL = ["noise", "plain", "openloop", "idle", "cold", "wrk", "tls", "threading", "startup", "decide", "fill"]
LAYOUTS = {"pinned": (1, "0", "1", 1), "spread": (2, None, None, 2)}  # workers, server cpus, client cpus, threads
# The fraction of nginx's closed-loop saturation the open-loop section offers.
OPEN_LOOP_LOAD = 0.7


def write_keys(path, keys):
    with open(path, "w") as f:
        for key, size in keys:
            f.write(f"{key} {size}\n")


def make_content(work):
    """Everything the sections serve, in one oca disk root that nginx serves too."""
    root = os.path.join(work, "store")
    wrkmod.make_content(root)  # bench/{2m,64k,1m,1k}, plus wrk path lists
    objects = os.path.join(root, "objects")
    keys = {}
    for name, (size, count) in wrkmod.SIZES.items():
        keys[name] = [(f"bench/{name}/seg-{i:05}.m4s", size) for i in range(count)]
    # One 1 GiB "rendition file" for byte-range requests.
    big = os.path.join(objects, "bench", "big")
    os.makedirs(big, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(os.path.join(big, "rendition.mp4"), "wb") as f:
        for i in range(1024):
            f.write(block[i:] + block[:i])
    keys["big"] = [("bench/big/rendition.mp4", 1 << 30)]
    # A cold set bigger than what a few seconds of reading can bring back.
    cold = os.path.join(objects, "bench", "cold")
    os.makedirs(cold, exist_ok=True)
    block = os.urandom(2 << 20)
    for i in range(1024):
        with open(os.path.join(cold, f"seg-{i:05}.m4s"), "wb") as f:
            f.write(block[i % 997:] + block[:i % 997])
    keys["cold"] = [(f"bench/cold/seg-{i:05}.m4s", 2 << 20) for i in range(1024)]
    keys["hot"] = keys["2m"][:16]
    files = {}
    for name, ks in keys.items():
        files[name] = os.path.join(work, f"keys-{name}.txt")
        write_keys(files[name], ks)
    return root, files, {name: {"objects": len(ks), "bytes": sum(s for _, s in ks)} for name, ks in keys.items()}


def oca_bench(args, client_cpus=None, timeout=600):
    pin = ["taskset", "-c", client_cpus] if client_cpus else []
    argv = pin + [OCA_BENCH] + args + ["--json", "--quiet"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"oca-bench {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout), argv


def metrics(r):
    """One oca-bench report's figures, the unit in each key."""
    cpu = r.get("server_cpu") or {}
    return {"requests": r["requests"], "bytes": r["bytes"], "duration_s": r["duration_s"],
            "req_per_s": r["req_per_s"], "gbit_per_s": r["gbit_per_s"],
            "latency_p50_us": r["latency_us"]["p50"], "latency_p99_us": r["latency_us"]["p99"],
            "latency_p999_us": r["latency_us"]["p999"], "ttfb_p99_us": r["ttfb_us"]["p99"],
            "server_cpu_s": cpu.get("cpu_s"), "server_cpu_s_per_gib": cpu.get("cpu_s_per_gib"),
            "server_cpu_us_per_req": cpu.get("cpu_us_per_req"),
            "client_cpu_utilisation": r["client_cpu"]["utilisation"], "errors": r["errors"]["total"],
            "unsent": r["unsent"], "reconnects": r["reconnects"], "rate_req_per_s": r.get("rate")}


def compare(a, b, keys, opts, ctx, layout, case, rounds=None):
    """`oca-bench compare` of servers a and b; every round kept."""
    rounds = rounds or ctx.rounds
    _, _, client_cpus, threads = LAYOUTS[layout]
    args = ["compare", "--a", f"http://127.0.0.1:{a.port}", "--b", f"http://127.0.0.1:{b.port}",
            "--a-name", a.label, "--b-name", b.label, "--keys", keys, "--rounds", str(rounds),
            "--duration", ctx.duration, "--warmup", "1s", "--threads", str(threads), "--no-hash"] + opts
    for p in a.pids():
        args += ["--a-pid", str(p)]
    for p in b.pids():
        args += ["--b-pid", str(p)]
    res, argv = oca_bench(args, client_cpus, timeout=rounds * 2 * (parse_secs(ctx.duration) + 10) + 60)
    return {"layout": layout, "case": case, "a": a.label, "b": b.label, "command": shlex.join(argv),
            "rounds": [{"a": metrics(ra), "b": metrics(rb)} for ra, rb in zip(res["a_runs"], res["b_runs"])]}


def parse_secs(d):
    return float(d.rstrip("s"))


class Servers:
    """oca and nginx (and optionally a second nginx, or earlier oca builds: kind -> binary in `binaries`),
    started for one layout."""

    def __init__(self, root, work, layout, kinds=("oca", "nginx"), binaries=None, extra=None):
        workers, cpus, _, _ = LAYOUTS[layout]
        self.servers = {}
        for kind in kinds:
            sub = os.path.join(work, kind)
            os.makedirs(os.path.join(sub, "nginx-tmp"), exist_ok=True)
            os.chmod(sub, 0o755)
            s = wrkmod.Server("nginx" if kind.startswith("nginx") else kind, root, workers, cpus, sub,
                              binary=(binaries or {}).get(kind), extra=(extra or {}).get(kind, ""))
            s.label = kind
            self.servers[kind] = s

    def __enter__(self):
        for s in self.servers.values():
            s.start()
        return self.servers

    def __exit__(self, *exc):
        for s in self.servers.values():
            s.stop()


def section_noise(ctx):
    out = []
    for layout in LAYOUTS:
        with Servers(ctx.root, ctx.work, layout, ("nginx", "nginx2")) as s:
            out.append(compare(s["nginx"], s["nginx2"], ctx.keys["2m"], ["--connections", "64"], ctx, layout,
                               "2m c64"))
    return {"comparisons": out}


PLAIN_CASES = [("2m c64", "2m", ["--connections", "64"]), ("2m c256", "2m", ["--connections", "256"]),
               ("64k c64", "64k", ["--connections", "64"]),
               ("2 MiB ranges of 1 GiB, c64", "big", ["--connections", "64", "--range-size", "2MiB"])]


def section_plain(ctx):
    out = []
    for layout in LAYOUTS:
        with Servers(ctx.root, ctx.work, layout) as s:
            for case, keys, opts in PLAIN_CASES:
                c = compare(s["oca"], s["nginx"], ctx.keys[keys], opts, ctx, layout, case)
                if keys == "64k":
                    ctx.saturation[layout] = data.median(r["b"]["req_per_s"] for r in c["rounds"])
                out.append(c)
    return {"comparisons": out}


def section_openloop(ctx):
    out = []
    for layout in LAYOUTS:
        with Servers(ctx.root, ctx.work, layout) as s:
            sat, source = ctx.saturation.get(layout), "the plain section of this run (nginx, 64k c64, median)"
            if sat is None:
                cal = compare(s["oca"], s["nginx"], ctx.keys["64k"], ["--connections", "64"], ctx, layout,
                              "calibration", rounds=1)
                sat, source = cal["rounds"][0]["b"]["req_per_s"], "one closed-loop calibration round (nginx, 64k c64)"
            rate = int(sat * OPEN_LOOP_LOAD)
            c = compare(s["oca"], s["nginx"], ctx.keys["64k"], ["--connections", "64", "--rate", str(rate)], ctx,
                        layout, "64k c64 open loop")
            c.update(saturation_req_per_s=sat, saturation_from=source, load_fraction=OPEN_LOOP_LOAD,
                     rate_req_per_s=rate)
            out.append(c)
    return {"comparisons": out}


def idle_connections(server, n, path):
    """Open n keep-alive connections that each served one request; return the sockets."""
    socks = []
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(req)
        socks.append(s)
    for s in socks:
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        head, body = got.split(b"\r\n\r\n", 1)
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += s.recv(65536)
    return socks


def section_idle(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(10_000, hard - 500)
    path = "/bench/1k/seg-00000.m4s"
    rounds = []
    for rnd in range(ctx.rounds):
        # Fresh servers each round: memory freed by the last round's connections
        # may stay with the allocator.
        with Servers(ctx.root, ctx.work, "pinned") as s:
            for kind in ("oca", "nginx"):
                srv = s[kind]
                before = wrkmod.rss_kib(srv.pids())
                socks = idle_connections(srv, n, path)
                time.sleep(1)  # let the servers settle; this is a reading, not synchronisation
                after = wrkmod.rss_kib(srv.pids())
                for so in socks:
                    so.close()
                rounds.append({"round": rnd, "server": kind, "rss_kib_before": before, "rss_kib_with": after})
    return {"layout": "pinned", "connections": n, "object": path, "rounds": rounds}


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths):
    subprocess.run(["cat"] + paths, stdout=subprocess.DEVNULL, check=True)


COLD_CONNECTIONS = 16
# Cold clients, each a process with its share of COLD_CONNECTIONS.
COLD_CLIENTS = 4
# The last commit whose oca read cold windows on tokio's blocking pool, one task per window.
COLD_BASELINE = "331ceec"


def hot_and_cold(server, ctx):
    """Run the hot client and the cold clients at once; the hot report, the cold reports merged, and the
    commands."""
    base = f"http://127.0.0.1:{server.port}"
    common = ["--duration", ctx.cold_duration, "--threads", "1", "--no-hash", "--json", "--quiet"]
    hot_cmd = [OCA_BENCH, "segments", "--target", base, "--keys", ctx.keys["hot"], "--connections",
               str(COLD_CONNECTIONS)] + common
    cold_cmd = [OCA_BENCH, "segments", "--target", base, "--keys", ctx.keys["cold"], "--zipf", "0",
                "--connections", str(COLD_CONNECTIONS // COLD_CLIENTS)] + common
    hot = subprocess.Popen(hot_cmd, stdout=subprocess.PIPE, text=True)
    colds = [subprocess.Popen(cold_cmd, stdout=subprocess.PIPE, text=True) for _ in range(COLD_CLIENTS)]
    hot_out, _ = hot.communicate(timeout=300)
    cold_outs = [json.loads(c.communicate(timeout=300)[0]) for c in colds]
    return json.loads(hot_out), cold_outs, [shlex.join(hot_cmd), f"{COLD_CLIENTS} x " + shlex.join(cold_cmd)]


def merged(reports):
    """Several clients' figures as one: totals summed, the worst p99s."""
    ms = [metrics(r) for r in reports]
    out = dict(ms[0])
    for k in ("requests", "bytes", "req_per_s", "gbit_per_s", "errors", "unsent", "reconnects"):
        out[k] = sum(m[k] for m in ms)
    for k in ("latency_p50_us", "latency_p99_us", "latency_p999_us", "ttfb_p99_us"):
        out[k] = max(m[k] for m in ms)
    out["clients"] = len(ms)
    return out


def section_cold(ctx):
    cold_paths = [os.path.join(ctx.root, "objects", k) for k, _ in (l.split() for l in open(ctx.keys["cold"]))]
    before, commit = baseline.binary("oca", "oca", COLD_BASELINE)
    # oca with its cold reads below the serving threads' priority, to show what `cold_nice` trades, and
    # with the io_uring loader that was the default before the threads' sendfile to /dev/null.
    kinds = ("oca", "oca cold_reads=io_uring", "oca cold_nice=10", f"oca {commit}", "nginx")
    rounds, commands = [], None
    for layout in LAYOUTS:
        with Servers(ctx.root, ctx.work, layout, kinds, {f"oca {commit}": before},
                     {"oca cold_nice=10": "cold_nice = 10\n",
                      "oca cold_reads=io_uring": "cold_reads = \"io_uring\"\n"}) as s:
            for rnd in range(ctx.rounds):
                for kind in kinds:
                    warm(cold_paths)
                    hot_w, cold_w, commands = hot_and_cold(s[kind], ctx)
                    evict(cold_paths)
                    hot_c, cold_c, _ = hot_and_cold(s[kind], ctx)
                    rounds.append({"layout": layout, "server": kind, "round": rnd,
                                   "warm": {"hot": metrics(hot_w), "cold": merged(cold_w)},
                                   "evicted": {"hot": metrics(hot_c), "cold": merged(cold_c)}})
    return {"hot": ctx.sets["hot"], "cold": ctx.sets["cold"], "connections_each": COLD_CONNECTIONS,
            "cold_clients": COLD_CLIENTS, "baseline": {"server": f"oca {commit}", "commit": commit},
            "commands_last_round": commands, "rounds": rounds}


def tool(cmd, timeout=3600):
    """Run a measuring script with --json into a temp file; its data."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        out = subprocess.run(cmd + ["--json", path], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
        # The temporary --json path is how the data came here, not part of the measurement.
        got = data.load(path)
        got.get("options", {}).pop("json", None)
        return dict(got, command=shlex.join(cmd))
    finally:
        os.unlink(path)


def wrk_secs(ctx):
    return str(int(parse_secs(ctx.duration)))


def section_wrk(ctx):
    return {"runs": [dict(tool(["scripts/bench_wrk.py", "--sizes", "2m", "--rounds", str(ctx.rounds),
                                "--duration", wrk_secs(ctx)]), label="2 MiB")]}


def section_tls(ctx):
    d = wrk_secs(ctx)
    return {"runs": [dict(tool(["scripts/bench_wrk.py", "--tls", "--rounds", str(ctx.rounds), "--duration", d]),
                          label="throughput"),
                     dict(tool(["scripts/bench_wrk.py", "--tls", "--close", "--sizes", "1k", "--conns", "16",
                                "--rounds", str(ctx.rounds), "--duration", d]), label="handshakes"),
                     # The default (bodies encrypted from mappings) against tls_mapped_bodies = false.
                     dict(tool(["scripts/bench_wrk.py", "--tls", "--servers", "oca,oca-buffered", "--sizes", "2m",
                                "--rounds", str(ctx.rounds), "--duration", d]), label="bodies from mappings"),
                     # Where the CPU goes: what is left to save without kernel TLS.
                     dict(tool(["scripts/bench_wrk.py", "--tls", "--servers", "oca,oca-buffered,nginx", "--sizes", "2m",
                                "--rounds", "1", "--duration", d, "--profile"]), label="where the CPU goes")]}


def section_threading(ctx):
    return {"runs": [dict(tool(["scripts/bench_wrk.py", "--layouts", "spread", "--servers", "oca,oca-shared",
                                "--rounds", str(ctx.rounds), "--duration", wrk_secs(ctx), "--conns", c]),
                          label="per-core against shared") for c in ("64", "256")]}


def section_startup(ctx):
    return {"runs": [tool(["scripts/bench_startup.py", "--objects", "100000"])]}


DECIDE_PATTERNS = {
    "fleet": re.compile(r"fleet: (\d+) appliances, (\d+) served \(prefix, appliance\) pairs, (\d+) client networks"),
    "build": re.compile(r"snapshot build: (\d+) ms"),
    "mix": re.compile(r"^(.+): primary isp (\d+)% region-ixp (\d+)% any (\d+)% saturated ([\d.]+)% origin ([\d.]+)%; "
                      r"overflowed (\d+)%; ([\d.]+) picks/decision"),
    "rate": re.compile(r"([\d.]+) M decisions/s \(StdRng\), ([\d.]+) M decisions/s \(SmallRng\)"),
}


def parse_decide(text):
    """The decide benchmark's printout as figures; raises if a line is missing."""
    out = {"scenarios": []}
    for line in text.splitlines():
        line = line.strip()
        if m := DECIDE_PATTERNS["fleet"].search(line):
            out.update(appliances=int(m[1]), served_pairs=int(m[2]), client_networks=int(m[3]))
        elif m := DECIDE_PATTERNS["build"].search(line):
            out["snapshot_build_ms"] = int(m[1])
        elif m := DECIDE_PATTERNS["mix"].search(line):
            out["scenarios"].append({"clients": m[1], "primary_isp_pct": int(m[2]), "primary_region_ixp_pct": int(m[3]),
                                     "primary_any_pct": int(m[4]), "saturated_pct": float(m[5]),
                                     "origin_pct": float(m[6]), "overflowed_pct": int(m[7]),
                                     "picks_per_decision": float(m[8])})
        elif m := DECIDE_PATTERNS["rate"].search(line):
            out["scenarios"][-1].update(decisions_per_s_std_rng=float(m[1]) * 1e6,
                                        decisions_per_s_small_rng=float(m[2]) * 1e6)
    if "snapshot_build_ms" not in out or not out["scenarios"]:
        raise SystemExit(f"cannot read the decide benchmark's output:\n{text}")
    return out


def section_decide(ctx):
    cmd = ["cargo", "bench", "-q", "-p", "steering", "--bench", "decide"]
    runs = []
    for _ in range(ctx.rounds):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600, check=True)
        runs.append(dict(parse_decide(out.stdout), stdout=out.stdout))
    return {"tool_command": shlex.join(cmd), "runs": runs}


def section_fill(ctx):
    # `before`: the last commit whose fill-agent wrote and fsynced on its async workers.
    # Four runs a round (three fill-agents and curl) rotate, so rounds come in fours; eight, as the
    # rounds differ far more than the variants do.
    return {"runs": [tool(["scripts/bench_fill.py", "--mib", "1000", "--rounds", str(max(8, ctx.rounds)),
                           "--disk-io", "threads,io_uring", "--baseline-rev", "ea28d10"])]}


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(ALL))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="8s")
    ap.add_argument("--cold-duration", default="5s")
    ap.add_argument("--render", action="store_true", help="re-render the docs from docs/data/ without measuring")
    ap.add_argument("--check", action="store_true", help="exit 1 if a rendered doc differs from what its data gives")
    args = ap.parse_args()
    if args.check:
        stale = render.check()
        for path in stale:
            print(f"{os.path.relpath(path, ROOT)} differs from what bench/run.py --render makes of docs/data/",
                  file=sys.stderr)
        return 1 if stale else 0
    if args.render:
        render.write_all()
        return 0
    sections = args.sections.split(",")
    for name in sections:
        if name not in ALL:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(ALL)}")
    # Every option, resolved, so the command reproduces the run.
    command = shlex.join(["bench/run.py", "--sections", args.sections, "--rounds", str(args.rounds),
                          "--duration", args.duration, "--cold-duration", args.cold_duration])
    wrkmod.ensure_tools()
    if not shutil.which("openssl"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssl"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "oca", "-p", "bench"], cwd=ROOT, check=True)
    ctx = Ctx()
    ctx.rounds, ctx.duration, ctx.cold_duration = args.rounds, args.duration, args.cold_duration
    ctx.work = tempfile.mkdtemp(prefix="oca-benchrun-")
    os.chmod(ctx.work, 0o755)
    ctx.saturation = {}
    try:
        ctx.root, ctx.keys, ctx.sets = make_content(ctx.work)
        for name in sections:
            print(f"== {name}", flush=True)
            started, host, t0 = data.now(), data.machine(), time.monotonic()
            measured = globals()[f"section_{name}"](ctx)
            record = {"section": name, "date": started, "machine": host, "command": command,
                      "options": {"rounds": args.rounds, "duration": args.duration,
                                  "cold_duration": args.cold_duration},
                      "wall_s": round(time.monotonic() - t0, 1), **measured}
            data.write(render.benchmark_file(name), record)
            try:
                render.write_all()
            except Exception as e:  # the measurement is saved; a renderer fix can render it later
                print(f"   rendering failed ({e!r}); the data is in {render.benchmark_file(name)}", flush=True)
            print(f"   {record['wall_s']:.0f} s", flush=True)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
