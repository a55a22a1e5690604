"""The rendered docs are what their data gives, and the renderer's judgements
are the ones it states. Run by scripts/test.sh:

    python3 -m unittest discover -s bench/figures -t bench
"""

import os
import tempfile
import unittest

from . import benchmarks, packager, reliability, render
from .noise import Noise


def aa(layout, ratios):
    """A noise comparison whose per-round req/s ratios are `ratios`."""
    return {"layout": layout, "case": "2m c64", "a": "nginx", "b": "nginx2",
            "rounds": [{"a": {"req_per_s": 100 * r}, "b": {"req_per_s": 100}} for r in ratios]}


class CommittedDocs(unittest.TestCase):
    def test_the_committed_docs_are_what_the_committed_data_gives(self):
        stale = [os.path.relpath(p, render.ROOT) for p in render.check()]
        self.assertEqual(stale, [], "run bench/run.py --render and commit the result")

    def test_rendering_twice_gives_the_same_bytes(self):
        self.assertEqual(render.rendered(), render.rendered())


class NoiseBands(unittest.TestCase):
    def test_a_ratio_is_within_noise_only_inside_the_largest_aa_deviation(self):
        noise = Noise({"comparisons": [aa("pinned", [0.95, 1.03, 1.01])]})
        self.assertAlmostEqual(noise.band("pinned", "req_per_s"), 0.05)
        self.assertTrue(noise.within("pinned", "req_per_s", 1.04))
        self.assertTrue(noise.within("pinned", "req_per_s", 0.95))
        self.assertFalse(noise.within("pinned", "req_per_s", 0.89))
        self.assertFalse(noise.within("pinned", "req_per_s", 1.06))
        self.assertEqual(noise.verdict("pinned", "req_per_s", (1.06, 1.02, 1.09)), "beyond ±0.05")
        self.assertEqual(noise.verdict("pinned", "req_per_s", (0.97, 0.80, 1.2)), "within ±0.05")

    def test_rounds_on_both_sides_of_1_are_not_a_difference(self):
        noise = Noise({"comparisons": [aa("spread", [0.97, 1.02])]})
        self.assertEqual(noise.judge("spread", "req_per_s", (0.80, 0.51, 2.03)), "unsettled")
        self.assertEqual(noise.judge("spread", "req_per_s", (0.80, 0.70, 0.95)), "beyond")
        self.assertEqual(noise.verdict("spread", "req_per_s", (0.80, 0.51, 2.03)),
                         "beyond ±0.03, rounds on both sides of 1")

    def test_without_a_band_nothing_is_called_within_noise(self):
        noise = Noise({"comparisons": [aa("pinned", [1.0, 1.02])]})
        self.assertIsNone(noise.within("spread", "req_per_s", 1.0))
        self.assertIsNone(noise.within("pinned", "server_cpu_s_per_gib", 1.0))
        self.assertEqual(noise.verdict("spread", "req_per_s", (1.0, 1.0, 1.0)), "noise not measured")
        self.assertIsNone(Noise(None).within("pinned", "req_per_s", 1.0))


class Missing(unittest.TestCase):
    def test_sections_without_data_say_so_and_state_no_figure(self):
        with tempfile.TemporaryDirectory() as empty:
            text = benchmarks.render(render.benchmark_records(empty))
        for name in benchmarks.SECTIONS:
            self.assertIn(f"Not measured yet: `bench/run.py --sections {name}`.", text)
        self.assertIn("no ratio is judged against noise", text)

    def test_only_the_generated_blocks_of_reliability_change(self):
        doc = ("Prose 1.\n\n<!-- generated: soak (x) -->\nold table 42\n<!-- end generated: soak -->\n\n"
               "Prose 2.\n<!-- generated: hostile (y) -->\n<!-- end generated: hostile -->\n")
        with tempfile.TemporaryDirectory() as empty:
            out = reliability.render(doc, empty, render.ROOT)
        self.assertNotIn("old table 42", out)
        self.assertTrue(out.startswith("Prose 1.\n\n<!-- generated: soak (x) -->\nNot measured yet: `scripts/lab.sh"))
        self.assertIn("<!-- end generated: soak -->\n\nProse 2.\n<!-- generated: hostile (y) -->\nNot measured yet",
                      out)


def rung(bitrate, quality, height=720):
    return {"bitrate_bps": bitrate, "quality": quality, "height": height}


