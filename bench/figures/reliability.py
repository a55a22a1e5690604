"""The generated blocks of docs/RELIABILITY.md: fuzzing, hostile load, soak and
chaos, each rendered from the results file its command wrote.

A block sits between `<!-- generated: NAME ... -->` and `<!-- end generated: NAME -->`;
everything outside the blocks is prose and is left as it is.
"""

import glob
import os
import re
import shlex

from . import data
from . import text as t

BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) [^>]*-->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)",
                   re.S)

# Goals read against (requirements, not measurements).
HOSTILE_P99_GOAL = 2.0
# A soak series that rose this much (MiB) and is still rising is named as worth watching.
WATCH_RISE = 0.5

# Why a target is slow, for the slowest ones (what the harness does per input).
SLOW_BECAUSE = {
    "bgp": "an input is a session script of many steps, each checked against the prefix-table model",
    "manifest": "every input writes a packaged directory and imports it (tmpfs)",
    "http_request": "every input is parsed whole and in reads of many sizes, and planned against several objects",
    "control_bodies": "every body is parsed as each wire type and applied to a registry",
}

MISSING = {
    "fuzz": "scripts/fuzz.sh --time 180 --results docs/data/reliability/fuzz.json",
    "hostile": "scripts/bench_hostile.sh --calm 10s --attack 30s --results docs/data/reliability/hostile-past-cap.json",
    "soak": "scripts/lab.sh --soak --duration 10m --results docs/data/reliability/soak.json",
    "chaos": "scripts/lab.sh --chaos --duration 3m --results docs/data/reliability/chaos.json",
}


def _load(path):
    return data.load(path) if os.path.exists(path) else None


def _ran(rec):
    """'Run 2026-12-06 21:30 UTC on …' for an oca-bench --results file or a script's data file."""
    return f"Run {t.when(rec.get('started') or rec.get('date'))} on {t.machine(rec.get('machine'))}"


def _command(rec):
    cmd = rec.get("via") or rec["command"]
    return shlex.join(cmd) if isinstance(cmd, list) else cmd


def _regressions(root, target):
    d = os.path.join(root, "fuzz", "regressions", target)
    return len(os.listdir(d)) if os.path.isdir(d) else 0


def fuzz(rec, root):
    rows = []
    for x in rec["targets"]:
        rows.append([f"`{x['target']}`", t.num(x["executions"]), t.num(x["seconds"]), t.num(x["exec_per_s"]),
                     t.num(x["corpus"]), t.num(x["crashes"]), t.num(_regressions(root, x["target"]))])
    crashed = [x for x in rec["targets"] if x["crashes"] or x["exit_status"]]
    if crashed:
        verdict = "Crashes in this run: " + ", ".join(
            f"`{x['target']}` ({x['crashes']}, input in `fuzz/artifacts/{x['target']}/`)" for x in crashed) + "."
    else:
        verdict = f"No target crashed in this run ({sum(x['executions'] or 0 for x in rec['targets']):,} executions in all)."
    slow = sorted((x for x in rec["targets"] if x["exec_per_s"]), key=lambda x: x["exec_per_s"])[:2]
    why = "; ".join(f"`{x['target']}` ({x['exec_per_s']:,}/s): {SLOW_BECAUSE[x['target']]}" for x in slow
                    if x["target"] in SLOW_BECAUSE)
    out = [f"{_ran(rec)}; one target at a time at `nice -n {rec['nice']}`, libFuzzer options "
           f"`{' '.join(rec['limits'])}`:", "", "```sh", rec["command"], "```", "",
           t.table(["target", "executions", "time (s)", "exec/s", "corpus", "crashes in this run",
                    "inputs kept from earlier crashes (fixed)"], rows, "lrrrrrr"), "", verdict]
    if why:
        out += ["", f"The slowest targets by executions per second: {why}."]
    out += ["", "Executions per second is libFuzzer's average over the run. Corpus is the number of inputs "
            "libFuzzer kept in `fuzz/corpus-work/<target>/` after the run (earlier runs' included); the last "
            "column counts the inputs in `fuzz/regressions/<target>/`, below."]
    return out


