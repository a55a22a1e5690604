"""Side-by-side figures and the noise they are judged against.

The noise section measures nginx against a second nginx, round by round. For
each figure and layout, the noise band is the largest distance from 1 of those
A/A per-round ratios; an A/B ratio whose median lies inside the band of the same
figure and layout is *within noise*. Nothing else is called within noise. A
ratio outside the band whose rounds fall on both sides of 1 is not called a
difference either: it is reported as such ("rounds on both sides of 1").
"""

from . import data
from . import text as t

# (row label, key, decimals, scale applied to the value for display)
COMPARE_FIGS = [("req/s", "req_per_s", 0, 1), ("Gbit/s", "gbit_per_s", 2, 1),
                ("p50 ms", "latency_p50_us", 2, 1e-3), ("p99 ms", "latency_p99_us", 2, 1e-3),
                ("p99.9 ms", "latency_p999_us", 2, 1e-3), ("TTFB p99 ms", "ttfb_p99_us", 2, 1e-3),
                ("server CPU s/GiB", "server_cpu_s_per_gib", 3, 1),
                ("server CPU µs/req", "server_cpu_us_per_req", 1, 1)]
WRK_FIGS = [("req/s", "req_per_s", 0, 1), ("Gbit/s", "gbit_per_s", 2, 1),
            ("server CPU s/GiB", "server_cpu_s_per_gib", 3, 1), ("p99 ms", "latency_p99_us", 2, 1e-3)]


def compared(rounds, key, scale=1):
    """Medians of A and B (scaled) and the spread of the per-round A/B ratios."""
    pairs = [(r["a"].get(key), r["b"].get(key)) for r in rounds]
    a = data.median(x for x, _ in pairs)
    b = data.median(y for _, y in pairs)
    return {"a": None if a is None else a * scale, "b": None if b is None else b * scale,
            "ratio": data.spread(data.ratios(pairs))}


class Noise:
    """The noise bands of one noise record (or none)."""

    def __init__(self, record):
        self.bands = {}
        self.rounds = {}
        for c in (record or {}).get("comparisons", []):
            self.rounds[c["layout"]] = len(c["rounds"])
            for _, key, _, _ in COMPARE_FIGS:
                rs = data.ratios((r["a"].get(key), r["b"].get(key)) for r in c["rounds"])
                if rs:
                    self.bands[(c["layout"], key)] = max(abs(x - 1) for x in rs)

    def band(self, layout, key):
        return self.bands.get((layout, key))

    def within(self, layout, key, ratio):
        """True/False, or None when there is no band for that figure and layout."""
        band = self.band(layout, key)
        if band is None or ratio is None:
            return None
        return abs(ratio - 1) <= band

    def judge(self, layout, key, s):
        """'within', 'beyond', 'unsettled' (outside the band, rounds on both sides of 1),
        or None without a band; `s` is (median, min, max) of the per-round ratios."""
        w = self.within(layout, key, s and s[0])
        if w is None:
            return None
        if w:
            return "within"
        return "unsettled" if s[1] < 1 < s[2] else "beyond"

    def verdict(self, layout, key, s):
        j = self.judge(layout, key, s)
        if j is None:
            return "noise not measured"
        band = f"±{self.band(layout, key):.2f}"
        return {"within": f"within {band}", "beyond": f"beyond {band}",
                "unsettled": f"beyond {band}, rounds on both sides of 1"}[j]

    def wrk_pairs(self, run):
        """{(layout, size): [(round a, round b)]} for the first two servers of a bench_wrk run."""
        kinds = run["options"]["servers"].split(",")
        out = {}
        for r in run["rounds"]:
            if r["server"] != kinds[0]:
                continue
            other = next((x for x in run["rounds"] if x["server"] == kinds[1] and x["layout"] == r["layout"]
                          and x["size"] == r["size"] and x["round"] == r["round"]), None)
            if other:
                out.setdefault((r["layout"], r["size"]), []).append({"a": r, "b": other})
        return kinds, out

    def wrk_table(self, run):
        kinds, pairs = self.wrk_pairs(run)
        rows = []
        for (layout, size), rounds in pairs.items():
            figs = [compared(rounds, key, scale) for _, key, _, scale in WRK_FIGS]
            for side, kind in (("a", kinds[0]), ("b", kinds[1])):
                rows.append([layout, size, kind] + [t.num(f[side], d) for f, (_, _, d, _) in zip(figs, WRK_FIGS)])
            rows.append([layout, size, f"**{kinds[0]}/{kinds[1]}**"] + [t.ratio_cell(f["ratio"]) for f in figs])
            rows.append([layout, size, "against noise"] +
                        [self.verdict(layout, key, f["ratio"]) for f, (_, key, _, _) in
                         zip(figs, WRK_FIGS)])
        return t.table(["layout", "size", "server"] + [label for label, _, _, _ in WRK_FIGS], rows, "lll" + "r" * 4)


def ratio_rows(c, noise):
    """The table of one oca-bench comparison, with each ratio judged against the noise."""
    rows = []
    for label, key, digits, scale in COMPARE_FIGS:
        f = compared(c["rounds"], key, scale)
        rows.append([label, t.num(f["a"], digits), t.num(f["b"], digits), t.ratio_cell(f["ratio"]),
                     noise.verdict(c["layout"], key, f["ratio"])])
    util = compared(c["rounds"], "client_cpu_utilisation", 100)
    rows.append(["client CPU %", t.num(util["a"]), t.num(util["b"]), "", ""])
    errs = [sum(r[s]["errors"] for r in c["rounds"]) for s in ("a", "b")]
    rows.append(["errors (all rounds)", t.num(errs[0]), t.num(errs[1]), "", ""])
    return t.table(["figure", c["a"], c["b"], f"{c['a']}/{c['b']} (min–max over rounds)", "against noise"],
                   rows, "lrrrl")
