"""Recommendations' offline quality: the section of docs/BENCHMARKS.md made
from docs/data/reco/quality.json (bench/reco.py, which runs `oca-bench reco`).

The goal is the issue's: on traces whose profiles have distinct tastes, the
full ranker's recall@10 at least 1.5 times popular-in-region's, and never
below it on any trace.
"""

from . import text as t

SOURCE = "docs/data/reco/quality.json"
FACTOR = 1.5

PROSE = """A viewing trace generated as the fleet simulation's (the same regions, ISPs, catalogue,
Zipf-like regional popularity, daily drift and launches), then given viewers: a number of
profiles per ISP, each liking two of eight genres (titles are spread over the genres at
random). A session of a title goes, with probability *affinity*, to a profile of its ISP
that likes the title's genre, else to any profile of its ISP: at 0.9 the profiles have
distinct tastes, at 0 they all watch alike (what they watch is still the region's
popularity). For every profile with at least five distinct titles, its last new title is
held out with every play from then on; the model (`steering::reco`: co-watch similarity and
factors learned by BPR) is trained on the rest, and each method's top ten unwatched titles
are scored: recall@10 (the held-out title is among them) and NDCG@10 (how high). The full
ranker fuses three orders of its candidates (the factors', co-watch's and the region's
popularity) with weights it learns from the training history alone (its own held-out split
within it): *fusion* is what it chose."""

METHODS = ["popular-in-region", "item-to-item", "full ranker"]


def _cmd(rec):
    argv = list(rec["command"])
    argv[0] = "oca-bench"
    return " ".join(argv)


def goals(report):
    out = []
    for r in report["runs"]:
        m = {x["method"]: x for x in r["methods"]}
        pop, full = m["popular-in-region"]["recall"], m["full ranker"]["recall"]
        label = "a trace from a file" if r.get("affinity") is None else f"affinity {r['affinity']:g}"
        ratio = full / pop if pop else float("inf")
        if r.get("affinity") is not None and r["affinity"] >= 0.5:
            out.append((f"{label}: full ranker's recall@{report['k']} at least {FACTOR:g}× popular-in-region's",
                        f"{t.num(full, 4)} against {t.num(pop, 4)} ({ratio:.2f}×)", full >= FACTOR * pop))
        out.append((f"{label}: full ranker's recall@{report['k']} not below popular-in-region's",
                    f"{t.num(full, 4)} against {t.num(pop, 4)}", full >= pop))
    return out


def section(rec):
    out = ["", "## Recommendations: offline quality", ""]
    if not rec:
        return out + [f"Not measured yet: `bench/reco.py` (writes `{SOURCE}`).", ""]
    report = rec["report"]
    out += [f"Measured {t.when(rec['finished'])} on {t.machine(rec['machine'])}. Made by "
            "`bench/reco.py`, which ran:", "", "```sh", _cmd(rec), "```", "", PROSE, ""]
    rows = []
    for r in report["runs"]:
        m = {x["method"]: x for x in r["methods"]}
        for name in METHODS:
            x = m[name]
            rows.append([f"{r['affinity']:g}" if r.get("affinity") is not None else "file", name,
                         t.num(x["recall"], 4), t.num(x["ndcg"], 4),
                         t.num(r["profiles_scored"]) if name == METHODS[0] else "",
                         t.num(r["events"]) if name == METHODS[0] else "",
                         t.num(r["train_seconds"], 1) if name == METHODS[0] else "",
                         ("/".join(f"{w:g}" for w in r["fusion"]) if "fusion" in r else "–")
                         if name == "full ranker" else ""])
    k = report["k"]
    out.append(t.table(["affinity", "method", f"recall@{k}", f"NDCG@{k}", "profiles scored", "plays",
                        "train and score s", "fusion (factors/co-watch/popularity)"], rows, "llrrrrrl"))
    out.append("")
    g = goals(report)
    out.append(t.table(["goal", "measured", "met"], [[a, b, "**yes**" if ok else "no"] for a, b, ok in g],
                       "lll"))
    out.append("")
    return out