def fuzz_build(rec):
    b = rec["build"]
    kind = "a build from scratch" if b["cold"] else "a rebuild over an earlier build"
    return [f"- Fuzz targets run from `scripts/fuzz.sh`, not from `.ci/run`: building them (cargo-fuzz, "
            f"optimised, its own dependency tree) took {t.duration(b['seconds'])} in the last recorded run "
            f"({kind}, {t.day(rec['date'])}), plus installing cargo-fuzz. The defects fuzzing found are "
            f"regression tests in the crates' own suites, which CI runs."]


def _cap(rec):
    return (rec.get("server_config") or {}).get("max_connections")


def _hostile_row(rec):
    o, r = rec["options"], rec["report"]
    cap = _cap(rec)
    held = o["slowloris"] + o["flood"]
    where = "past" if cap is not None and held > cap else "under"
    label = (f"{o['slowloris']:,} slowloris + {o['flood']:,} idle = {held:,}, {where} the cap"
             + (f" of {cap:,}" if cap else ""))
    c, a = r["calm"], r["attack"]
    s = r.get("server") or {}
    mib = lambda k: f"{s[k] / 1024:.0f}" if k in s else "–"  # noqa: E731
    return [label, f"{c['p99_us'] / 1000:.2f} → {a['p99_us'] / 1000:.2f} ms ({r['p99_ratio']:.1f}×)",
            t.num(c["errors"] + a["errors"]),
            f"{a['new_ok']:,} served, {a['new_refused']:,} refused 503, {a['new_failed']:,} failed",
            f"{mib('rss_kib_calm_max')} → {mib('rss_kib_attack_max')} → {mib('rss_kib_after')} MiB",
            " → ".join(t.num(s.get(k)) for k in ("fds_calm_max", "fds_attack_max", "fds_after")),
            f"yes, {r['accept_after_ms']:,} ms" if r["accepts_after"] else "**no**"]


def hostile(recs):
    rows = [_hostile_row(r) for r in recs]
    first = recs[0]
    o = first["options"]
    out = [f"{_ran(first)} (the first of {len(recs)}). Attackers, client and server share the machine's cores. "
           f"The runs, in order:", ""]
    for r in recs:
        out.append(f"- `{_command(r)}`")
    def same(key, text):
        vals = {r["options"][key] for r in recs}
        return text(o[key]) if len(vals) == 1 else f"{key.replace('_', ' ')} varying per run"
    out += ["", "Attackers besides the slowloris and idle connections of the first column: "
            + ", ".join([same("stalled", lambda v: f"{v:,} stalled readers of the large object"),
                         same("pipelines", lambda v: f"{v:,} connections pipelining"),
                         same("pipeline_depth", lambda v: f"{v:,} range requests at a time"),
                         same("resets_per_s", lambda v: f"{v:,} resets a second")])
            + "; " + ", ".join([same("calm", lambda v: f"calm {v:g} s"), same("attack", lambda v: f"attack {v:g} s")])
            + ".", "",
            t.table(["run", "player p99 calm → attack (ratio)", "player errors", "new viewers under attack",
                     "oca RSS calm → attack → after", "descriptors calm → attack → after", "accepts after"],
                    rows, "lrrlrrl"), ""]
    reps = [r["report"] for r in recs]
    errors = sum(r["calm"]["errors"] + r["attack"]["errors"] for r in reps)
    holds = [f"the watching player got {errors} errors in all runs"
             + (" (never refused or dropped)" if errors == 0 else "")]
    servers = [r.get("server") for r in reps if r.get("server")]
    if servers:
        holds.append(f"oca's memory peaked at {max(s['rss_kib_attack_max'] for s in servers) / 1024:.0f} MiB under "
                     f"attack and was at most {max(s['rss_kib_after'] for s in servers) / 1024:.0f} MiB after it")
        left = [s["fds_after"] - s["fds_calm_max"] for s in servers]
        holds.append("no descriptor was left behind (as many after as in the calm)" if max(left) <= 0 else
                     f"up to {max(left)} more descriptors after the attack than in the calm")
    acc = [r["accept_after_ms"] for r in reps if r["accepts_after"]]
    holds.append(f"oca accepted again after at most {max(acc):,} ms" if len(acc) == len(reps)
                 else "oca did **not** accept again after the attack in every run")
    refused = [(r, rec) for r, rec in zip(reps, recs) if r["attackers"]["flood_refused"]]
    for r, rec in refused:
        holds.append(f"past the cap, {r['attackers']['flood_refused']:,} connections got an immediate `503` "
                     f"(`{_command(rec)}`)")
    out += ["Measured: " + "; ".join(holds) + ".", ""]
    ratios = [r["p99_ratio"] for r in reps]
    if max(ratios) <= HOSTILE_P99_GOAL:
        out.append(f"The goal of a player p99 within {HOSTILE_P99_GOAL:g}× of calm is met in every run "
                   f"({t.span(min(ratios), max(ratios), 1)}).")
    else:
        rates = [f"{r['attackers']['pipelined_responses'] / r['attack_s']:,.0f}" for r in reps]
        out.append(f"The goal of a player p99 within {HOSTILE_P99_GOAL:g}× of calm is not met "
                   f"({t.span(min(ratios), max(ratios), 1)}). The attackers run on the same cores as oca: the "
                   f"deep pipelines alone are a throughput load ({' and '.join(rates)} responses a second), so "
                   f"the player's p99 includes waiting for a core.")
    return out


