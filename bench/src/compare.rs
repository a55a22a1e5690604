//! `compare`: the same workload against two servers, alternately, round by round.
//!
//! Alternating A B A B … spreads slow drifts of the machine (thermal state,
//! page cache, other tenants) over both servers, and per-round ratios show how
//! stable the comparison is: a ratio whose min–max spans 1 is not a result.

use std::fmt::Write as _;

use anyhow::Result;
use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::cli::CompareArgs;
use crate::cpu;
use crate::report::{Report, opt};
use crate::run;

/// One compared figure: medians for A and B, and the A/B ratio (median, min and
/// max over the rounds). `None` where there is no value (e.g. no server pids,
/// or B measured zero).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Figure {
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub ratio: Option<f64>,
    pub ratio_min: Option<f64>,
    pub ratio_max: Option<f64>,
}

/// The figures compared, in table order: (JSON name, table label, extractor).
type Extract = fn(&Report) -> Option<f64>;
const FIGURES: &[(&str, &str, Extract)] = &[
    ("req_per_s", "req/s", |r| Some(r.req_per_s)),
    ("gbit_per_s", "Gbit/s", |r| Some(r.gbit_per_s)),
    ("latency_p50_us", "latency p50 µs", |r| {
        Some(r.latency_us.p50 as f64)
    }),
    ("latency_p99_us", "latency p99 µs", |r| {
        Some(r.latency_us.p99 as f64)
    }),
    ("latency_p999_us", "latency p99.9 µs", |r| {
        Some(r.latency_us.p999 as f64)
    }),
    ("ttfb_p99_us", "TTFB p99 µs", |r| {
        Some(r.ttfb_us.p99 as f64)
    }),
    ("server_cpu_s_per_gib", "server CPU s/GiB", |r| {
        r.server_cpu.as_ref()?.cpu_s_per_gib
    }),
    ("server_cpu_us_per_req", "server CPU µs/req", |r| {
        r.server_cpu.as_ref()?.cpu_us_per_req
    }),
    ("errors", "errors", |r| Some(r.errors.total as f64)),
];

/// The result of a comparison. Field names are stable (for `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a_name: String,
    pub b_name: String,
    pub a_target: String,
    pub b_target: String,
    pub rounds: usize,
    /// Figure name → figure, in the order of the table.
    #[serde(serialize_with = "ordered")]
    pub figures: Vec<(&'static str, Figure)>,
    /// Every run's full report, in order.
    pub a_runs: Vec<Report>,
    pub b_runs: Vec<Report>,
}

fn ordered<S: Serializer>(v: &[(&'static str, Figure)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, f) in v {
        m.serialize_entry(k, f)?;
    }
    m.end()
}

/// One side of a comparison: its label, URL and per-round reports.
#[derive(Debug)]
pub struct Side<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub runs: Vec<Report>,
}

