//! Progress: a status document, written atomically once a second for oca's
//! /health and for operators, with the download rate of the last second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::agent::Agent;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// `starting`, `no-plan`, `waiting-window`, `filling`, `complete` or `blocked`.
    pub state: &'static str,
    pub plan_version: u64,
    pub window_open: bool,
    pub objects_total: u64,
    pub objects_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// Planned bytes that do not fit in the space allowed.
    pub bytes_left_out: u64,
    /// Sources downloads are running from right now.
    pub sources: Vec<String>,
    /// Download rate over the last second, bits per second.
    pub rate_bps: u64,
    /// Bytes received since this process started (resumed bytes not included).
    pub received_bytes: u64,
    pub evicted_bytes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Committed planned objects read back and found intact (and their bytes),
    /// found damaged (quarantined and fetched again), and whole rounds done.
    pub scrub_objects: u64,
    pub scrub_bytes: u64,
    pub scrub_damaged: u64,
    pub scrub_rounds: u64,
    /// Unix seconds (on the agent's clock).
    pub updated: u64,
}

/// Write `status` so readers never see half a document.
pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, serde_json::to_vec_pretty(status).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

impl Status {
    /// One line for `systemctl status`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}: {}/{} objects, {:.1}/{:.1} GB",
            self.state,
            self.objects_done,
            self.objects_total,
            self.bytes_done as f64 / 1e9,
            self.bytes_total as f64 / 1e9
        );
        if !self.sources.is_empty() {
            line += &format!(
                " from {} at {:.1} Mbit/s",
                self.sources.join(", "),
                self.rate_bps as f64 / 1e6
            );
        }
        line
    }
}

/// Once a second until `stop` (and once more then): the rate, then the
/// status file.
pub(crate) async fn report(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        let received = agent.received();
        let now = Instant::now();
        let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
        let rate = ((received - last.1) as f64 * 8.0 / secs) as u64;
        last = (now, received);
        agent.metrics.rate_bps.set(rate as i64);
        let snapshot = {
            let mut s = agent.status.lock().unwrap_or_else(|p| p.into_inner());
            s.rate_bps = rate;
            s.received_bytes = received;
            s.updated = agent.clock.now();
            s.clone()
        };
        if let Err(e) = write(&agent.cfg.status_file, &snapshot) {
            tracing::warn!(error = %e, path = %agent.cfg.status_file.display(), "cannot write the status file");
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_state_progress_and_sources() {
        let mut s = Status {
            state: "filling",
            objects_total: 10,
            objects_done: 4,
            bytes_total: 2_000_000_000,
            bytes_done: 500_000_000,
            ..Status::default()
        };
        assert_eq!(s.summary(), "filling: 4/10 objects, 0.5/2.0 GB");
        s.sources = vec!["peer-1".into(), "origin".into()];
        s.rate_bps = 24_000_000;
        assert_eq!(
            s.summary(),
            "filling: 4/10 objects, 0.5/2.0 GB from peer-1, origin at 24.0 Mbit/s"
        );
    }

    #[test]
    fn the_status_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/status.json");
        let s = Status {
            state: "complete",
            plan_version: 7,
            ..Status::default()
        };
        write(&path, &s).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            (back["state"].as_str(), back["plan_version"].as_u64()),
            (Some("complete"), Some(7))
        );
        assert!(!path.with_extension("json.tmp").exists());
    }
}