def klass(name, rungs, fixed_bd, qeb, bph):
    """A class record with one fixed ladder `f` of three rungs."""
    return {"class": name, "seconds": 12, "per_title": {"rungs": rungs, "bytes_per_hour": bph},
            "fixed": {"f": {"ladder_vs_fixed": None if fixed_bd is None else {"bd_rate": fixed_bd},
                            "hull_vs_fixed": None, "bytes_per_hour": 3e9,
                            "rungs": [rung(500e3, 60), rung(1e6, 70), rung(4e6, 90)],
                            "quality_at_equal_bits": qeb}}}


class PerTitle(unittest.TestCase):
    def test_fixed_bits_are_interpolated_in_log_rate_and_poorer_dearer_rungs_ignored(self):
        rungs = [rung(1e6, 70), rung(4e6, 90), rung(8e6, 85)]
        self.assertAlmostEqual(packager.bits_for_quality(rungs, 80), 2e6)
        self.assertIsNone(packager.bits_for_quality(rungs, 95))
        self.assertAlmostEqual(packager.one_rung_saving(rung(1e6, 80), rungs), -0.5)

    def test_goals_are_judged_from_the_data(self):
        rec = {"settings": {"fixed_ladders": [{"name": "f"}]}, "classes": [
            klass("easy", [rung(100e3, 80)], None, [], 1e8),
            klass("hard", [rung(1e6, 60), rung(3e6, 80)], 0.05, [], 2e9),
            klass("mid", [rung(1e6, 60), rung(3e6, 80)], -0.15, [], 1e9),
        ]}
        got = {g.split(" ")[0]: (fig, ok) for g, _, fig, ok in packager.goals(rec)}
        # easy: 100k against the 2 Mb/s the fixed ladder spends for 80 → -95%.
        self.assertEqual(got["≥"], ("-95%", True))
        self.assertEqual(got["average"], ("-35% (-5% over the 2 with a curve)", True))
        self.assertEqual(got["no"], ("worst +5% (hard)", False))

    def test_quality_at_equal_bits_counts_bandwidths_below_the_cheapest_rung_apart(self):
        c = klass("x", [], None, [{"fixed_quality": 70, "per_title_quality": 75},
                                  {"fixed_quality": 80, "per_title_quality": 77},
                                  {"fixed_quality": 50, "per_title_quality": None}], 1)
        self.assertEqual(packager.equal_bits(c, "f"), (1.0, -3.0, 2, 1))

    def test_without_data_the_section_says_how_to_measure(self):
        self.assertIn("Not measured yet: `scripts/bench_packager.sh`.", packager.section(None))


if __name__ == "__main__":
    unittest.main()


class PlayApi(unittest.TestCase):
    @staticmethod
    def run_(mode, conns, ok, p99, windows=(100.0,), window=10.0, rate=None, duration=30.0):
        return {"mode": mode, "connections": conns, "target_per_s": rate, "duration_s": duration,
                "ok_per_s": ok, "refused": {}, "errors": 0, "window_s": window,
                "windows_per_s": list(windows), "command": "oca-bench plays",
                "latency_ms": {"p50": 1.0, "p99": p99, "p999": p99, "max": p99},
                "cores_busy": {"steering": 0.9, "postgres": 0.0, "oca_bench": 0.1}}

    def test_goals_are_judged_from_the_runs(self):
        from . import control
        store = {"store": "sqlite", "saturation_per_s": 3100.0, "runs": [
            self.run_("closed", 16, 3100.0, 8.0),
            self.run_("open", 64, 2170.0, 12.5, rate=2170.0),
            # Ten 30 s windows: the last minute 5% under the first.
            self.run_("closed", 16, 3000.0, 9.0, windows=[3000, 3000] + [2900] * 6 + [2850, 2850],
                      window=30.0, duration=300.0),
        ]}
        got = {g.split(" ")[0]: ok for g, _, ok in control.goals(store)}
        self.assertEqual(got, {"≥": True, "p99": False, "last": True})
        first, last, change = control.history(store["runs"][2])
        self.assertEqual((first, last), (3000, 2850))
        self.assertAlmostEqual(change, -0.05)
        self.assertIsNone(control.history(store["runs"][0]), "too short to compare minutes")

    def test_without_data_the_section_says_how_to_measure(self):
        from . import control
        self.assertIn("Not measured yet: `bench/control.py`.", "\n".join(control.section(None)))