impl Comparison {
    /// Summarises paired runs (round i of A with round i of B).
    pub fn new(a: Side<'_>, b: Side<'_>) -> Self {
        let (a_runs, b_runs) = (a.runs, b.runs);
        let figures = FIGURES
            .iter()
            .map(|&(name, _, f)| {
                let a: Vec<f64> = a_runs.iter().filter_map(f).collect();
                let b: Vec<f64> = b_runs.iter().filter_map(f).collect();
                let ratios: Vec<f64> = a_runs
                    .iter()
                    .zip(&b_runs)
                    .filter_map(|(ra, rb)| {
                        let (x, y) = (f(ra)?, f(rb)?);
                        (y != 0.0).then(|| x / y)
                    })
                    .collect();
                let fig = Figure {
                    a: median(&a),
                    b: median(&b),
                    ratio: median(&ratios),
                    ratio_min: ratios.iter().copied().reduce(f64::min),
                    ratio_max: ratios.iter().copied().reduce(f64::max),
                };
                (name, fig)
            })
            .collect();
        Comparison {
            a_name: a.name.to_owned(),
            b_name: b.name.to_owned(),
            a_target: a.target.to_owned(),
            b_target: b.target.to_owned(),
            rounds: a_runs.len().min(b_runs.len()),
            figures,
            a_runs,
            b_runs,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{:<6} {}", self.a_name, self.a_target);
        let _ = writeln!(o, "{:<6} {}", self.b_name, self.b_target);
        let _ = writeln!(
            o,
            "{} rounds, medians; ratio {}/{} with min–max over rounds",
            self.rounds, self.a_name, self.b_name
        );
        let _ = writeln!(o);
        let ratio_head = format!("{}/{}", self.a_name, self.b_name);
        let _ = writeln!(
            o,
            "{:<20} {:>12} {:>12} {:>8}  spread",
            "", self.a_name, self.b_name, ratio_head
        );
        for ((_, fig), (_, label, _)) in self.figures.iter().zip(FIGURES) {
            let spread = match (fig.ratio_min, fig.ratio_max) {
                (Some(lo), Some(hi)) => format!("{lo:.3}–{hi:.3}"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                o,
                "{label:<20} {:>12} {:>12} {:>8}  {spread}",
                opt(fig.a, 2),
                opt(fig.b, 2),
                opt(fig.ratio, 3)
            );
        }
        o
    }
}

/// Median; the mean of the middle two for an even count.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// Runs the `compare` command.
pub fn compare(args: &CompareArgs) -> Result<Comparison> {
    let w = &args.workload;
    let catalogue = w.load_catalogue()?;
    cpu::check_pids(&args.a_pids)?;
    cpu::check_pids(&args.b_pids)?;
    let sides = [
        (
            &args.a_name,
            &args.a,
            &args.a_pids,
            w.plan(&args.a, &catalogue)?,
        ),
        (
            &args.b_name,
            &args.b,
            &args.b_pids,
            w.plan(&args.b, &catalogue)?,
        ),
    ];
    let mut runs: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=args.rounds {
        for (i, (name, url, pids, plan)) in sides.iter().enumerate() {
            let outcome = run::run(plan, &w.control(pids))?;
            let report = Report::new(w.setup(url, &catalogue, pids), &outcome);
            if !w.quiet {
                eprintln!(
                    "round {round}/{} {name}: {:.1} req/s {:.3} Gbit/s p99 {} µs errors {}",
                    args.rounds,
                    report.req_per_s,
                    report.gbit_per_s,
                    report.latency_us.p99,
                    report.errors.total
                );
            }
            runs[i].push(report);
        }
    }
    let [a_runs, b_runs] = runs;
    Ok(Comparison::new(
        Side {
            name: &args.a_name,
            target: &args.a,
            runs: a_runs,
        },
        Side {
            name: &args.b_name,
            target: &args.b,
            runs: b_runs,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Percentiles, Setup};
    use crate::run::Outcome;
    use crate::stats::Stats;
    use std::time::Duration;

    fn report(requests: u64, p99_ms: u64, cpu: Option<f64>) -> Report {
        let mut stats = Stats::default();
        for _ in 0..requests {
            stats.ok(Duration::from_millis(p99_ms), Duration::from_millis(1));
        }
        stats.bytes = requests << 20;
        let outcome = Outcome {
            stats,
            server_cpu_s: cpu,
            client_cpu_s: 0.1,
            threads: 1,
            threads_lost: 0,
        };
        Report::new(
            Setup {
                target: "t".into(),
                rate: None,
                connections: 1,
                duration_s: 1.0,
                warmup_s: 0.0,
                objects: 1,
                zipf: 1.0,
                seed: 1,
                range_size: None,
                server_pids: vec![],
            },
            &outcome,
        )
    }

    fn side(name: &'static str, runs: Vec<Report>) -> Side<'static> {
        Side {
            name,
            target: "t",
            runs,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_are_per_round_pair() {
        let a = vec![
            report(100, 10, Some(1.0)),
            report(300, 10, Some(1.0)),
            report(200, 10, Some(1.0)),
        ];
        let b = vec![
            report(100, 5, None),
            report(100, 5, None),
            report(100, 5, None),
        ];
        let c = Comparison::new(side("A", a), side("B", b));
        let fig = |n: &str| c.figures.iter().find(|(k, _)| *k == n).unwrap().1;
        let rps = fig("req_per_s");
        assert_eq!((rps.a, rps.b), (Some(200.0), Some(100.0)));
        assert_eq!(rps.ratio, Some(2.0));
        assert_eq!((rps.ratio_min, rps.ratio_max), (Some(1.0), Some(3.0)));
        let p99 = fig("latency_p99_us");
        assert!((p99.ratio.unwrap() - 2.0).abs() < 0.01);
        // B has no server CPU: A's median is shown, no ratio.
        let cpu = fig("server_cpu_us_per_req");
        assert!(cpu.a.is_some() && cpu.b.is_none() && cpu.ratio.is_none());
        // Zero errors on both sides: no ratio rather than NaN.
        assert_eq!(fig("errors").ratio, None);
        assert_eq!(c.rounds, 3);
        assert_eq!(Percentiles::default().p99, 0);
    }

    #[test]
    fn json_and_table() {
        let c = Comparison::new(
            side("oca", vec![report(10, 1, None)]),
            side("nginx", vec![report(20, 1, None)]),
        );
        let v = serde_json::to_value(&c).unwrap();
        for (name, _, _) in FIGURES {
            for f in ["a", "b", "ratio", "ratio_min", "ratio_max"] {
                assert!(v["figures"][name].get(f).is_some(), "{name}.{f}");
            }
        }
        assert_eq!(v["figures"]["req_per_s"]["ratio"], 0.5);
        assert_eq!(v["a_name"], "oca");
        assert_eq!(v["a_runs"].as_array().unwrap().len(), 1);
        let t = c.table();
        assert!(t.contains("oca/nginx"), "{t}");
        assert!(t.contains("req/s") && t.contains("0.500"), "{t}");
    }
}
