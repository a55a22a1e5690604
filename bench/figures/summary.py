"""The summary at the top of BENCHMARKS.md: every sentence computed from the
sections' data, every comparison judged against the noise section."""

from . import data
from . import text as t
from .benchmarks import CLIENT_CEILING, COLD_P99_GOAL, SUSTAINED, TLS_CPU_GOAL, cold_rows, fill_rows, idle_body, sustained
from .noise import compared

SIZES = {"2m": "2 MiB", "64k": "64 KiB", "1k": "1 KiB"}


def _ratios(comparisons, key):
    """[(layout, case, (median, min, max) of the per-round ratios)] over comparisons."""
    out = []
    for c in comparisons:
        s = compared(c["rounds"], key)["ratio"]
        if s:
            out.append((c["layout"], c["case"], s))
    return out


def _range(rs):
    """The span of the median ratios."""
    vals = [s[0] for _, _, s in rs]
    return t.span(min(vals), max(vals)) if vals else "–"


def _noise_words(rs, key, noise):
    """'beyond noise in all 4', 'within noise in 1 of 4: pinned 64k c64; rounds on both sides of 1 in …'."""
    judged = [(f"{layout} {case}", noise.judge(layout, key, s)) for layout, case, s in rs]
    known = [(name, j) for name, j in judged if j is not None]
    if not known:
        return "noise not measured"
    every = "both" if len(known) == 2 else f"all {len(known)}"
    by = {j: [name for name, jj in known if jj == j] for j in ("within", "beyond", "unsettled")}
    for j, words in (("within", "within noise"), ("beyond", "beyond noise")):
        if len(by[j]) == len(known):
            return f"{words} in {every}" if len(known) > 1 else words
    parts = [f"within noise in {len(by['within'])} of {len(known)}: {', '.join(by['within'])}"] if by["within"] else []
    if by["unsettled"]:
        parts.append(f"outside the noise band but with rounds on both sides of 1 in {', '.join(by['unsettled'])}")
    if by["beyond"]:
        parts.append(f"beyond noise in {', '.join(by['beyond'])}")
    return "; ".join(parts)


def _plain(rec, noise):
    out = []
    cs = rec["comparisons"]
    big = [c for c in cs if c["case"].startswith("2m ")]
    if big:
        cpu, rps, p99 = (_ratios(big, k) for k in ("server_cpu_s_per_gib", "req_per_s", "latency_p99_us"))
        cases = t.listing(sorted({c["case"] for c in big}))
        out.append(f"- 2 MiB objects ({cases}, both layouts): oca's server CPU per GiB is {_range(cpu)} nginx's "
                   f"({_noise_words(cpu, 'server_cpu_s_per_gib', noise)}), its req/s {_range(rps)} "
                   f"({_noise_words(rps, 'req_per_s', noise)}), its p99 {_range(p99)} "
                   f"({_noise_words(p99, 'latency_p99_us', noise)}).")
    small = [c for c in cs if c["case"].startswith("64k")]
    if small:
        cpu, rps = _ratios(small, "server_cpu_us_per_req"), _ratios(small, "req_per_s")
        util = [compared(c["rounds"], "client_cpu_utilisation") for c in small]
        busy = [max(u["a"], u["b"]) for u in util]
        ceiling = (f"oca-bench kept its threads {min(busy):.0%}–{max(busy):.0%} busy, "
                   + ("so the load generator is the ceiling at this size" if min(busy) >= CLIENT_CEILING
                      else "below its ceiling"))
        out.append(f"- 64 KiB objects: oca's CPU per request is {_range(cpu)} nginx's "
                   f"({_noise_words(cpu, 'server_cpu_us_per_req', noise)}); req/s {_range(rps)} "
                   f"({_noise_words(rps, 'req_per_s', noise)}); {ceiling}.")
    ranges = [c for c in cs if "ranges" in c["case"]]
    if ranges:
        rps, p99 = _ratios(ranges, "req_per_s"), _ratios(ranges, "latency_p99_us")
        out.append(f"- 2 MiB ranges of a 1 GiB file: req/s {_range(rps)} nginx's "
                   f"({_noise_words(rps, 'req_per_s', noise)}), p99 {_range(p99)} "
                   f"({_noise_words(p99, 'latency_p99_us', noise)}).")
    return out