class Heartbeats(unittest.TestCase):
    @staticmethod
    def run_(closed, beats, ok, cores, p99, windows, beats_per_s=0.0, rate=None):
        r = {"mode": "closed" if closed else "open", "heartbeats": beats, "rep": 1,
             "label": "closed" if closed else "open", "target_per_s": rate, "ok_per_s": ok,
             "window_s": 10.0, "windows_per_s": windows, "command": "oca-bench plays",
             "latency_ms": {"p50": 1.0, "p99": p99}, "cores_busy": {"steering": cores}}
        if beats:
            r["play_heartbeats"] = {"ok_per_s": beats_per_s, "errors": 0, "refused": {},
                                    "latency_ms": {"p99": 5.0}}
        return r

    def test_per_request_cpu_and_capacity_come_from_the_runs(self):
        from . import control
        rec = {"watch_s": 30, "every_s": 5, "command": "bench/beats.py", "runs": [
            self.run_(True, False, 1000.0, 0.95, 20.0, [1000, 1000, 1000, 1000, 1000]),
            # A quarter of capacity: 250 plays/s at 0.25 cores is 1,000 µs a play.
            self.run_(False, False, 250.0, 0.25, 8.0, [250] * 5, rate=250.0),
            # Only the windows after the 30 s watch are steady.
            self.run_(True, True, 700.0, 0.95, 40.0, [1000, 900, 800, 600, 600], 3000.0),
            # 1,500 heartbeats/s for 0.12 more cores: 80 µs each.
            self.run_(False, True, 250.0, 0.37, 12.0, [250] * 5, 1500.0, rate=250.0),
        ]}
        f = control.beats_figures(rec)
        self.assertEqual((f["capacity"], f["capacity_beats"]), (1000, 600))
        self.assertAlmostEqual(f["play_us"], 1000.0)
        self.assertAlmostEqual(f["beat_us"], 80.0)
        got = [ok for _, _, ok in control.beats_goals(rec)]
        self.assertEqual(got, [True, True], "0.08 of a play; p99 1.5×")
        self.assertIn("| 1 | open | yes | 250 | 250 |", "\n".join(control.beats_section(rec)))

    def test_without_data_the_section_says_how_to_measure(self):
        from . import control
        self.assertIn("Not measured yet: `bench/beats.py`", "\n".join(control.beats_section(None)))


class FleetSim(unittest.TestCase):
    @staticmethod
    def point(size, planner, peak, launch=1.0):
        return {"disk_fraction": size, "planner": planner, "peak_inside_isp_share": peak,
                "inside_isp_share": peak, "launch_inside_isp_share": launch,
                "fill_bytes_per_night": 1e12, "churn_bytes": 0.0, "seconds": 5.0}

    def sim(self, curve):
        return {"report": {"curve": curve}}

    def test_goals_are_judged_from_the_curve(self):
        from . import fleet
        curve = [self.point(0.1, "forecast", 0.80), self.point(0.1, "oracle", 0.815),
                 self.point(0.3, "forecast", 0.90, launch=0.985), self.point(0.3, "oracle", 0.93),
                 self.point(0.5, "forecast", 0.96), self.point(0.5, "oracle", 0.97)]
        self.assertAlmostEqual(fleet.gap_points(curve), 3.0)
        first, est = fleet.reaches(curve)
        self.assertEqual(first, 0.5)
        # 0.90 at 30%, 0.96 at 50%: 95% at 30% + 20% × 5/6.
        self.assertAlmostEqual(est, 0.3 + 0.2 * 5 / 6)
        self.assertAlmostEqual(fleet.launch_min(curve), 0.985)
        speed = {"report": {"seconds": 12.0, "trace_seconds": 2.0, "days": 30, "titles": 5000, "sites": 100}}
        met = [ok for _, _, ok in fleet.goals(self.sim(curve), speed)]
        self.assertEqual(met, [False, True, False, True])

    def test_a_target_never_reached_is_said_so(self):
        from . import fleet
        curve = [self.point(0.1, "forecast", 0.5), self.point(0.2, "forecast", 0.6)]
        self.assertEqual(fleet.reaches(curve), (None, None))
        self.assertIsNone(fleet.gap_points(curve), "no oracle to compare with")

    def test_without_data_the_section_says_how_to_measure(self):
        from . import fleet
        self.assertIn("Not measured yet: `bench/fleet.py`.", "\n".join(fleet.section(None)))
