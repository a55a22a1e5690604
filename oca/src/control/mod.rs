//! The appliance's conversation with the control plane: register, heartbeat
//! (health and inventory deltas), and signing keys, which keep working from
//! the last keys cached on disk while the control plane is unreachable.
//!
//! `state` decides what to send and when; `run` here only carries its
//! actions out with the control-plane client and reports what came back.

pub mod state;

use std::sync::Arc;

use control_client::wire::{ApplianceInfo, HealthSummary, RegisterRequest};
use control_client::{ClientError, ControlClient, RetryPolicy};
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::ControlConfig;
use state::{Action, ControlState, Event, Observed, Settings};

/// Addresses this appliance actually bound, for URLs the config leaves out.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub admin: std::net::SocketAddr,
    pub http: Option<std::net::SocketAddr>,
    pub https: Option<std::net::SocketAddr>,
}

/// The control-plane client presenting `credential`; None (logged) when
/// it cannot be built.
fn client(cfg: &ControlConfig, credential: &str) -> Option<ControlClient> {
    ControlClient::new(
        &cfg.url.0,
        &cfg.appliance_id,
        credential,
        &cfg.cache_dir,
        cfg.ca_file.as_deref(),
        RetryPolicy::default(),
    )
    .map_err(|e| tracing::error!(error = %e, "control plane client unusable"))
    .ok()
}

/// The credential to present: the configured one, else the one an earlier
/// enrolment saved, else enrol now with `enrolment_token` (see
/// `control_client::enrol`). None when there is none to be had: the reason
/// is logged, and oca serves on without a control plane.
async fn credential(
    cfg: &ControlConfig,
    info: &ApplianceInfo,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    use control_client::enrol;
    if let Some(c) = &cfg.credential {
        return Some(c.clone());
    }
    match enrol::saved_credential(&cfg.cache_dir) {
        Ok(Some(c)) => return Some(c),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "the enrolled credential is unusable; not talking to the control plane");
            return None;
        }
    }
    let token = cfg.enrolment_token.as_deref()?;
    let client = client(cfg, "")?;
    let enrolling = enrol::enrol(
        &client,
        &cfg.cache_dir,
        token,
        &cfg.appliance_id,
        info,
        std::time::Duration::from_secs(5),
    );
    tokio::select! {
        outcome = enrolling => match outcome {
            Ok(c) => {
                tracing::info!(
                    appliance = %cfg.appliance_id,
                    credential_file = %enrol::credential_path(&cfg.cache_dir).display(),
                    "enrolled with the control plane"
                );
                Some(c)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot enrol; issue a new token (steering appliances enroll) and restart");
                None
            }
        },
        _ = crate::http::until_set(stop) => None,
    }
}

