"""The per-title encoding section of docs/BENCHMARKS.md, from
docs/data/packager.json (scripts/bench_packager.sh: `oca-pack bench-ladders`).

Every figure and every goal verdict is computed here from the measured points;
the goals themselves are the issue's (requirements, not measurements).
"""

import math

from . import text as t

SOURCE = "docs/data/packager.json"

# Goals (issue 19): bits at equal quality against the fixed ladders.
MEAN_SAVING_GOAL = 0.20  # on average over the classes
SIMPLEST_SAVING_GOAL = 0.40  # on the simplest class
# ... and no class worse than the fixed ladder (a saving below 0).

# Data written before bench-ladders recorded the selection had this one.
UNBRIDGED = ("upper hull and wide same-resolution edges filled; jumps between resolutions *not* bridged "
             "(data from before that change: rerun `scripts/bench_packager.sh` to measure the selection as it is now)")

PROSE = """Each content class (ffmpeg's generators; `oca-pack source CLASS`, docs/PACKAGING.md) is
encoded by `oca-pack encode` as it would be for real (analysis, the per-title ladder,
packaging), then every per-title rung and every rung of two fixed ladders is encoded
over the whole clip and measured the same way: `fixed-3` is the ladder
scripts/make-content.sh used before it switched to oca-pack (500k/1.2M/2.5M), `fixed-6`
a typical six-rung one (Apple's former HLS authoring ladder up to 720p). Fixed rungs are
x264 at the same preset and GOPs with an average bitrate, as make-content.sh had it;
bitrates are as measured.

- *Bits at equal quality*: BD-rate of the per-title ladder against the fixed one (log
  bitrate interpolated piecewise-linearly in quality between rungs, averaged over the
  quality range both cover); negative is fewer bits. A one-rung per-title ladder has no
  curve: for it, the figure is that rung's bitrate against what the fixed ladder
  (interpolated the same way) spends for the same quality, marked *(1 rung)*. The
  per-title hull (every point the analysis found worth having) is given beside it.
- *Quality at equal bits*: for a player with each fixed rung's bandwidth, the best
  per-title rung it can afford against that fixed rung: the mean difference, and the
  worst (a negative worst is a bandwidth where the per-title ladder is the poorer
  buy; bandwidths below the cheapest per-title rung are counted apart).
- *Bytes per hour*: all video rungs of the ladder, what every disk and every fill carries."""


def _envelope(rungs):
    """(log bitrate, quality) of `rungs`, cheapest first, keeping only rungs
    that improve on every cheaper one (a dearer, poorer rung buys nothing)."""
    out = []
    for r in sorted(rungs, key=lambda r: r["bitrate_bps"]):
        if r["quality"] is None or r["bitrate_bps"] <= 0:
            continue
        if not out or r["quality"] > out[-1][1]:
            out.append((math.log(r["bitrate_bps"]), r["quality"]))
    return out


def bits_for_quality(rungs, q):
    """Bits/s `rungs` spend for quality `q` (log-rate interpolated between
    rungs), or None outside the qualities they span."""
    env = _envelope(rungs)
    for (la, qa), (lb, qb) in zip(env, env[1:]):
        if qa <= q <= qb:
            return math.exp(la + (lb - la) * (q - qa) / (qb - qa))
    if env and env[0][1] == q:
        return math.exp(env[0][0])
    return None


def one_rung_saving(rung, fixed_rungs):
    """Fewer bits (as a fraction; negative is fewer) for a single rung against
    the fixed ladder at that rung's quality; None when it cannot say."""
    fixed_bits = bits_for_quality(fixed_rungs, rung["quality"])
    if fixed_bits is None:
        return None
    return rung["bitrate_bps"] / fixed_bits - 1


def equal_quality(c, fixed_name):
    """(bits at equal quality, one_rung?) of class record `c` against a fixed ladder."""
    f = c["fixed"][fixed_name]
    if f["ladder_vs_fixed"] is not None:
        return f["ladder_vs_fixed"]["bd_rate"], False
    rungs = c["per_title"]["rungs"]
    if len(rungs) == 1:
        return one_rung_saving(rungs[0], f["rungs"]), True
    return None, False