def _openloop(rec, noise):
    parts = []
    for c in rec["comparisons"]:
        ok, got = sustained(c)
        if ok:
            p99 = compared(c["rounds"], "latency_p99_us")["ratio"]
            parts.append(f"`{c['layout']}` p99 {p99[0]:.2f}× nginx's "
                         f"({noise.verdict(c['layout'], 'latency_p99_us', p99)})")
            continue
        unsent = {side: data.median(r[side]["unsent"] for r in c["rounds"]) for side in ("a", "b")}
        short = [name for side, name in (("a", "oca"), ("b", "nginx"))
                 if got[side] < SUSTAINED * c["rate_req_per_s"]]
        parts.append(f"in `{c['layout']}` the offered {c['rate_req_per_s']:,} req/s were not sustained against "
                     f"{'either server' if len(short) == 2 else short[0]} (served: oca {got['a']:,.0f}, nginx {got['b']:,.0f}; requests the client "
                     f"never sent: oca {unsent['a']:,.0f}, nginx {unsent['b']:,.0f}, medians), so that row measures "
                     f"an overload of the shared cores, not latency below saturation")
    return [f"- Open loop at {rec['comparisons'][0]['load_fraction']:.0%} of nginx's saturation: "
            + "; ".join(parts) + "."]


def _idle(rec):
    _, per = idle_body(rec)
    lower = "below" if per["oca_with"] < per["nginx_with"] else "above"
    return [f"- {rec['connections']:,} idle connections: oca's total RSS is {lower} nginx's "
            f"({t.mib(per['oca_with']):.1f} against {t.mib(per['nginx_with']):.1f} MiB); "
            f"{per['oca']:,.0f} bytes per connection for oca, {per['nginx']:,.0f} for nginx."]


def _cold(rec, noise):
    rows = cold_rows(rec)
    span = {}
    for kind in ("oca", "nginx"):
        rs = [v["ratio"][0] for (_, k), v in rows.items() if k == kind]
        span[kind] = (min(rs), max(rs)) if rs else None
    if not span["oca"]:
        return []
    met = "met" if span["oca"][1] <= COLD_P99_GOAL else "not met"
    nginx = f"; nginx's {t.span(*span['nginx'])}" if span["nginx"] else ""
    # Cold clients' throughput against the build before the cold-read loader, round by round in the same
    # rounds, judged against the noise of the same figure (Gbit/s) and layout.
    before = rec.get("baseline", {}).get("server")
    cold = ""
    if before:
        per_layout = {}
        for r in rec["rounds"]:
            if r["server"] != "oca":
                continue
            b = next((x for x in rec["rounds"] if x["server"] == before and x["layout"] == r["layout"]
                      and x["round"] == r["round"]), None)
            if b:
                per_layout.setdefault(r["layout"], []).append(
                    (r["evicted"]["cold"]["gbit_per_s"], b["evicted"]["cold"]["gbit_per_s"]))
        spreads = {layout: data.spread(data.ratios(pairs)) for layout, pairs in per_layout.items()}
        spreads = {layout: s for layout, s in spreads.items() if s}
        if spreads:
            medians = [s[0] for s in spreads.values()]
            judged = {layout: noise.judge(layout, "gbit_per_s", s) for layout, s in spreads.items()}
            lower = [layout for layout, s in spreads.items() if s[0] < 1]
            within = [layout for layout in lower if judged[layout] == "within"]
            note = "".join(f"; {layout} {spreads[layout][0]:.2f}× is within noise "
                           f"(±{noise.band(layout, 'gbit_per_s'):.2f})" for layout in within)
            ok = len(within) == len(lower)
            cold = (f"; the cold clients' throughput {t.span(min(medians), max(medians))} of `{before}`'s "
                    f"(median of per-round ratios, per layout{note}; goal: not lower beyond noise: "
                    f"{'met' if ok else 'not met'})")
    return [f"- Cold reads: the hot client's p99 with the cold set on disk is {t.span(*span['oca'])} of its p99 "
            f"with everything warm for oca (median over rounds, per layout; goal at most {COLD_P99_GOAL:g}×: "
            f"{met}){nginx}{cold}."]


