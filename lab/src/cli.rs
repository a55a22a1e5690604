//! `oca-lab`'s options: the narrated lab by default, `--soak` or `--chaos`.

use std::path::PathBuf;
use std::time::Duration;

use bench::results::{secs, secs_range};
use clap::{ArgGroup, Parser};
use serde::Serialize;

/// The whole stack on loopback: steering, an nginx origin, an IXP appliance
/// and two ISPs' embedded appliances, an off-peak fill on a simulated clock,
/// then viewers (`oca-bench players`) in each ISP. Narrated by default; soaked
/// or in chaos on request. Stops everything it started.
///
/// Serialised into `--results` files: every option in effect.
#[derive(Debug, Parser, Serialize)]
#[command(name = "oca-lab", version)]
#[command(group(ArgGroup::new("soak_or_chaos").args(["soak", "chaos"])))]
pub struct Cli {
    /// How long the viewers watch.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Viewers per ISP (each account allows a few streams; 1 to 16).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub viewers: u32,
    /// Control-plane regions: 1 (steering on SQLite) or 2 (steering in
    /// eu-west and us-east on PostgreSQL with a standby, and the failover
    /// drills: a region's steering killed, then the database primary).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub regions: u32,
    /// Each fill agent's download cap, bits per second.
    #[arg(long, default_value_t = 200_000_000)]
    pub fill_rate_bps: u64,
    /// Soak instead of narrating: mixed load for --duration (plays with every
    /// segment verified, health and metrics polls, a fill that never ends),
    /// every daemon's memory, open files, threads and tasks sampled, slopes
    /// reported; exits 1 if a process exits, bytes are wrong or a series keeps growing.
    #[arg(long, conflicts_with_all = ["chaos", "regions"])]
    pub soak: bool,
    /// Chaos instead of narrating: kill -9 a random process of the lab at
    /// random intervals for --duration and start it again, checking bytes,
    /// committed objects, bookmarks and steering's convergence; exits 1 on a violation.
    #[arg(long, conflicts_with = "regions")]
    pub chaos: bool,
    /// Soak: time between samples.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "secs")]
    pub sample_every: Duration,
    /// Soak: write every sample to FILE as CSV.
    #[arg(long, value_name = "FILE")]
    pub samples: Option<PathBuf>,
    /// Chaos: the seed of the victim and pause sequence (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chaos: the pause between a restart and the next kill, MIN..MAX (e.g. 2s..8s).
    #[arg(long, default_value = "2s..8s", value_parser = pause_range)]
    #[serde(serialize_with = "secs_range")]
    pub pause: (Duration, Duration),
    /// Chaos: how long a killed process stays down, MIN..MAX.
    #[arg(long, default_value = "0s..2s", value_parser = pause_range)]
    #[serde(serialize_with = "secs_range")]
    pub down: (Duration, Duration),
    /// Soak and chaos: print the report as JSON on stdout (narration goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Soak, chaos and `--regions 2`: also write the report, the options,
    /// the command line, the date and the machine to FILE as JSON
    /// (docs/RELIABILITY.md and docs/BENCHMARKS.md are rendered from such
    /// files: `bench/run.py --render`).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
}

impl Cli {
    /// What clap cannot say: a report is written only by a run that makes one.
    pub fn check(&self) -> Result<(), String> {
        if self.results.is_some() && !self.soak && !self.chaos && self.regions < 2 {
            return Err("--results needs --soak, --chaos or --regions 2".into());
        }
        Ok(())
    }
}

fn pause_range(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected MIN..MAX, e.g. 2s..8s"))?;
    let a = humantime::parse_duration(a).map_err(|e| format!("{a:?}: {e}"))?;
    let b = humantime::parse_duration(b).map_err(|e| format!("{b:?}: {e}"))?;
    if a > b {
        return Err(format!("{s:?}: MIN must not exceed MAX"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_ranges() {
        let s = Duration::from_secs;
        assert_eq!(pause_range("2s..8s"), Ok((s(2), s(8))));
        assert_eq!(pause_range("1s..1s"), Ok((s(1), s(1))));
        assert!(pause_range("8s..2s").is_err());
        assert!(pause_range("2s").is_err());
        assert!(pause_range("2x..3s").is_err());
    }

    #[test]
    fn viewers_are_bounded_and_soak_excludes_chaos() {
        assert!(Cli::try_parse_from(["oca-lab", "--viewers", "0"]).is_err());
        assert!(Cli::try_parse_from(["oca-lab", "--viewers", "17"]).is_err());
        assert!(Cli::try_parse_from(["oca-lab", "--soak", "--chaos"]).is_err());
        let c = Cli::try_parse_from(["oca-lab", "--chaos", "--seed", "7"]).unwrap();
        assert!(c.chaos && c.seed == Some(7) && c.viewers == 2);
    }

    #[test]
    fn results_files_for_soak_and_chaos_only() {
        for mode in ["--soak", "--chaos"] {
            let c = Cli::try_parse_from(["oca-lab", mode, "--results", "r.json"]).unwrap();
            assert_eq!(c.results, Some(PathBuf::from("r.json")));
            // Every option in effect goes into the file, durations as seconds.
            let v = serde_json::to_value(&c).unwrap();
            assert_eq!(v["pause"], serde_json::json!([2.0, 8.0]));
            assert_eq!(v["duration"], 60.0);
        }
        // The narrated lab writes no report, unless it runs the drills.
        let plain = Cli::try_parse_from(["oca-lab", "--results", "r.json"]).unwrap();
        assert!(plain.check().is_err());
        let drills =
            Cli::try_parse_from(["oca-lab", "--regions", "2", "--results", "r.json"]).unwrap();
        assert!(drills.check().is_ok());
        assert!(Cli::try_parse_from(["oca-lab", "--regions", "3"]).is_err());
        assert!(Cli::try_parse_from(["oca-lab", "--regions", "2", "--chaos"]).is_err());
    }
}
