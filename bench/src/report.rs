//! The result of a `segments` run: figures with stable names for `--json`, and
//! a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::Outcome;
use crate::stats::ErrorKind;

const GIB: f64 = (1u64 << 30) as f64;

/// Everything a run measured. Field names are part of the interface: scripts
/// and the `compare` command read them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub target: String,
    /// "closed" (next request when the previous completes) or "open" (fixed rate).
    pub mode: &'static str,
    /// Open loop: the requested total rate in req/s.
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub objects: usize,
    pub zipf: f64,
    pub seed: u64,
    pub range_size: Option<u64>,
    /// Requests that completed without error in the measured window.
    pub requests: u64,
    pub req_per_s: f64,
    /// Response body bytes received in the measured window.
    pub bytes: u64,
    pub gbit_per_s: f64,
    /// From intended send time to the last body byte, successful requests only.
    pub latency_us: Percentiles,
    /// From intended send time to the first response byte.
    pub ttfb_us: Percentiles,
    pub errors: Errors,
    pub reconnects: u64,
    /// Open loop: requests due in the window but never sent (the client fell
    /// behind and the run ended first).
    pub unsent: u64,
    /// Worker threads whose figures were lost (should always be 0).
    pub threads_lost: usize,
    pub server_cpu: Option<ServerCpu>,
    pub client_cpu: ClientCpu,
}

