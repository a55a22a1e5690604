//! A process's resident memory, open descriptors and threads, read from
//! /proc once a second (hostile: the server under attack).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Samples a process's resident memory, descriptors and threads once a second.
pub struct Sampler {
    stats: Arc<Mutex<Sample>>,
    pid: u32,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rss_max: u64,
    pub fds_max: u64,
    pub threads_max: u64,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stats = Arc::new(Mutex::new(Sample::default()));
        let s = Arc::clone(&stats);
        std::thread::spawn(move || {
            loop {
                let now = read_sample(pid);
                let Some(now) = now else { return };
                let mut m = s.lock().unwrap_or_else(|p| p.into_inner());
                m.rss_max = m.rss_max.max(now.rss_max);
                m.fds_max = m.fds_max.max(now.fds_max);
                m.threads_max = m.threads_max.max(now.threads_max);
                drop(m);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Sampler { stats, pid }
    }

    /// The maxima since the last take, and start again.
    pub fn take(&self) -> Sample {
        let mut m = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *m)
    }

    /// One reading now.
    pub fn sample(&self) -> Sample {
        read_sample(self.pid).unwrap_or_default()
    }
}

fn read_sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Some(Sample {
        rss_max: field("VmRSS:"),
        fds_max: fds,
        threads_max: field("Threads:"),
    })
}