def _measure(s):
    return {"rss": "RSS", "fds": "descriptors"}.get(s["measure"], s["measure"])


def _series_text(s):
    unit = f" {s['unit']}" if s["unit"] else ""
    if s["min"] == s["max"]:
        return f"{s['min']:.1f}{unit} flat" if s["unit"] else f"{s['min']:.0f} flat"
    if s["unit"]:
        return (f"{s['first']:.1f} → {s['max']:.1f} → {s['last']:.1f} "
                f"({s['slope_per_hour']:+.1f}, {s['late_slope_per_hour']:+.1f})")
    return f"{s['min']:.0f}–{s['max']:.0f}"


def soak(rec):
    r, o = rec["report"], rec["options"]
    by = {}
    for s in r["series"]:
        by.setdefault(s["process"], {})[s["measure"]] = s
    rows = [[p] + [(_series_text(m[k]) + (" **growing**" if m[k]["growing"] else "")) if k in m else "–"
                   for k in ("rss", "fds", "threads", "tasks")] for p, m in by.items()]
    growing = [f"{s['process']} {_measure(s)}" for s in r["series"] if s["growing"]]
    churn = r["churn"]
    out = [f"{_ran(rec)}: {t.duration(r['duration_s'])}, {r['samples']:,} samples per daemon every "
           f"{r['sample_every_s']:g} s, {o['viewers']} viewers per ISP, fill cap {o['fill_rate_bps'] / 1e6:g} Mbit/s; "
           f"slopes after {t.duration(r['warmup_s'])} of warm-up:", "", "```sh", _command(rec), "```", "",
           t.table(["daemon", "RSS MiB first → max → last (slope/h, late/h)", "descriptors", "threads", "tasks"],
                   rows, "lllll"), ""]
    facts = ["No series was growing by the rule" if not growing else f"Growing by the rule: {', '.join(growing)}",
             "no daemon exited" if not r["exited"] else f"exited: {', '.join(r['exited'])}",
             f"{r['polls']['ok'] + r['polls']['failed']:,} health and metrics polls, {r['polls']['failed']:,} failed"]
    out.append("; ".join(facts) + ". " + _churn_text(churn) + " " + _viewers_text(r["players"]))
    rising = [s for s in r["series"] if not s["growing"] and s["unit"] and s["last"] - s["first"] >= WATCH_RISE
              and s["late_slope_per_hour"] >= 0.5 * s["slope_per_hour"] > 0]
    if rising:
        out += ["", f"Worth watching in a longer soak (not growing by the rule, but up by {WATCH_RISE:g} MiB or more "
                f"and still rising in the last half at least half as fast as over the run): " + "; ".join(
                    f"{s['process']} {_measure(s)} {s['first']:.1f} → {s['last']:.1f} {s['unit']} "
                    f"({s['slope_per_hour']:+.1f}/h, late {s['late_slope_per_hour']:+.1f}/h)" for s in rising) + "."]
    return out


