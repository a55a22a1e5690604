"""Render docs/BENCHMARKS.md (wholly) and the generated blocks of
docs/RELIABILITY.md from the measurements in docs/data/.

Deterministic: the same data gives the same bytes, so a test can insist that
the committed docs are what their committed data gives (bench/figures/test_render.py).
"""

import os

from . import benchmarks, packager, reliability
from .data import DATA, ROOT, load

BENCHMARKS_MD = os.path.join(ROOT, "docs", "BENCHMARKS.md")
RELIABILITY_MD = os.path.join(ROOT, "docs", "RELIABILITY.md")


def benchmark_file(section, data_dir=DATA):
    return os.path.join(data_dir, "benchmarks", f"{section}.json")


def benchmark_records(data_dir=DATA):
    out = {}
    for name in benchmarks.SECTIONS:
        path = benchmark_file(name, data_dir)
        out[name] = load(path) if os.path.exists(path) else None
    return out


def packager_record(data_dir=DATA):
    path = os.path.join(data_dir, "packager.json")
    return load(path) if os.path.exists(path) else None


def control_record(data_dir=DATA):
    path = os.path.join(data_dir, "control", "plays.json")
    return load(path) if os.path.exists(path) else None


def failover_record(data_dir=DATA):
    path = os.path.join(data_dir, "control", "failover.json")
    return load(path) if os.path.exists(path) else None


def flash_record(data_dir=DATA):
    path = os.path.join(data_dir, "control", "flash.json")
    return load(path) if os.path.exists(path) else None


def home_record(data_dir=DATA):
    path = os.path.join(data_dir, "control", "home.json")
    return load(path) if os.path.exists(path) else None


def beats_record(data_dir=DATA):
    path = os.path.join(data_dir, "control", "heartbeats.json")
    return load(path) if os.path.exists(path) else None


def reco_record(data_dir=DATA):
    path = os.path.join(data_dir, "reco", "quality.json")
    return load(path) if os.path.exists(path) else None


def fleet_records(data_dir=DATA):
    """(sim, speed) of bench/fleet.py, each None if not measured."""
    paths = [os.path.join(data_dir, "fleet", f"{n}.json") for n in ("sim", "speed")]
    return tuple(load(p) if os.path.exists(p) else None for p in paths)


def rendered(data_dir=DATA, reliability_md=None):
    """{path: text} of every rendered doc, from `data_dir`."""
    if reliability_md is None:
        with open(RELIABILITY_MD) as f:
            reliability_md = f.read()
    return {
        BENCHMARKS_MD: benchmarks.render(
            benchmark_records(data_dir), packager_record(data_dir), control_record(data_dir),
            failover_record(data_dir), fleet_records(data_dir), flash_record(data_dir),
            reco_record(data_dir), home_record(data_dir), beats_record(data_dir),
        ),
        RELIABILITY_MD: reliability.render(reliability_md, os.path.join(data_dir, "reliability"), ROOT),
    }


def write_all():
    for path, text in rendered().items():
        with open(path, "w") as f:
            f.write(text)


def check():
    """The docs that differ from what their data gives."""
    stale = []
    for path, text in rendered().items():
        with open(path) as f:
            if f.read() != text:
                stale.append(path)
    return stale
