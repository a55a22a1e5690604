//! What every part of the agent shares: configuration, clock, disks, the
//! control-plane client, oca's admin listener, the download machinery,
//! source backoff, the status document and the metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use control_client::{ControlClient, RetryPolicy};

use crate::StartError;
use crate::clock::Clock;
use crate::config::Config;
use crate::disk::Disks;
use crate::diskio::DiskIo;
use crate::fetch;
use crate::metrics::Metrics;
use crate::oca::OcaAdmin;
use crate::rate;
use crate::sources::Sources;
use crate::status::Status;

pub(crate) struct Agent {
    pub cfg: Config,
    pub clock: Clock,
    pub disks: Disks,
    pub control: ControlClient,
    pub oca: Option<OcaAdmin>,
    pub fetch: Arc<fetch::Shared>,
    pub sources: Mutex<Sources>,
    pub status: Mutex<Status>,
    pub metrics: Metrics,
}

impl Agent {
    pub fn new(cfg: Config, clock: Clock) -> Result<Agent, StartError> {
        let c = &cfg.control;
        let credential = match &c.credential_file {
            Some(path) => control_client::read_token(path).map_err(|e| {
                StartError::Credential(format!(
                    "control.credential_file {}: {e} (oca writes it when it enrols)",
                    path.display()
                ))
            })?,
            None => c.credential.clone(),
        };
        let control = ControlClient::new(
            &c.url.0,
            &c.appliance_id,
            &credential,
            &c.cache_dir,
            c.ca_file.as_deref(),
            RetryPolicy::default(),
        )
        .map_err(StartError::Control)?;
        let http = crate::transfer::Transfers::new(
            cfg.request_timeout,
            cfg.request_timeout,
            c.ca_file.as_deref(),
            crate::transfer::Marking {
                dscp: cfg.dscp,
                source: cfg.source_address,
            },
        )
        .map_err(StartError::Http)?;
        let oca = cfg
            .oca_admin
            .as_deref()
            .map(|base| {
                OcaAdmin::new(
                    base,
                    cfg.oca_admin_ca_file.as_deref(),
                    cfg.oca_admin_token_file.as_deref(),
                )
            })
            .transpose()
            .map_err(StartError::Http)?;
        Ok(Agent {
            disks: Disks::new(cfg.stores.clone()).requiring_mounts(cfg.require_mount),
            fetch: Arc::new(fetch::Shared {
                http,
                bucket: Mutex::new(rate::Bucket::new(cfg.rate_bps, Instant::now())),
                min_throughput_bps: cfg.min_throughput_bps,
                slow_grace: cfg.slow_grace,
                received: Default::default(),
                disk_io: DiskIo::select(cfg.disk_io),
            }),
            sources: Mutex::new(Sources::new(
                cfg.source_backoff,
                cfg.source_backoff.saturating_mul(64),
            )),
            status: Mutex::new(Status {
                state: "starting",
                ..Status::default()
            }),
            metrics: Metrics::new(),
            control,
            oca,
            clock,
            cfg,
        })
    }

    /// Change the status document.
    pub fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The one-line STATUS= for `systemctl status`.
    pub fn status_line(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary()
    }

    /// Log a failure and count it in the status document.
    pub fn fail(&self, msg: String) {
        tracing::warn!(error = %msg, "fill");
        self.set(|s| {
            s.failures += 1;
            s.last_error = Some(msg);
        });
    }

    /// Tell oca (if configured) that `key` was committed or removed.
    pub async fn tell_oca(&self, key: &str) {
        if let Some(oca) = &self.oca {
            oca.refresh(key).await;
        }
    }

    /// Bytes received by this process so far.
    pub fn received(&self) -> u64 {
        self.fetch
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
