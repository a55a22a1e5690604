"""The rendered docs are what their data gives, and the renderer's judgements
are the ones it states. Run by scripts/test.sh:

    python3 -m unittest discover -s bench/figures -t bench
"""

import os
import tempfile
import unittest

from . import benchmarks, reliability, render
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


if __name__ == "__main__":
    unittest.main()
