"""Fill planning on a simulated fleet: the section of docs/BENCHMARKS.md made
from docs/data/fleet/sim.json and speed.json (bench/fleet.py, which runs
`oca-bench fleet-sim`).

Every figure and verdict is computed here from the runs; the goals are the
issue's (requirements, not measurements).
"""

import os

from . import text as t

GAP_GOAL_POINTS = 2.0  # forecast within 2 points of the oracle at every size
PEAK_TARGET = 0.95  # the disk size at which the forecast reaches this is stated
LAUNCH_GOAL = 0.99  # of a new title's first-day bytes inside the ISP
SPEED_GOAL_S = 60.0  # 30 days, 5,000 titles, 100 sites

PLANNERS = ["current", "forecast", "oracle"]

PROSE = """A simulated fleet, in simulated time: four regions (UTC+1, −5, +5:30, −3) with their own
tastes, ISPs with one site each (the biggest with three embedded appliances, the smallest with
one), two IXP appliances per region each holding 30% of the catalogue's bytes, and an origin.
The trace is generated from a seed: Zipf-like popularity that drifts day to day, an evening
peak in each region's local time and a busier weekend, three launches a day (a spike sized
against the region's biggest title that halves every two to three days, and an `audience`
guess with a log-normal error), sessions of log-normal length at the ladder rung under 80% of
a log-normal bandwidth. Each planner fills the disks from the same trace: a plan per region
when its fill window (02:00–06:00 local) opens, fetched at 10 Gbit/s per appliance, from a
peer of the site, else the region's IXP, else the origin; room made by fill-agent's own
eviction. Every session is steered by steering's own `decide` on a snapshot of what the
appliances hold, and its bytes counted where they came from. The first seven days are a
warm-up (history for the planners, disks filled from empty) and are not counted.

- **current**: steering's first planner: each appliance on its own, titles by decayed plays
  (the region's; the IXP's: everyone's), launches first, cut at the disk.
- **forecast**: the demand forecast (`steering::forecast`), placed per site
  (`steering::fleet::placement`): the head on every appliance of a site, the tail split
  between them, IXPs for what the sites leave, launches on every appliance before release.
- **oracle**: the same placement fed the trace's actual next 24 hours: the upper bound.

*Peak inside the ISP*: the share of bytes served by an appliance of the viewer's own ISP in
each region's busiest local hour of each day, pooled over the days. Egress capacity is not
modelled (every appliance can serve what it holds: the question here is the disk), nor
failures."""


def _rows(curve):
    sizes = sorted({c["disk_fraction"] for c in curve})
    by = {(c["disk_fraction"], c["planner"]): c for c in curve}
    return sizes, by


def gap_points(curve):
    """Largest (oracle − forecast) peak share over the sizes, in points; None without both."""
    sizes, by = _rows(curve)
    gaps = [(by[(s, "oracle")]["peak_inside_isp_share"] - by[(s, "forecast")]["peak_inside_isp_share"]) * 100
            for s in sizes if (s, "oracle") in by and (s, "forecast") in by]
    return max(gaps) if gaps else None


def reaches(curve, planner="forecast", target=PEAK_TARGET):
    """(first measured size at or above `target`, the size interpolated linearly
    between the measured points around it); (None, None) if never reached."""
    sizes, by = _rows(curve)
    points = [(s, by[(s, planner)]["peak_inside_isp_share"]) for s in sizes if (s, planner) in by]
    prev = None
    for s, v in points:
        if v >= target:
            if prev is None:
                return s, s
            (s0, v0) = prev
            return s, s0 + (s - s0) * (target - v0) / (v - v0)
        prev = (s, v)
    return None, None


def launch_min(curve, planner="forecast"):
    vals = [c["launch_inside_isp_share"] for c in curve
            if c["planner"] == planner and c["launch_inside_isp_share"] is not None]
    return min(vals) if vals else None


def goals(sim, speed):
    curve = sim["report"]["curve"]
    out = []
    gap = gap_points(curve)
    out.append((f"forecast within {GAP_GOAL_POINTS:.0f} points of oracle at every size (peak hour)",
                "–" if gap is None else f"at most {gap:.1f} points behind",
                gap is not None and gap <= GAP_GOAL_POINTS))
    first, est = reaches(curve)
    out.append((f"disk size at which forecast reaches {PEAK_TARGET:.0%} at peak (stated)",
                "not within the sizes measured" if first is None
                else f"about {est:.0%} of the catalogue per site (measured ≥ {PEAK_TARGET:.0%} at {first:.0%})",
                first is not None))
    lm = launch_min(curve)
    out.append((f"≥ {LAUNCH_GOAL:.0%} of launches' first-day bytes inside the ISP (forecast, every size)",
                "–" if lm is None else f"{lm * 100:.1f}% at the worst size",
                lm is not None and lm >= LAUNCH_GOAL))
    if speed:
        r = speed["report"]
        secs = r["seconds"]
        out.append((f"{r['days']} days, {t.num(r['titles'])} titles, {r['sites']} sites in under "
                    f"{SPEED_GOAL_S:.0f} s (one planner, one thread)",
                    f"{secs:.1f} s (trace {r['trace_seconds']:.1f} s)", secs < SPEED_GOAL_S))
    return out