def equal_bits(c, fixed_name):
    """Quality at equal bits: (mean difference, worst difference, bandwidths
    compared, bandwidths below the cheapest per-title rung)."""
    diffs, below = [], 0
    for q in c["fixed"][fixed_name]["quality_at_equal_bits"]:
        if q["per_title_quality"] is None:
            below += 1
        else:
            diffs.append(q["per_title_quality"] - q["fixed_quality"])
    if not diffs:
        return None, None, 0, below
    return sum(diffs) / len(diffs), min(diffs), len(diffs), below


def simplest(classes):
    """The class whose per-title ladder carries the fewest bytes per hour."""
    return min(classes, key=lambda c: c["per_title"]["bytes_per_hour"])


def goals(rec):
    """[(goal, fixed ladder, figure, met?)] computed from the classes."""
    classes = rec["classes"]
    easy = simplest(classes)
    out = []
    for name in (f["name"] for f in rec["settings"]["fixed_ladders"]):
        per = [(c["class"], *equal_quality(c, name)) for c in classes]
        savings = [(cls, s) for cls, s, _ in per]
        known = [s for _, s in savings if s is not None]
        mean = sum(known) / len(known) if known else None
        curves = [s for _, s, one in per if s is not None and not one]
        fig = t.percent(mean)
        if len(curves) < len(known):
            fig += f" ({t.percent(sum(curves) / len(curves) if curves else None)} over the {len(curves)} with a curve)"
        out.append((f"average over the classes ≥ {MEAN_SAVING_GOAL:.0%} fewer bits at equal quality "
                    f"({len(known)} of {len(classes)} classes measurable)", name,
                    fig, mean is not None and -mean >= MEAN_SAVING_GOAL))
        s = equal_quality(easy, name)[0]
        out.append((f"≥ {SIMPLEST_SAVING_GOAL:.0%} on the simplest class ({easy['class']}: fewest bytes per hour)",
                    name, t.percent(s), s is not None and -s >= SIMPLEST_SAVING_GOAL))
        worst = max(known) if known else None
        worse = [cls for cls, s in savings if s is not None and s > 0]
        out.append(("no class worse than the fixed ladder (more bits at equal quality)", name,
                     f"worst {t.percent(worst)}" + (f" ({t.listing(worse)})" if worse else ""),
                     worst is not None and worst <= 0))
    return out


def _mb(b):
    return t.num(b / 1e6)


def class_rows(rec):
    rows = []
    for c in rec["classes"]:
        row = [c["class"], str(len(c["per_title"]["rungs"]))]
        for f in rec["settings"]["fixed_ladders"]:
            s, one = equal_quality(c, f["name"])
            hull = c["fixed"][f["name"]]["hull_vs_fixed"]
            row.append(f"**{t.percent(s)}**" + (" (1 rung)" if one else "") +
                       f" (hull {t.percent(hull['bd_rate'] if hull else None)})")
        for f in rec["settings"]["fixed_ladders"]:
            mean, worst, n, below = equal_bits(c, f["name"])
            cell = "–" if mean is None else f"{mean:+.1f} (worst {worst:+.1f})"
            if below:
                cell += f"; {below} below"
            row.append(cell)
        row.append(_mb(c["per_title"]["bytes_per_hour"]))
        row += [_mb(c["fixed"][f["name"]]["bytes_per_hour"]) for f in rec["settings"]["fixed_ladders"]]
        rows.append(row)
    return rows


def ladders_line(rec):
    parts = []
    for c in rec["classes"]:
        rungs = ", ".join(f"{r['height']}p {r['bitrate_bps'] / 1e3:,.0f}k" for r in c["per_title"]["rungs"])
        parts.append(f"{c['class']}: {rungs}")
    return "; ".join(parts)


def times_rows(rec):
    rows = []
    for c in rec["classes"]:
        tm = c["times"]
        rows.append([c["class"], t.num(c["seconds"], 0), str(tm["cores"]), t.num(tm["analysis_seconds_per_minute"]),
                     t.num(tm["encode_seconds_per_minute"]),
                     t.num(tm["analysis_seconds_per_minute"] + tm["encode_seconds_per_minute"])])
    return rows


