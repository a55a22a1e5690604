"""Measurement files: what every measuring script writes, and the statistics
the renderer computes from them.

A data file is JSON: the measurements themselves (per round, with the unit in
every key: `req_per_s`, `latency_p99_us`, `rss_kib`), the date, the machine
(CPU model, cores, memory, OS, kernel) and the exact command with every option.
The docs are rendered from these files (bench/figures/render.py); nothing in a
rendered doc is typed by hand.

    python3 bench/figures/data.py annotate FILE --via "CMD" [--server-config TOML]

adds the wrapper's command line (and the server configuration it wrote) to a
results file that `oca-bench --results` wrote.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "docs", "data")


def now():
    """The current time, UTC, to the second (ISO 8601)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _version(cmd, pattern=None):
    if not shutil.which(cmd[0]) and not os.path.exists("/usr/sbin/" + cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    line = text[0] if text else ""
    if pattern:
        m = re.search(pattern, out.stdout + out.stderr)
        return m.group(1) if m else line or None
    return line or None


def machine():
    """What the measurements ran on; the same fields `oca-bench --results` writes."""
    model, cpus = "unknown", 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("processor"):
                cpus += 1
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = platform.system()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "cpu_model": model,
        "cpus": cpus,
        "mem_gib": round(mem_kib / (1 << 20), 1),
        "os": os_name,
        "kernel": platform.release(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "rustc": _version(["rustc", "--version"]),
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "wrk": _version(["wrk", "--version"], r"wrk (\S+)"),
    }


def command(argv=None):
    """The command line as run, relative to the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.abspath(argv[0])
    if script.startswith(ROOT + os.sep):
        argv[0] = os.path.relpath(script, ROOT)
    return shlex.join(argv)


def write(path, obj):
    """Write `obj` as JSON (sorted keys, so reruns diff cleanly)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def load(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- statistics


def median(values):
    vs = sorted(v for v in values if v is not None)
    return statistics.median(vs) if vs else None


def ratios(pairs):
    """Per-round ratios a/b of (a, b) pairs where both exist and b is not zero."""
    return [a / b for a, b in pairs if a is not None and b not in (None, 0)]


def spread(values):
    """(median, min, max) of `values`, or None if there are none."""
    vs = [v for v in values if v is not None]
    if not vs:
        return None
    return median(vs), min(vs), max(vs)


# ---------------------------------------------------------------- annotate


def annotate(path, via, server_config=None):
    """Record the wrapper command (and the server configuration) in a results file."""
    obj = load(path)
    obj["via"] = via
    if server_config:
        with open(server_config, "rb") as f:
            cfg = tomllib.load(f)
        # Paths are the run's temporary directory: not part of the setup.
        obj["server_config"] = {k: v for k, v in cfg.items() if k not in ("stores", "listen", "admin_listen")}
    write(path, obj)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    an = sub.add_parser("annotate", help="add the wrapper's command line to a results file")
    an.add_argument("file")
    an.add_argument("--via", required=True)
    an.add_argument("--server-config")
    args = ap.parse_args()
    if args.cmd == "annotate":
        annotate(args.file, args.via, args.server_config)


if __name__ == "__main__":
    sys.exit(main())