/// Run until `stop`. When `drain` turns true, heartbeat at once: steering
/// takes a heartbeat as its health poll, so it hears `draining` now rather
/// than at the next interval.
pub async fn run(
    admin: Arc<Admin>,
    cfg: ControlConfig,
    bound: Bound,
    mut drain: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = &admin.shared;
    let keys_from_control = !shared.access.keys_from_file();
    let mut keys_version = None;
    let info = ApplianceInfo {
        tier: cfg.tier,
        site: cfg.site.clone(),
        region: cfg.region.clone(),
        asn: cfg.asn,
        http_url: cfg
            .http_url
            .clone()
            .or_else(|| bound.http.map(|a| format!("http://{a}"))),
        https_url: cfg
            .https_url
            .clone()
            .or_else(|| bound.https.map(|a| format!("https://{a}"))),
        admin_url: cfg
            .admin_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", bound.admin)),
        capacity_bps: admin.capacity_bps,
        storage_bytes: cfg
            .storage_bytes
            .unwrap_or_else(|| admin.shared.store.storage_bytes()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let Some(credential) = credential(&cfg, &info, &mut stop).await else {
        return;
    };
    let Some(client) = client(&cfg, &credential) else {
        return;
    };
    if keys_from_control && let Some(cached) = client.cached_keys() {
        match cached.to_keyset() {
            Ok(ks) => {
                shared.access.install(ks);
                keys_version = Some(cached.version);
                tracing::info!(
                    version = cached.version,
                    "serving with cached signing keys until the control plane answers"
                );
            }
            Err(e) => tracing::warn!(error = %e, "cached keys unusable"),
        }
    }
    let mut state = ControlState::new(
        Settings {
            keys_from_control,
            keys_version,
            seed: rand::random(),
        },
        now(),
    );
    let mut drain_told = false;
    loop {
        let step = async {
            match state.poll(now()) {
                // Only a sleep is cut short: a request in flight is answered
                // first, so its outcome is never lost.
                Action::Sleep(until) if !drain_told => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => Step::Slept,
                        _ = crate::http::until_set(&mut drain) => {
                            drain_told = true;
                            Step::Draining
                        }
                    }
                }
                Action::Sleep(until) => {
                    tokio::time::sleep_until(until.into()).await;
                    Step::Slept
                }
                Action::Register => Step::Done(register(&client, &info, &admin).await),
                Action::Heartbeat { .. } => {
                    let observed = Observed {
                        renditions: shared.store.renditions(),
                        prefixes: shared.bgp.as_ref().map(|b| b.snapshot().prefixes),
                        health: health(&admin),
                    };
                    let hb = state.heartbeat(observed, now());
                    Step::Done(heartbeat(&client, &hb).await)
                }
                Action::FetchKeys => Step::Done(fetch_keys(&client, &admin).await),
            }
        };
        tokio::select! {
            step = step => match step {
                Step::Done(event) => state.on_response(event, now()),
                Step::Draining => state.report_now(now()),
                Step::Slept => {}
            },
            _ = crate::http::until_set(&mut stop) => return,
        }
    }
}

/// What one turn of the loop did.
enum Step {
    Slept,
    /// Draining began during a sleep.
    Draining,
    /// A request was made: its outcome.
    Done(Event),
}

/// The runtime's clock (paused in tests that pause tokio time).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn register(client: &ControlClient, info: &ApplianceInfo, admin: &Admin) -> Event {
    let req = RegisterRequest { info: info.clone() };
    match client.register(&req).await {
        Ok(response) => {
            tracing::info!(appliance = %client.appliance_id(), "registered with the control plane");
            Event::Registered {
                response,
                holding: admin.shared.store.renditions(),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "control plane registration failed; serving on and retrying");
            Event::RegisterFailed
        }
    }
}

async fn heartbeat(client: &ControlClient, hb: &control_client::wire::Heartbeat) -> Event {
    match client.heartbeat(hb).await {
        Ok(resp) => Event::HeartbeatAnswered(resp),
        Err(ClientError::Refused { code, .. }) if code == "unknown_appliance" => {
            Event::UnknownAppliance
        }
        Err(ClientError::Refused { code, details, .. }) if code == "unknown_rendition" => {
            tracing::info!(renditions = ?details, "not in the catalog; left out of inventory reports");
            Event::NotInCatalog(details)
        }
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed");
            Event::HeartbeatFailed
        }
    }
}

async fn fetch_keys(client: &ControlClient, admin: &Admin) -> Event {
    let access = &admin.shared.access;
    match client
        .keys()
        .await
        .map_err(|e| e.to_string())
        .and_then(|k| k.to_keyset().map(|ks| (k.version, ks)))
    {
        Ok((version, ks)) => {
            access.install(ks);
            tracing::info!(version, keys = ?access.key_ids(), "signing keys updated from the control plane");
            Event::KeysInstalled(version)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot fetch signing keys; keeping the current ones");
            Event::KeysFailed
        }
    }
}

fn health(admin: &Admin) -> HealthSummary {
    HealthSummary {
        status: admin.status().to_owned(),
        egress_bps: admin.egress_bps(),
        capacity_bps: admin.capacity_bps,
        connections: admin.shared.metrics.connections_active.get().max(0) as u64,
    }
}