def _wrk_ratios(run, noise, key):
    kinds, pairs = noise.wrk_pairs(run)
    out = []
    for (layout, size), rounds in pairs.items():
        s = compared(rounds, key)["ratio"]
        if s:
            out.append((layout, size, s))
    return out


def _tls(rec, noise):
    runs = {r["label"]: r for r in rec["runs"]}
    out = []
    if "throughput" in runs:
        for size in ("2m", "64k"):
            sub = dict(runs["throughput"], rounds=[r for r in runs["throughput"]["rounds"] if r["size"] == size])
            rps, cpu = _wrk_ratios(sub, noise, "req_per_s"), _wrk_ratios(sub, noise, "server_cpu_s_per_gib")
            if rps:
                goal = ""
                if size == "2m" and cpu:
                    worst = max(s[0] for _, _, s in cpu)
                    goal = f" (goal at most {TLS_CPU_GOAL:g}×: {'met' if worst <= TLS_CPU_GOAL else 'not met'})"
                out.append(f"{SIZES.get(size, size)} throughput {_range(rps)} nginx's ({_noise_words(rps, 'req_per_s', noise)}) "
                           f"at {_range(cpu)} of its CPU per GiB{goal}")
    if "handshakes" in runs:
        rps = _wrk_ratios(runs["handshakes"], noise, "req_per_s")
        cpu = _wrk_ratios(runs["handshakes"], noise, "server_cpu_s_per_gib")
        out.append(f"full handshakes per second {_range(rps)} ({_noise_words(rps, 'req_per_s', noise)}) at "
                   f"{_range(cpu)} of the CPU")
    return [f"- HTTPS (wrk): {'; '.join(out)}."] if out else []


def _threading(rec, noise):
    parts = []
    for run in rec["runs"]:
        for key, what in (("req_per_s", "req/s"), ("server_cpu_s_per_gib", "CPU per GiB")):
            rs = _wrk_ratios(run, noise, key)
            parts.append(f"{what} {_range(rs)} at {run['options']['conns']} connections "
                         f"({_noise_words(rs, key, noise)})")
    return [f"- Threading: per-core against shared, {'; '.join(parts)}."]


def _fill(rec):
    rows = fill_rows(rec["runs"][0])
    thr = data.median(r["ratio_commit"] for r in rows)
    cpu = data.median(r["cpu_ratio"] for r in rows)
    return [f"- Fill: fill-agent's throughput to its last commit is {thr:.2f}× curl's from the same origin, at "
            f"{cpu:.2f}× curl's CPU per GiB (it hashes and fsyncs; curl does neither)."]


def _startup(rec):
    runs = rec["runs"][0]["runs"]
    warm = data.median(r["index_ms"] for r in runs if r["cache"] == "warm")
    cold = [r["index_ms"] for r in runs if r["cache"] == "cold"]
    return [f"- Start-up: oca indexed {runs[0]['objects']:,} objects in {warm:,.0f} ms warm (median)"
            + (f", {cold[0]:,} ms cold." if cold else "; no cold start was measured.")]


def _decide(rec):
    runs = rec["runs"]
    parts = []
    for i, sc in enumerate(runs[0]["scenarios"]):
        rate = data.median(r["scenarios"][i]["decisions_per_s_std_rng"] for r in runs)
        parts.append(f"{rate / 1e6:.2f} M/s ({sc['clients']})")
    return [f"- Steering decisions, one core, production generator: {'; '.join(parts)}."]


def summary(records, noise):
    out = ["## Summary", "", "Computed from the sections below when this file was rendered.", ""]
    parts = [("plain", lambda r: _plain(r, noise)), ("openloop", lambda r: _openloop(r, noise)),
             ("idle", _idle), ("cold", lambda r: _cold(r, noise)), ("tls", lambda r: _tls(r, noise)),
             ("threading", lambda r: _threading(r, noise)), ("startup", _startup), ("decide", _decide),
             ("fill", _fill)]
    missing = []
    for name, fn in parts:
        if records.get(name):
            out += fn(records[name])
        else:
            missing.append(name)
    if not records.get("noise"):
        out.append("- The noise section is not measured yet, so no ratio is judged against noise.")
    if missing:
        out.append(f"- Not measured yet: {', '.join(missing)}.")
    return out + [""]