def _churn_text(c):
    return (f"The churn filled `oca-c1` {c['cycles']:,} times ({c['bytes'] / 1e9:.1f} GB, longest refill "
            f"{c['longest_cycle_s']:.1f} s), {len(c['wrong'])} wrong objects"
            + (f"; error: {c['error']}" if c.get("error") else "") + ".")


def _viewers_text(players):
    parts = []
    for isp, p in players.items():
        if not p:
            parts.append(f"ISP {isp}: no report")
            continue
        errors = sum((p["plays"].get("errors") or {}).values())
        wrong = sum((p.get("wrong_bytes") or {}).values())
        where = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in sorted(p["bytes_by_pathway"].items()))
        parts.append(f"ISP {isp}: {p['plays']['started']:,} plays, {p['plays']['failed']:,} refused, {errors} errors, "
                     f"{p['rebuffers']} rebuffers, {p['failovers']} failovers, {p['verified_segments']:,} segments "
                     f"verified and {wrong} wrong, startup p99 {p['startup_us']['p99'] / 1000:.0f} ms, served by "
                     f"{where or 'nothing'}")
    return "Viewers: " + "; ".join(parts) + "."


def chaos(rec):
    r, o = rec["report"], rec["options"]
    rows = []
    for victim, k in r["kills"].items():
        ms = sorted(k["converged_ms"])
        med = ms[len(ms) // 2] if ms else None
        seen = "–" if victim.startswith("fill-agent") else t.num(k["seen_down"])
        rows.append([victim, t.num(k["count"]), seen, f"{t.num(med)} ms, {t.num(ms[-1] if ms else None)} ms"])
    kills = sum(k["count"] for k in r["kills"].values())
    out = [f"{_ran(rec)}: {t.duration(r['duration_s'])}, seed {r['seed']}, a kill every {o['pause'][0]:g}–"
           f"{o['pause'][1]:g} s, down {o['down'][0]:g}–{o['down'][1]:g} s, {o['viewers']} viewers per ISP; "
           f"{kills} kills:", "", "```sh", _command(rec), "```", "",
           t.table(["victim", "kills", "steering saw it down", "fleet whole again after the restart: median, max"],
                   rows, "lrrl"), ""]
    limit = 2 * r["health_interval_ms"]
    slow = r["slow_convergence"]
    facts = [f"{len(r['lost'])} committed objects lost",
             "the bookmark kept" if r["bookmark_kept"] else "the bookmark **lost**",
             f"steering saw the whole fleet up within two health intervals ({limit} ms) after "
             + ("every restart" if not slow else f"all but {len(slow)} restarts")]
    out.append("; ".join(facts) + ". " + _churn_text(r["churn"]) + " " + _viewers_text(r["players"]))
    return out


def todo(fuzz_rec, hostile_recs):
    out = []
    if not hostile_recs:
        out.append(f"- Hostile load: not measured yet (`{MISSING['hostile']}`).")
    elif max(r["report"]["p99_ratio"] for r in hostile_recs) > HOSTILE_P99_GOAL:
        out.append(f"- The hostile-load goal, a player p99 within {HOSTILE_P99_GOAL:g}× of calm; see above.")
    if fuzz_rec:
        out += fuzz_build(fuzz_rec)
    else:
        out.append(f"- Fuzzing: not measured yet (`{MISSING['fuzz']}`).")
    return out


def render_block(name, data_dir, root):
    hostile_recs = [data.load(p) for p in sorted(glob.glob(os.path.join(data_dir, "hostile-*.json")))]
    recs = {n: _load(os.path.join(data_dir, f"{n}.json")) for n in ("fuzz", "soak", "chaos")}
    if name == "todo":
        lines = todo(recs["fuzz"], hostile_recs)
    elif name == "hostile":
        lines = hostile(hostile_recs) if hostile_recs else None
    elif recs[name] is None:
        lines = None
    else:
        lines = fuzz(recs[name], root) if name == "fuzz" else {"soak": soak, "chaos": chaos}[name](recs[name])
    if lines is None:
        lines = [f"Not measured yet: `{MISSING[name]}`."]
    return "\n".join(lines) + "\n"


def render(doc, data_dir, root):
    """`doc` with every generated block rendered again from `data_dir`."""
    def one(m):
        return m.group(1) + render_block(m.group("name"), data_dir, root) + m.group(4)
    return BLOCK.sub(one, doc)
