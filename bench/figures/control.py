"""The play API's section of docs/BENCHMARKS.md, from docs/data/control/plays.json
(bench/control.py: `oca-bench plays` against steering on each store).

Every figure and verdict is computed here from the runs; the goals are the
issue's (requirements, not measurements).
"""

from . import text as t

SOURCE = "docs/data/control/plays.json"

# Goals (issue 17), on this 2-core machine with steering on one core.
PLAYS_GOAL = 3000  # plays/s at saturation
P99_GOAL_MS = 10.0  # at 70% of saturation
HISTORY_GOAL = 0.10  # the last minute within 10% of the first
FLEET_P99_FACTOR = 2.0  # p99 with 10,000 appliances heartbeating, against without
# (and the same plays/s goal, saturation measured again with them)

STORES = {
    "sqlite": "SQLite (embedded)",
    "pg1": "PostgreSQL, one instance",
    "pg2": "PostgreSQL, two instances",
}

PROSE = """`POST /v1/play` from many accounts (each a viewer token, taken round-robin), for one
title: authentication, the profile, the title, entitlement and rendition selection, the
steering decision, two signed tokens, the stream-limit check and the stream's insert (one
transaction), the resume position, and the JSON answer. steering is pinned to one core
(`taskset -c 1`), oca-bench to the other; PostgreSQL, when used, runs on the same machine
pinned to oca-bench's core (`taskset -c 0`), so steering has its core to itself as it would
with the database on a machine of its own (unpinned, PostgreSQL's backends took steering's
core too and the open loop collapsed), and each instance keeps at most
`database_connections = 16` connections to it. The fleet is the origin alone (no
appliances), so the decision is cheap; plays on a plan without a stream limit, with
`play.stream_timeout = "10s"`. Closed loop: each connection sends its next play when the
answer arrives. Open loop: a fixed rate, 70% of saturation, taken as the lower of the best
short closed-loop rate and the long run's (what the store sustains: PostgreSQL's short-run
peak was a transient), with latency from the intended send time (a stall counts for every
play it delayed). *Cores busy*: CPU
seconds per second of the run, of steering (all its threads) and of every PostgreSQL
process. The last two runs of each store measure saturation again (closed loop) and the
open loop at 70% of it while `oca-bench appliances` simulates a fleet (declared in
steering's config, `health.interval = "10s"`): each appliance registers, sends its full
inventory, then heartbeats every 10 s (a heartbeat counts as a health poll, so steering
polls only the ones that fall silent), and every one of them is in the steering snapshot
the plays are decided on."""


def _run_rows(store):
    rows = []
    for r in store["runs"]:
        if r["mode"] == "open" and r.get("appliances"):
            a = r["appliances"]
            kind = (f"open, {t.num(r['target_per_s'])}/s, with {t.num(a['appliances'])} appliances "
                    f"({t.num(a['heartbeats_per_s'])} heartbeats/s)")
        elif r.get("with_appliances"):
            kind = (f"closed, {r['connections']} conn., with {t.num(r['with_appliances'])} "
                    "appliances")
        elif r["mode"] == "open":
            kind = f"open, {t.num(r['target_per_s'])}/s"
        elif r["duration_s"] > 120:
            kind = f"closed, {r['connections']} conn., {t.duration(r['duration_s'])}"
        else:
            kind = f"closed, {r['connections']} conn."
        l, c = r["latency_ms"], r.get("cores_busy", {})
        rows.append([kind, t.num(r["ok_per_s"]), t.num(l["p50"], 2), t.num(l["p99"], 2),
                     t.num(l["p999"], 2), t.num(c.get("steering"), 2), t.num(c.get("postgres"), 2),
                     t.num(sum(r["refused"].values()) + r["errors"])])
    return rows


def _open_run(store):
    return next((r for r in store["runs"] if r["mode"] == "open" and not r.get("appliances")), None)


def _fleet_run(store):
    return next((r for r in store["runs"] if r.get("appliances")), None)


def _fleet_closed(store):
    return next((r for r in store["runs"] if r.get("with_appliances")), None)


def _long_run(store):
    runs = [r for r in store["runs"] if r["mode"] == "closed" and not r.get("with_appliances")]
    return max(runs, key=lambda r: r["duration_s"]) if runs else None


