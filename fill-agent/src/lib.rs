//! `fill-agent`: makes an appliance's disks match its fill plan, off-peak.
//!
//! Each pass: fetch the plan (or use the last good one), work out which
//! planned objects are missing (urgent ones at any time, the rest inside the
//! fill window), make room by evicting what the plan no longer wants, then
//! download under the rate and concurrency caps from the plan's sources in
//! order, verify, commit atomically and tell oca.
//!
//! Pure decisions: `window`, `work`, `evict`, `rate`, `sources`. The rest
//! drives them, one concern each: `pass` (the loop of passes), `room`
//! (eviction), `download` (one object over its sources), `fetch` (one
//! transfer), `diskio` (writes, hashing, fsyncs and renames on disk
//! threads, through io_uring or blocking calls; `sys` holds its unsafe
//! code), `disk` (the roots and atomic commits), `scrub` (reading
//! committed objects back), `status` (the status document), `metrics`
//! (Prometheus and the `/metrics` listener), `oca` (oca's admin listener),
//! `clock`. `run` below only wires them together and stops them.

pub mod clock;
pub mod config;
pub mod disk;
pub mod diskio;
pub mod evict;
pub mod fetch;
pub mod metrics;
pub mod oca;
pub mod rate;
pub mod scrub;
pub mod sources;
pub mod status;
pub mod transfer;
pub mod window;
pub mod work;

mod agent;
mod download;
mod pass;
mod room;
mod sys;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Notify, watch};

pub use clock::Clock;

use crate::agent::Agent;
use crate::config::Config;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("control plane client: {0}")]
    Control(control_client::ClientError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("{0}")]
    Credential(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the watchdog: {0}")]
    Watchdog(std::io::Error),
}

/// Run until `shutdown` completes; `wake` starts a pass at once (SIGHUP).
pub async fn run(
    cfg: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
    wake: Arc<Notify>,
) -> Result<(), StartError> {
    let agent = Arc::new(Agent::new(cfg, clock)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = match agent.cfg.metrics_listen {
        Some(addr) => {
            let listen = |source| StartError::Listen { addr, source };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
            println!(
                "fill-agent metrics={}",
                listener.local_addr().map_err(listen)?
            );
            let serving = metrics::serve(Arc::clone(&agent), listener, stop_rx.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            }))
        }
        None => {
            println!("fill-agent started");
            None
        }
    };
    let reporter = tokio::spawn(status::report(Arc::clone(&agent), stop_rx.clone()));
    let worker = tokio::spawn(pass::run(Arc::clone(&agent), wake, stop_rx.clone()));
    let scrubber = tokio::spawn(scrub::run(Arc::clone(&agent), stop_rx.clone()));
    // The runtime beats; the watchdog pings systemd while it does.
    let liveness = service::Liveness::new(vec!["runtime".into()]);
    let beat = tokio::spawn(Arc::clone(&liveness).heartbeat(0));
    let status_of = Arc::clone(&agent);
    let watchdog = service::Watchdog::start(liveness, move || status_of.status_line())
        .map_err(StartError::Watchdog)?;
    service::notify::ready(&agent.status_line());
    shutdown.await;
    service::notify::stopping("stopping; downloads in progress resume next run");
    drop(watchdog);
    beat.abort();
    tracing::info!("stopping; downloads in progress resume next run");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = scrubber.await;
    let _ = reporter.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    Ok(())
}
