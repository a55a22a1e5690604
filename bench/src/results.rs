//! `--results FILE`: a report written as JSON together with what produced it
//! (the command line, the options in effect, when, on what machine), so the
//! tables of docs/RELIABILITY.md are rendered from measurements
//! (`bench/run.py --render`) and never typed by hand.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Serialize, Serializer};

/// The machine a report was measured on; the fields bench/figures/data.py
/// writes for the benchmarks, so one renderer reads both.
#[derive(Debug, Serialize, PartialEq)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub os: String,
    pub kernel: String,
    pub load_avg_1m_at_start: Option<f64>,
}

impl Machine {
    /// Read from /proc and /etc/os-release; what cannot be read is "unknown" or 0.
    pub fn here() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or("Linux".to_owned(), |v| v.trim_matches('"').to_owned());
        let load = read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok());
        Machine {
            cpu_model,
            cpus,
            mem_gib: (mem_kib / f64::from(1u32 << 20) * 10.0).round() / 10.0,
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_avg_1m_at_start: load,
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, O: Serialize, R: Serialize> {
    kind: &'a str,
    /// This process's command line, exactly as run.
    command: Vec<String>,
    /// Every option in effect, defaults included.
    options: &'a O,
    started: String,
    finished: String,
    machine: &'a Machine,
    report: &'a R,
}

/// A run being measured: when it started and on what.
#[derive(Debug)]
pub struct Run {
    started: SystemTime,
    machine: Machine,
}

impl Run {
    /// Call before measuring: the start time and the machine's load then.
    pub fn start() -> Run {
        Run {
            started: SystemTime::now(),
            machine: Machine::here(),
        }
    }

    /// Write `report` with what produced it to `path` (pretty JSON).
    pub fn write(
        &self,
        path: &Path,
        kind: &str,
        options: &impl Serialize,
        report: &impl Serialize,
    ) -> Result<()> {
        let env = Envelope {
            kind,
            command: std::env::args().collect(),
            options,
            started: humantime::format_rfc3339_seconds(self.started).to_string(),
            finished: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            machine: &self.machine,
            report,
        };
        let mut text = serde_json::to_string_pretty(&env)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A duration as seconds, for the options in a results file.
pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// An optional duration as seconds, or null.
pub fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_secs_f64()).serialize(s)
}

/// A MIN..MAX duration range as two numbers of seconds.
pub fn secs_range<S: Serializer>(d: &(Duration, Duration), s: S) -> Result<S::Ok, S::Error> {
    [d.0.as_secs_f64(), d.1.as_secs_f64()].serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Opts {
        #[serde(serialize_with = "secs")]
        calm: Duration,
        #[serde(serialize_with = "secs_range")]
        pause: (Duration, Duration),
    }

    #[test]
    fn a_results_file_holds_the_report_and_what_produced_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let run = Run::start();
        let opts = Opts {
            calm: Duration::from_millis(1500),
            pause: (Duration::from_secs(2), Duration::from_secs(8)),
        };
        run.write(&path, "test", &opts, &serde_json::json!({"p99_us": 7}))
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["kind"], "test");
        assert_eq!(v["report"]["p99_us"], 7);
        assert_eq!(v["options"]["calm"], 1.5);
        assert_eq!(v["options"]["pause"], serde_json::json!([2.0, 8.0]));
        assert!(!v["command"].as_array().unwrap().is_empty());
        let started = v["started"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
        assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
        assert!(!v["machine"]["kernel"].as_str().unwrap().is_empty());
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let err = Run::start()
            .write(Path::new("/nonexistent/dir/r.json"), "t", &(), &())
            .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/dir/r.json"));
    }
}