def history(run):
    """(first minute, last minute, last/first - 1) of plays/s, from the run's
    windows; None when the run is shorter than two minutes."""
    w, secs = run["windows_per_s"], run["window_s"]
    per_minute = max(1, int(round(60 / secs)))
    if len(w) < 2 * per_minute:
        return None
    first = sum(w[:per_minute]) / per_minute
    last = sum(w[-per_minute:]) / per_minute
    return first, last, (last / first - 1) if first else None


def goals(store):
    """[(goal, measured, met)] for one store."""
    out = []
    sat = store.get("sustained_per_s", store["saturation_per_s"])
    out.append((f"≥ {t.num(PLAYS_GOAL)} plays/s, sustained",
                f"{t.num(sat)}/s (short-run peak {t.num(store['saturation_per_s'])}/s)",
                sat >= PLAYS_GOAL))
    o = _open_run(store)
    if o:
        p99 = o["latency_ms"]["p99"]
        out.append((f"p99 ≤ {P99_GOAL_MS:.0f} ms at 70% of saturation",
                    f"{p99:.2f} ms at {t.num(o['target_per_s'])}/s", p99 <= P99_GOAL_MS))
    fc = _fleet_closed(store)
    if fc:
        out.append((f"≥ {t.num(PLAYS_GOAL)} plays/s with {t.num(fc['with_appliances'])} appliances "
                    "heartbeating", f"{t.num(fc['ok_per_s'])}/s", fc["ok_per_s"] >= PLAYS_GOAL))
    f = _fleet_run(store)
    if o and f:
        base, loaded = o["latency_ms"]["p99"], f["latency_ms"]["p99"]
        a = f["appliances"]
        # Against the p99 goal when the run without them missed it: a
        # collapsed baseline must not make any p99 look fine.
        allowed = FLEET_P99_FACTOR * min(base, P99_GOAL_MS)
        out.append((f"p99 at 70% of that at most {FLEET_P99_FACTOR:.0f}× the p99 without them "
                    f"(and at most {FLEET_P99_FACTOR * P99_GOAL_MS:.0f} ms)",
                    f"{loaded:.2f} ms at {t.num(f['target_per_s'])}/s against {base:.2f} ms "
                    f"({loaded / base:.2f}×); "
                    f"heartbeat p99 {a['latency_ms']['p99']:.2f} ms, "
                    f"{t.num(a['heartbeats_failed'])} failed, {t.num(a.get('heartbeats_missed', 0))} not sent in time",
                    loaded <= allowed and a["heartbeats_failed"] == 0
                    and a.get("heartbeats_missed", 0) == 0))
    lr = _long_run(store)
    h = history(lr) if lr else None
    if h:
        first, last, change = h
        out.append((f"last minute within {HISTORY_GOAL:.0%} of the first",
                    f"{t.num(first)}/s → {t.num(last)}/s ({t.percent(change)})",
                    abs(change) <= HISTORY_GOAL))
    return out


def limit(store):
    """One sentence: what was busy at saturation."""
    runs = [r for r in store["runs"] if r["mode"] == "closed" and r.get("cores_busy")
            and not r.get("with_appliances")]
    if not runs:
        return ""
    best = max(runs, key=lambda r: r["ok_per_s"])
    c = best["cores_busy"]
    text = (f"At its best closed-loop rate steering kept {c['steering']:.2f} of its core busy")
    if c.get("postgres"):
        text += f" and PostgreSQL {c['postgres']:.2f} cores"
    text += f" (oca-bench {c.get('oca_bench', 0):.2f})"
    return text + "."


def section(rec):
    out = ["", "## The play API: steering on SQLite and on PostgreSQL", ""]
    if not rec:
        return out + ["Not measured yet: `bench/control.py`.", ""]
    out += [f"Measured {t.when(rec['date'])} on {t.machine(rec['machine'])}. Made by:", "",
            "```sh", rec["command"], "```", "",
            f"{t.num(rec['accounts'])} accounts. " + PROSE, ""]
    for store in rec["stores"]:
        name = STORES.get(store["store"], store["store"])
        out += [f"### {name}", ""]
        out.append(t.table(["run", "plays/s", "p50 ms", "p99 ms", "p99.9 ms", "steering cores",
                            "PostgreSQL cores", "refused or failed"],
                           _run_rows(store), "lrrrrrrr"))
        out.append("")
        lim = limit(store)
        if lim:
            out += [lim, ""]
        out.append(t.table(["goal", "measured", "met"],
                           [[g, m, "**yes**" if ok else "no"] for g, m, ok in goals(store)], "lll"))
        out.append("")
    cmds = sorted({r["command"] for s in rec["stores"] for r in s["runs"]}
                  | {r["appliances"]["command"] for s in rec["stores"] for r in s["runs"]
                     if r.get("appliances")})
    out += ["The oca-bench commands, as run (the addresses are the run's own):", "", "```sh"]
    out += cmds
    out += ["```", ""]
    if not any(_fleet_run(s) for s in rec["stores"]):
        out += ["Not measured yet: the same with 10,000 simulated appliances heartbeating every 10 s "
                "(`bench/control.py --appliances 10000`).", ""]
    return out