def scaling_rows(sc):
    runs = sorted(sc["runs"], key=lambda r: r["cores"])
    rows = [[str(r["cores"]), t.num(r["analysis_seconds_per_minute"]), t.num(r["encode_seconds_per_minute"]),
             t.num(r["analysis_seconds_per_minute"] + r["encode_seconds_per_minute"])] for r in runs]
    one, last = runs[0], runs[-1]
    a, e = "analysis_seconds_per_minute", "encode_seconds_per_minute"
    speed = [one[a] / last[a], one[e] / last[e], (one[a] + one[e]) / (last[a] + last[e])]
    return rows, speed, one["cores"], last["cores"]


def section(rec):
    """The section's lines; `rec` is docs/data/packager.json or None."""
    out = ["## Per-title encoding: oca-pack's ladders against fixed ladders", ""]
    if not rec:
        return out + ["Not measured yet: `scripts/bench_packager.sh`.", ""]
    s = rec["settings"]
    p = s["plan"]
    m = rec["machine"]
    out += [f"Measured {t.when(rec['date'])} on {t.machine(m)}; load average {m['load_avg_1m_at_end']:.2f} at the "
            f"end. {rec['encoder'].split(' Copyright')[0]}. Made by `scripts/bench_packager.sh`, which ran:", "",
            "```sh", rec["command"], "```", "",
            f"Quality: **{rec['metric']['name'].upper()}**: {rec['metric']['description']}. "
            f"{t.count(len(rec['classes']), 'class', 'classes')}, {s['seconds_per_class']:g} s each at {s['size']}, "
            f"{s['fps']} fps, {s['segment_seconds']:g} s segments; analysis: {p['chunks']} chunks of "
            f"{p['chunk_secs']:g} s, x264 `{p['preset']}`, CRF {', '.join(f'{x:g}' for x in p['crfs'])} at "
            f"{', '.join(f'{h}p' for h in p['heights'])}. Ladder selection: "
            f"{s.get('selection', UNBRIDGED)}. Raw points per class in `{SOURCE}`.", "",
            PROSE, ""]
    names = [f["name"] for f in s["fixed_ladders"]]
    for f in s["fixed_ladders"]:
        out.append(f"- `{f['name']}`: " + ", ".join(f"{w}x{h} {b / 1e3:,.0f}k" for w, h, b in f["rungs"]))
    out += ["", "Per class (bits: negative is fewer; quality in the metric's units, per-title minus fixed; "
            "MB per hour of content, video):", ""]
    head = (["class", "per-title rungs"] + [f"bits at equal quality vs {n}" for n in names] +
            [f"quality at equal bits vs {n}" for n in names] + ["per-title MB/h"] + [f"{n} MB/h" for n in names])
    out += [t.table(head, class_rows(rec), "lr" + "r" * (len(head) - 2)), ""]
    out += [f"The per-title ladders: {ladders_line(rec)}.", ""]
    lower = total = 0
    for c in rec["classes"]:
        for n in names:
            for q in c["fixed"][n]["quality_at_equal_bits"]:
                if q["per_title_quality"] is not None:
                    total += 1
                    lower += q["per_title_quality"] < q["fixed_quality"]
    out += [f"Quality at equal bits is lower with the per-title ladder at {lower} of the {total} fixed-rung "
            f"bandwidths compared, mostly where its rungs are further apart than the fixed ones: a player between "
            f"two of them gets the cheaper.", ""]
    out += ["Goals:", "",
            t.table(["goal", "against", "measured", "met"],
                    [[g, n, fig, "**yes**" if ok else "**no**"] for g, n, fig, ok in goals(rec)], "lllc"), ""]
    out += [f"Time on {m['cores_used']} cores, seconds per minute of content (analysis: the trial encodes and "
            f"their measurement; encode: the ladder's rungs, their measurement over the whole title, and "
            f"packaging):", "",
            t.table(["class", "seconds of content", "cores", "analysis s/min", "encode s/min", "total s/min"],
                    times_rows(rec), "lrrrrr"), ""]
    sc = rec.get("scaling")
    if sc:
        rows, speed, lo, hi = scaling_rows(sc)
        out += [f"Scaling: the `{sc['class']}` class again from scratch (`--jobs N`):", "",
                t.table(["cores", "analysis s/min", "encode s/min", "total s/min"], rows, "rrrr"), "",
                f"From {lo} to {hi} cores: analysis {speed[0]:.2f}×, encode {speed[1]:.2f}×, both "
                f"{speed[2]:.2f}× as fast (the machine is shared: see the load averages above).", ""]
    return out