def _cmd(rec):
    argv = list(rec["command"])
    argv[0] = os.path.basename(argv[0])
    # The output paths are the repository's own.
    return " ".join("docs/" + a.split("/docs/", 1)[1] if "/docs/" in a else a for a in argv)


def section(sim, speed=None):
    out = ["", "## Fill planning on a simulated fleet", ""]
    if not sim:
        return out + ["Not measured yet: `bench/fleet.py`.", ""]
    r = sim["report"]
    out += [f"Measured {t.when(sim['finished'])} on {t.machine(sim['machine'])}. Made by "
            "`bench/fleet.py`, which ran:", "", "```sh", _cmd(sim)]
    if speed:
        out.append(_cmd(speed))
    out += ["```", "",
            f"{r['days']} days after {r['warmup_days']} of warm-up, {t.num(r['titles'])} titles "
            f"({r['catalogue_bytes'] / 1e12:.1f} TB), {r['sites']} sites, {r['appliances']} appliances, "
            f"{t.num(r['sessions'])} sessions. " + PROSE, ""]
    sizes, by = _rows(r["curve"])
    rows = []
    for s in sizes:
        cells = [f"{s:.0%}"]
        for p in PLANNERS:
            c = by.get((s, p))
            cells.append("–" if c is None else f"{c['peak_inside_isp_share'] * 100:.1f}%")
        f, o = by.get((s, "forecast")), by.get((s, "oracle"))
        cells.append("–" if not (f and o) else
                     f"{(o['peak_inside_isp_share'] - f['peak_inside_isp_share']) * 100:+.1f}")
        cells.append("–" if not f or f["launch_inside_isp_share"] is None
                     else f"{f['launch_inside_isp_share'] * 100:.1f}%")
        cells.append("–" if not f else f"{f['fill_bytes_per_night'] / 1e12:.1f} TB")
        cells.append("–" if not by.get((s, "current")) else
                     f"{by[(s, 'current')]['fill_bytes_per_night'] / 1e12:.1f} TB")
        rows.append(cells)
    out += ["Peak-hour share of bytes served inside the viewer's ISP, against each site's disk (as a "
            "fraction of the catalogue's bytes):", "",
            t.table(["disk per site", "current", "forecast", "oracle", "oracle − forecast (points)",
                     "forecast: launches' first day inside", "forecast: fill per night",
                     "current: fill per night"], rows, "lrrrrrrr"), ""]
    out.append(t.table(["goal", "measured", "met"],
                       [[g, m, "**yes**" if ok else "no"] for g, m, ok in goals(sim, speed)], "lll"))
    out.append("")
    first = r["curve"][0]["disk_fraction"] if r["curve"] else None
    detail = []
    for p in PLANNERS:
        o = r["planners"].get(p)
        if not o:
            continue
        detail.append([p, f"{o['peak_inside_isp_share'] * 100:.1f}%", f"{o['inside_isp_share'] * 100:.1f}%",
                       f"{o['ixp_share'] * 100:.1f}%", f"{o['other_isp_share'] * 100:.1f}%",
                       f"{o['origin_share'] * 100:.1f}%", f"{o['fill_bytes_per_night'] / 1e12:.1f} TB",
                       f"{o['origin_fill_bytes_per_night'] / 1e12:.1f} TB",
                       f"{o['churn_bytes'] / 1e12:.0f} TB", f"{o['seconds']:.1f} s"])
    if first is not None and detail:
        out += [f"At {first:.0%} per site, all hours of the {r['days']} days (churn: bytes filled again "
                "after being evicted earlier in the run; the run's time on one of the two threads):", "",
                t.table(["planner", "peak inside ISP", "all hours inside ISP", "IXP", "other ISPs", "origin",
                         "fill per night", "of it from the origin", "churn", "run"], detail, "lrrrrrrrrr"),
                "", f"Hour by hour at {first:.0%} (`--svg`):", "", "![Where viewers' bytes came from, hour by "
                "hour, per planner](data/fleet/hourly.svg)", ""]
    return out
