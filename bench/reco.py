#!/usr/bin/env python3
"""Recommendations' offline quality (docs/BENCHMARKS.md, "Recommendations:
offline quality"): `oca-bench reco` on a generated viewing trace with
profiles, once with distinct tastes and once without, scoring
popular-in-region, item-to-item and the full ranker by recall@10 and
NDCG@10. Every figure comes from the file written here.

    bench/reco.py [any oca-bench reco option, e.g. --seed 2 --days 21]

Writes docs/data/reco/quality.json.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "data" / "reco" / "quality.json"
BENCH = ROOT / "target" / "release" / "oca-bench"


def main():
    if "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:
        print(__doc__)
        return
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "bench"], cwd=ROOT, check=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BENCH), "reco", "--results", str(OUT.relative_to(ROOT))] + sys.argv[1:]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--render"], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