FAILOVER_SOURCE = "docs/data/control/failover.json"
FAILOVER_GOAL_MS = 5000  # "new plays succeed through the other region within a few seconds"

FAILOVER_PROSE = """`scripts/lab.sh --regions 2`: the lab's stack with steering as two instances, `steer-a`
in eu-west and `steer-b` in us-east, on one PostgreSQL primary with a synchronous streaming
standby (steering is given both hosts with `target_session_attrs=read-write`); appliances
and viewers (`oca-bench players --steering A,B`) are given both instances, eu-west's first.
A third of the way into the viewing, eu-west's steering is killed (`kill -9`) and a fresh
viewer presses play again and again (eu-west, then us-east) until one answers 200; two
thirds in, the PostgreSQL primary is killed and the standby promoted, and the same probe
runs against us-east. *Moves*: requests a viewer sent to the other instance because the
one in use failed (`steering_failovers`)."""


def failover_goals(rep):
    """[(goal, measured, met)] of the drills."""
    region, db = rep["region_kill_to_first_play_ms"], rep["database_kill_to_first_play_ms"]
    failed = sum(r["plays"]["failed"] for _, r in rep["viewers"])
    errors = sum(sum(r["plays"]["errors"].values()) for _, r in rep["viewers"])
    stalled = sum(r["rebuffer_s"] for _, r in rep["viewers"])
    return [
        (f"a new play within {t.num(FAILOVER_GOAL_MS)} ms of a region's steering dying",
         f"{t.num(region, 1)} ms", region <= FAILOVER_GOAL_MS),
        (f"a new play within {t.num(FAILOVER_GOAL_MS)} ms of the database primary dying",
         f"{t.num(db, 1)} ms", db <= FAILOVER_GOAL_MS),
        ("no viewer's play refused, failed or stalled", 
         f"{t.num(failed)} refused, {t.num(errors)} failed, {stalled:.2f} s stalled",
         failed == 0 and errors == 0 and stalled == 0),
    ]


def failover_section(rec):
    out = ["", "## Failover between regions", ""]
    if not rec:
        return out + ["Not measured yet: `scripts/lab.sh --regions 2 --results "
                      f"{FAILOVER_SOURCE}`.", ""]
    rep = rec["report"]
    out += [f"Measured {t.when(rec.get('finished'))} on {t.machine(rec.get('machine'))}. Made by:",
            "", "```sh", "scripts/lab.sh " + " ".join(rec["command"][1:]), "```", "",
            FAILOVER_PROSE, ""]
    out.append(t.table(["drill", "at", "first new play after"], [
        ["eu-west's steering killed", f"{t.num(rep['region_kill_at_s'], 1)} s",
         f"{t.num(rep['region_kill_to_first_play_ms'], 1)} ms"],
        ["PostgreSQL primary killed, standby promoted", f"{t.num(rep['database_kill_at_s'], 1)} s",
         f"{t.num(rep['database_kill_to_first_play_ms'], 1)} ms"],
    ], "lrr"))
    out.append("")
    rows = []
    for isp, r in rep["viewers"]:
        rows.append([f"ISP {isp}", t.num(r["viewers"]), t.num(r["plays"]["started"]),
                     t.num(r["plays"]["failed"] + sum(r["plays"]["errors"].values())),
                     t.num(r.get("steering_failovers", 0)), t.num(r["rebuffers"]),
                     f"{r['rebuffer_s']:.2f}"])
    out.append(t.table(["viewers", "n", "plays", "refused or failed", "moves", "rebuffers",
                        "stalled s"], rows, "lrrrrrr"))
    out.append("")
    out.append(t.table(["goal", "measured", "met"],
                       [[g, m, "**yes**" if ok else "no"] for g, m, ok in failover_goals(rep)],
                       "lll"))
    out.append("")
    return out