/// Latency percentiles in microseconds; all 0 when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Errors by kind (see [`ErrorKind`]), and the unexpected status codes.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Errors {
    pub total: u64,
    pub connect: u64,
    pub timeout: u64,
    pub status: u64,
    pub length: u64,
    pub hash: u64,
    pub protocol: u64,
    pub reset: u64,
    /// Status code (as a string, for JSON) → count.
    pub status_codes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerCpu {
    pub pids: Vec<u32>,
    /// User + system CPU seconds of the pids and their descendants.
    pub cpu_s: f64,
    pub cpu_s_per_gib: Option<f64>,
    pub cpu_us_per_req: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientCpu {
    pub cpu_s: f64,
    /// cpu_s / (duration × threads): near 1 means the client was the ceiling.
    pub utilisation: f64,
}

/// Run parameters echoed in the report.
#[derive(Debug, Clone)]
pub struct Setup {
    pub target: String,
    pub rate: Option<f64>,
    pub connections: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub objects: usize,
    pub zipf: f64,
    pub seed: u64,
    pub range_size: Option<u64>,
    pub server_pids: Vec<u32>,
}

impl Report {
    pub fn new(setup: Setup, outcome: &Outcome) -> Report {
        let s = &outcome.stats;
        let secs = setup.duration_s.max(1e-9);
        let gib = s.bytes as f64 / GIB;
        let per = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        let mut errors = Errors {
            total: s.total_errors(),
            status_codes: s
                .status_codes
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            ..Errors::default()
        };
        for kind in ErrorKind::ALL {
            let n = s.errors(kind);
            match kind {
                ErrorKind::Connect => errors.connect = n,
                ErrorKind::Timeout => errors.timeout = n,
                ErrorKind::Status => errors.status = n,
                ErrorKind::Length => errors.length = n,
                ErrorKind::Hash => errors.hash = n,
                ErrorKind::Protocol => errors.protocol = n,
                ErrorKind::Reset => errors.reset = n,
            }
        }
        Report {
            target: setup.target,
            mode: if setup.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: setup.rate,
            connections: setup.connections,
            threads: outcome.threads,
            duration_s: setup.duration_s,
            warmup_s: setup.warmup_s,
            objects: setup.objects,
            zipf: setup.zipf,
            seed: setup.seed,
            range_size: setup.range_size,
            requests: s.requests,
            req_per_s: s.requests as f64 / secs,
            bytes: s.bytes,
            gbit_per_s: s.bytes as f64 * 8.0 / 1e9 / secs,
            latency_us: Percentiles::of(&s.latency),
            ttfb_us: Percentiles::of(&s.ttfb),
            errors,
            reconnects: s.reconnects,
            unsent: s.unsent,
            threads_lost: outcome.threads_lost,
            server_cpu: outcome.server_cpu_s.map(|cpu_s| ServerCpu {
                pids: setup.server_pids,
                cpu_s,
                cpu_s_per_gib: per(cpu_s, gib),
                cpu_us_per_req: per(cpu_s * 1e6, s.requests as f64),
            }),
            client_cpu: ClientCpu {
                cpu_s: outcome.client_cpu_s,
                utilisation: outcome.client_cpu_s / (secs * outcome.threads.max(1) as f64),
            },
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_owned(),
        };
        let range = self
            .range_size
            .map_or("whole objects".to_owned(), |r| format!("{r}-byte ranges"));
        let _ = writeln!(o, "target      {}", self.target);
        let _ = writeln!(
            o,
            "workload    {mode}, {} connections on {} threads, {} objects, zipf {}, seed {}, {range}",
            self.connections, self.threads, self.objects, self.zipf, self.seed
        );
        let _ = writeln!(
            o,
            "duration    {} s measured after {} s warmup",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "requests    {:>12}   {:>12.1} req/s",
            self.requests, self.req_per_s
        );
        let _ = writeln!(
            o,
            "bytes       {:>12}   {:>12.3} Gbit/s",
            self.bytes, self.gbit_per_s
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "µs", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [("latency", &self.latency_us), ("ttfb", &self.ttfb_us)] {
            let _ = writeln!(
                o,
                "{name:<10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let _ = writeln!(o);
        let e = &self.errors;
        let _ = write!(
            o,
            "errors      {} (connect {}, timeout {}, status {}, length {}, hash {}, protocol {}, reset {})",
            e.total, e.connect, e.timeout, e.status, e.length, e.hash, e.protocol, e.reset
        );
        if !e.status_codes.is_empty() {
            let codes: Vec<String> = e
                .status_codes
                .iter()
                .map(|(c, n)| format!("{c}×{n}"))
                .collect();
            let _ = write!(o, " codes {}", codes.join(" "));
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "reconnects  {}", self.reconnects);
        if self.rate.is_some() {
            let _ = writeln!(
                o,
                "unsent      {} (client fell behind the schedule)",
                self.unsent
            );
        }
        if self.threads_lost > 0 {
            let _ = writeln!(
                o,
                "WARNING     {} worker threads did not report",
                self.threads_lost
            );
        }
        if let Some(s) = &self.server_cpu {
            let _ = writeln!(
                o,
                "server cpu  {:.3} s  {} s/GiB  {} µs/req  (pids {:?} and descendants)",
                s.cpu_s,
                opt(s.cpu_s_per_gib, 3),
                opt(s.cpu_us_per_req, 1),
                s.pids
            );
        }
        let _ = writeln!(
            o,
            "client cpu  {:.3} s  {:.0}% of {} threads",
            self.client_cpu.cpu_s,
            self.client_cpu.utilisation * 100.0,
            self.threads
        );
        o
    }
}

/// A figure with `digits` decimals, or "-" when it has no value.
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    fn sample() -> Report {
        let mut stats = Stats::default();
        for i in 1..=1000u64 {
            stats.ok(
                Duration::from_micros(i * 100),
                Duration::from_micros(i * 10),
            );
        }
        stats.bytes = 1 << 30;
        stats.status_error(404);
        stats.error(ErrorKind::Hash);
        let outcome = Outcome {
            stats,
            server_cpu_s: Some(2.0),
            client_cpu_s: 1.0,
            threads: 2,
            threads_lost: 0,
        };
        Report::new(
            Setup {
                target: "http://127.0.0.1:8080".into(),
                rate: None,
                connections: 4,
                duration_s: 2.0,
                warmup_s: 0.0,
                objects: 10,
                zipf: 1.0,
                seed: 1,
                range_size: None,
                server_pids: vec![42],
            },
            &outcome,
        )
    }

    #[test]
    fn figures() {
        let r = sample();
        assert_eq!(r.requests, 1000);
        assert_eq!(r.req_per_s, 500.0);
        assert!((r.gbit_per_s - 8.0 * 1.073_741_824 / 2.0).abs() < 1e-9);
        let l = r.latency_us;
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!((49_900..=50_100).contains(&l.p50), "{}", l.p50);
        assert!((99_900..=100_100).contains(&l.max), "{}", l.max);
        assert_eq!(r.errors.total, 2);
        assert_eq!(r.errors.status_codes["404"], 1);
        let s = r.server_cpu.as_ref().unwrap();
        assert_eq!(s.cpu_s_per_gib, Some(2.0));
        assert_eq!(s.cpu_us_per_req, Some(2000.0));
        assert_eq!(r.client_cpu.utilisation, 0.25);
    }

    #[test]
    fn json_field_names_are_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        for f in [
            "target",
            "mode",
            "rate",
            "connections",
            "threads",
            "duration_s",
            "warmup_s",
            "objects",
            "zipf",
            "seed",
            "range_size",
            "requests",
            "req_per_s",
            "bytes",
            "gbit_per_s",
            "latency_us",
            "ttfb_us",
            "errors",
            "reconnects",
            "unsent",
            "threads_lost",
            "server_cpu",
            "client_cpu",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(v["latency_us"][p].is_number(), "latency_us.{p}");
            assert!(v["ttfb_us"][p].is_number(), "ttfb_us.{p}");
        }
        for e in [
            "total", "connect", "timeout", "status", "length", "hash", "protocol", "reset",
        ] {
            assert!(v["errors"][e].is_u64(), "errors.{e}");
        }
        assert_eq!(v["errors"]["status_codes"]["404"], 1);
        assert_eq!(v["mode"], "closed");
        assert_eq!(v["server_cpu"]["cpu_s_per_gib"], 2.0);
        assert_eq!(v["client_cpu"]["utilisation"], 0.25);
    }

    #[test]
    fn table_shows_the_figures() {
        let t = sample().table();
        for want in [
            "500.0 req/s",
            "Gbit/s",
            "p99.9",
            "latency",
            "ttfb",
            "errors      2",
            "hash 1",
            "404×1",
            "2.000 s/GiB",
            "2000.0 µs/req",
            "25% of 2 threads",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }

    #[test]
    fn empty_run_has_zero_percentiles_and_no_ratios() {
        let outcome = Outcome {
            stats: Stats::default(),
            server_cpu_s: Some(0.5),
            client_cpu_s: 0.0,
            threads: 1,
            threads_lost: 0,
        };
        let r = Report::new(
            Setup {
                target: "t".into(),
                rate: Some(10.0),
                connections: 1,
                duration_s: 1.0,
                warmup_s: 0.0,
                objects: 1,
                zipf: 0.0,
                seed: 0,
                range_size: Some(10),
                server_pids: vec![1],
            },
            &outcome,
        );
        assert_eq!(r.latency_us, Percentiles::default());
        assert_eq!(r.mode, "open");
        let s = r.server_cpu.as_ref().unwrap();
        assert_eq!((s.cpu_s_per_gib, s.cpu_us_per_req), (None, None));
        assert!(r.table().contains("unsent"));
    }
}