FLASH_SOURCE = "docs/data/control/flash.json"
FLASH_P99_FACTOR = 2.0  # admitted plays' p99 at the peak, against the calm's (issue 22)

FLASH_PROSE = """A launch's flash crowd: `POST /v1/play` open loop at a calm rate (a tenth of the
capacity measured first, closed loop, in the same run), then, from 10 s, rising linearly
to 20 times that over 10 s and staying there for 10 s: the peak asks for about twice what
steering can decide. The same run twice on one store, with admission control on (the
default, docs/STEERING.md, *Admission*) and off. steering is pinned to one core and
oca-bench to the other as above; accounts are taken round-robin. Per phase, by when each
play was meant to be sent: plays offered, admitted (200) and refused per second, and the
admitted plays' latency from their intended send time. With admission off, every one of
the 256 connections ends up waiting on a slow answer, so fewer plays go out at the peak
than were meant to; each still counts from when it was meant to be sent."""

FLASH_FLEET_PROSE = """The plays come from {isps} ISPs (`X-Forwarded-For` addresses drawn from
{clients}), each with four embedded appliances that oca-bench simulates alongside
(`oca-bench plays --appliances`): every admitted play becomes a stream on the appliance it
was steered to, and each appliance heartbeats the egress of its streams every second, so
steering steers by the load the crowd puts on the fleet. The second table is the fleet at
the end of each phase (streams are not ended within the run: a launch's viewers keep
watching) and the appliances' heartbeat latency during it (from each heartbeat's intended
send time): admission control never refuses a heartbeat, and keeps steering's core free
enough to answer them."""


def flash_goals(runs):
    """[(goal, measured, met)] of the run with admission on."""
    on = next((r for r in runs if r.get("admission") is True), None)
    if not on or not on.get("phases"):
        return []
    ph = {p["phase"]: p for p in on["phases"]}
    calm, peak = ph["calm"]["latency_ms"]["p99"], ph["peak"]["latency_ms"]["p99"]
    refused = ph["peak"]["refused_per_s"]
    errors = sum(p["errors"] for p in on["phases"])
    return [
        (f"admitted plays' p99 at the peak within {FLASH_P99_FACTOR:g}× the calm's",
         f"{t.num(peak, 2)} ms against {t.num(calm, 2)} ms ({peak / calm:.2f}×)" if calm else "–",
         bool(calm) and peak <= FLASH_P99_FACTOR * calm),
        ("the excess refused cleanly (a status and `Retry-After`, no timeouts or resets)",
         f"{t.num(refused, 1)} refused/s at the peak; {t.num(errors)} without an answer",
         refused > 0 and errors == 0),
    ] + flash_heartbeat_goal(on)


def flash_heartbeat_goal(on):
    """The appliances keep priority: their heartbeats' p99 at the peak within
    the same factor of the calm's, with admission on."""
    f = on.get("fleet") or {}
    ph = {p["phase"]: p for p in f.get("phases", [])}
    if "calm" not in ph or "peak" not in ph:
        return []
    calm, peak = ph["calm"]["heartbeat_latency_ms"]["p99"], ph["peak"]["heartbeat_latency_ms"]["p99"]
    return [(f"appliances' heartbeats' p99 at the peak within {FLASH_P99_FACTOR:g}× the calm's",
             f"{t.num(peak, 2)} ms against {t.num(calm, 2)} ms ({peak / calm:.2f}×)" if calm else "–",
             bool(calm) and peak <= FLASH_P99_FACTOR * calm)]


def flash_section(rec):
    out = ["", "## A flash crowd: admission control", ""]
    if not rec:
        return out + [f"Not measured yet: `bench/flash.py` (writes `{FLASH_SOURCE}`).", ""]
    out += [f"Measured {t.when(rec.get('date'))} on {t.machine(rec.get('machine'))}. Made by:", "",
            "```sh", rec["command"], "```", "", FLASH_PROSE, ""]
    cap = next((r for r in rec["runs"] if "phases" not in r), None)
    if cap:
        out += [f"Capacity, closed loop: {t.num(cap['ok_per_s'], 0)} plays/s (`{cap['command']}`).", ""]
    rows = []
    for r in rec["runs"]:
        for p in r.get("phases", []):
            refused = ", ".join(f"{t.num(n)}× {s}" for s, n in sorted(p["refused"].items())) or "–"
            rows.append([r["label"], p["phase"], f"{t.num(p['from_s'], 0)}–{t.num(p['to_s'], 0)} s",
                         t.num(p["offered_per_s"], 0), t.num(p["ok_per_s"], 0),
                         t.num(p["refused_per_s"], 0), refused, t.num(p["errors"]),
                         t.num(p["latency_ms"]["p50"], 2), t.num(p["latency_ms"]["p99"], 2)])
    out.append(t.table(["steering", "phase", "from–to", "offered/s", "admitted/s", "refused/s",
                        "refused by status", "no answer", "admitted p50 ms", "admitted p99 ms"],
                       rows, "lllrrrlrrr"))
    out.append("")
    fleet_rows = []
    sizes = None
    for r in rec["runs"]:
        f = r.get("fleet")
        if not f or not f.get("phases"):
            continue
        sizes = (f["appliances"], f["capacity_gbps"], f["stream_mbps"])
        for p in f["phases"]:
            e = p["at_end"]
            fleet_rows.append([r["label"], p["phase"], t.num(e["streams"]),
                               f"{e['mean_utilisation'] * 100:.1f}%", f"{e['max_utilisation'] * 100:.1f}%",
                               t.num(e["full"]), t.num(f["streams_elsewhere"]) if p["phase"] == "peak" else "",
                               t.num(p["heartbeat_latency_ms"]["p50"], 2),
                               t.num(p["heartbeat_latency_ms"]["p99"], 2)])
    if fleet_rows:
        n, gbps, mbps = sizes
        isps = max(int(n) // 4, 1)
        clients = f"10.0.0.0/{16 - (isps - 1).bit_length()}"
        out += [FLASH_FLEET_PROSE.format(isps=t.num(isps), clients=clients), "",
                f"{t.num(n)} appliances of {t.num(gbps, 1)} Gbit/s, {t.num(mbps, 1)} Mbit/s a stream; "
                f"`full`: at or above steering's `steer.max_utilisation` (0.85); `elsewhere`: "
                "admitted plays whose primary was not one of them (the origin), over the run.", ""]
        out.append(t.table(["steering", "end of", "streams", "mean utilisation", "max utilisation",
                            "full", "elsewhere", "heartbeat p50 ms", "heartbeat p99 ms"],
                           fleet_rows, "llrrrrrrr"))
        out.append("")
    for r in rec["runs"]:
        if "phases" in r:
            out.append(f"- {r['label']}: `{r['command']}`")
    out.append("")
    goals = flash_goals(rec["runs"])
    if goals:
        out.append(t.table(["goal", "measured", "met"],
                           [[g, m, "**yes**" if ok else "no"] for g, m, ok in goals], "lll"))
        out.append("")
    return out


HOME_SOURCE = "docs/data/control/home.json"
HOME_P99_MS = 10.0  # issue 23: /v1/home p99 from cache at the play API's rate

HOME_PROSE = """`GET /v1/home` with the recommendation service running (`steering recommender` on the
same SQLite store, its model trained on the plays of the capacity run): the play API's
capacity is measured first (closed loop, 16 connections), every account's home page is then
asked for at least once to fill steering's per-profile cache, and the home page is asked for
open loop at the play API's capacity, each account in turn. steering is pinned to one core and
oca-bench to the other. Latency is from each request's intended send time."""


def home_goals(rec):
    run = next((r for r in rec["runs"] if r.get("mode") == "open"), None)
    if not run:
        return []
    p99 = run["latency_ms"]["p99"]
    rate = run.get("target_per_s") or 0
    served = run["ok_per_s"]
    return [(f"`/v1/home` p99 at the play API's rate within {HOME_P99_MS:g} ms",
             f"{t.num(p99, 2)} ms at {t.num(served, 0)} of {t.num(rate, 0)} pages/s asked",
             p99 <= HOME_P99_MS and served >= 0.98 * rate and run["errors"] == 0)]


def home_section(rec):
    out = ["", "## Home rows from cache", ""]
    if not rec:
        return out + [f"Not measured yet: `bench/home.py` (writes `{HOME_SOURCE}`).", ""]
    out += [f"Measured {t.when(rec.get('date'))} on {t.machine(rec.get('machine'))}. Made by:", "",
            "```sh", rec["command"], "```", "", HOME_PROSE, ""]
    rows = []
    for r in rec["runs"]:
        l = r["latency_ms"]
        refused = ", ".join(f"{t.num(n)}× {s}" for s, n in sorted(r["refused"].items())) or "–"
        rows.append([r["label"], t.num(r["ok_per_s"], 0), refused, t.num(r["errors"]),
                     t.num(l["p50"], 2), t.num(l["p99"], 2), t.num(l["p999"], 2),
                     t.num(r["cores_busy"]["steering"], 2)])
    out.append(t.table(["run", "answered/s", "refused", "no answer", "p50 ms", "p99 ms", "p99.9 ms",
                        "steering cores"], rows, "lrlrrrrr"))
    out.append("")
    src = rec.get("rows_by_source") or {}
    if src:
        out += ["Pages' personalised rows by source over the whole run (`steering_home_rows_total`): "
                + ", ".join(f"{k} {t.num(v)}" for k, v in sorted(src.items())) + ".", ""]
    for r in rec["runs"]:
        out.append(f"- {r['label']}: `{r['command']}`")
    out.append("")
    goals = home_goals(rec)
    if goals:
        out.append(t.table(["goal", "measured", "met"],
                           [[g, m, "**yes**" if ok else "no"] for g, m, ok in goals], "lll"))
        out.append("")
    return out


BEATS_SOURCE = "docs/data/control/heartbeats.json"
# Goals (issue 24's "batched and cheap", made measurable): a heartbeat's CPU at most
# this share of a play's, and plays' p99 at a quarter of the capacity with every
# active play heartbeating within this factor of the p99 without.
BEAT_COST_SHARE = 0.10
BEATS_P99_FACTOR = 2.0

BEATS_PROSE = """`POST /v1/play` without and with every admitted play then sending playback heartbeats
(`oca-bench plays --play-heartbeats`): each play watches for {watch} s and heartbeats every
{every} s to its signed `heartbeat_url` with one download sample per 4 s of media from its
primary appliance, the last heartbeat saying `ended` ({per_play} a play). The plays come from
four ISPs (`X-Forwarded-For` in 10.0.0.0/14) with four simulated embedded appliances each,
so the samples are measurements of each play's real pathways; `play.stream_timeout` is the
default 2 minutes (a play's sighting is written once a quarter of it). Closed loop (16 connections)
for the capacity, then open loop at {share} of the capacity without heartbeats, where
steering is not saturated: there, a heartbeat's CPU is the extra steering CPU per
heartbeat answered, against a play's CPU per play without heartbeats. The runs alternate
without/with, {reps} of each. *Steady*: plays/s in the windows after the first {watch} s,
once as many plays are watching (and heartbeating) as will be. Heartbeat latency counts
from when each was due."""


def _share(rec):
    """The open loop's rate as a share of the capacity, in words."""
    share = rec.get("open_share", 0.25)
    return {0.25: "a quarter", 0.5: "half"}.get(share, f"{share:g}")


def _steady(run, watch):
    """Plays/s in the windows after `watch` seconds (all of them if none)."""
    w = run.get("window_s") or 1
    tail = run["windows_per_s"][int(watch // w):]
    tail = tail or run["windows_per_s"]
    return sum(tail) / len(tail)


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2 if n else 0.0


def beats_figures(rec):
    """Medians over the repetitions: capacity ratio, per-request CPU, p99s."""
    watch = rec["watch_s"]
    runs = rec["runs"]

    def pick(closed, beats):
        return [r for r in runs if (r.get("mode") == "closed") == closed and r["heartbeats"] == beats]

    cap0 = [_steady(r, watch) for r in pick(True, False)]
    cap1 = [_steady(r, watch) for r in pick(True, True)]
    open0, open1 = pick(False, False), pick(False, True)
    play_us = [r["cores_busy"]["steering"] / r["ok_per_s"] * 1e6 for r in open0 if r["ok_per_s"]]
    base = _median([r["cores_busy"]["steering"] for r in open0])
    beat_us = [(r["cores_busy"]["steering"] - base) / r["play_heartbeats"]["ok_per_s"] * 1e6
               for r in open1 if r["play_heartbeats"]["ok_per_s"]]
    return {
        "capacity": _median(cap0), "capacity_beats": _median(cap1),
        "play_us": _median(play_us), "beat_us": _median(beat_us),
        "p99": _median([r["latency_ms"]["p99"] for r in open0]),
        "p99_beats": _median([r["latency_ms"]["p99"] for r in open1]),
        "beat_p99": _median([r["play_heartbeats"]["latency_ms"]["p99"] for r in open1]),
        "beats_per_s": _median([r["play_heartbeats"]["ok_per_s"] for r in open1]),
        "rate": _median([r.get("target_per_s") or 0 for r in open1]),
        "served": _median([r["ok_per_s"] for r in open1]),
    }


def beats_goals(rec):
    f = beats_figures(rec)
    share = f["beat_us"] / f["play_us"] if f["play_us"] else float("inf")
    ratio = f["p99_beats"] / f["p99"] if f["p99"] else float("inf")
    return [
        (f"a heartbeat's steering CPU at most {BEAT_COST_SHARE:g} of a play's",
         f"{t.num(f['beat_us'], 0)} µs against {t.num(f['play_us'], 0)} µs ({share:.2f})",
         share <= BEAT_COST_SHARE),
        (f"plays' p99 at {_share(rec)} of the capacity with every active play heartbeating within "
         f"{BEATS_P99_FACTOR:g}× without",
         f"{t.num(f['p99_beats'], 2)} ms against {t.num(f['p99'], 2)} ms ({ratio:.2f}×), "
         f"{t.num(f['served'], 0)} of {t.num(f['rate'], 0)} plays/s, "
         f"{t.num(f['beats_per_s'], 0)} heartbeats/s (p99 {t.num(f['beat_p99'], 1)} ms)",
         ratio <= BEATS_P99_FACTOR and f["served"] >= 0.98 * f["rate"]),
    ]


def beats_section(rec):
    out = ["", "## Playback heartbeats", ""]
    if not rec:
        return out + [f"Not measured yet: `bench/beats.py` (writes `{BEATS_SOURCE}`).", ""]
    per_play = round(rec["watch_s"] / rec["every_s"])
    reps = max(r.get("rep", 1) for r in rec["runs"])
    out += [f"Measured {t.when(rec.get('date'))} on {t.machine(rec.get('machine'))}. Made by:", "",
            "```sh", rec["command"], "```", "",
            BEATS_PROSE.format(watch=t.num(rec["watch_s"], 0), every=t.num(rec["every_s"], 0),
                               per_play=per_play, reps=reps, share=_share(rec)), ""]
    rows = []
    for r in rec["runs"]:
        b = r.get("play_heartbeats") or {}
        bl = b.get("latency_ms") or {}
        rows.append([str(r.get("rep", 1)), r["label"], "yes" if r["heartbeats"] else "no",
                     t.num(r["ok_per_s"], 0), t.num(_steady(r, rec["watch_s"]), 0),
                     t.num(r["latency_ms"]["p50"], 2), t.num(r["latency_ms"]["p99"], 2),
                     t.num(b["ok_per_s"], 0) if b else "–",
                     t.num(bl["p99"], 1) if bl else "–",
                     t.num(b.get("errors", 0) + sum(b.get("refused", {}).values())) if b else "–",
                     t.num(r["cores_busy"]["steering"], 2)])
    out.append(t.table(["rep", "plays", "heartbeats", "plays/s", "steady plays/s", "p50 ms",
                        "p99 ms", "heartbeats/s", "heartbeat p99 ms", "heartbeats failed",
                        "steering cores"], rows, "llrrrrrrrrr"))
    out.append("")
    f = beats_figures(rec)
    cap_ratio = f["capacity_beats"] / f["capacity"] if f["capacity"] else 0
    out += [f"Capacity (closed loop, steady, median): {t.num(f['capacity'], 0)} plays/s without "
            f"heartbeats, {t.num(f['capacity_beats'], 0)} with every active play heartbeating "
            f"({cap_ratio:.2f}×). With {per_play} heartbeats a play at {t.num(f['beat_us'], 0)} µs "
            f"each against {t.num(f['play_us'], 0)} µs a play, heartbeats take "
            f"{per_play * f['beat_us'] / (f['play_us'] + per_play * f['beat_us']):.0%} of steering's "
            "CPU at any play rate: capacity for plays falls by that share, and by more for "
            "longer watches at the same interval.", ""]
    for r in rec["runs"]:
        if r.get("rep", 1) == 1:
            out.append(f"- {r['label']}, heartbeats {'on' if r['heartbeats'] else 'off'}: `{r['command']}`")
    out.append("")
    out.append(t.table(["goal", "measured", "met"],
                       [[g, m, "**yes**" if ok else "no"] for g, m, ok in beats_goals(rec)], "lll"))
    out.append("")
    return out
