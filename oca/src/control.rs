//! The appliance's conversation with the control plane: register, heartbeat
//! (health and inventory deltas), and signing keys, which keep working from
//! the last keys cached on disk while the control plane is unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use control_client::wire::{
    ApplianceInfo, HealthSummary, Heartbeat, Inventory, PrefixReport, RegisterRequest,
    RenditionHolding, inventory_digest,
};
use control_client::{ControlClient, RetryPolicy};
use ipnet::IpNet;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::ControlConfig;

/// What changed between the inventory steering acknowledged and the current one.
pub fn delta(
    acked: &BTreeMap<String, RenditionHolding>,
    now: &[RenditionHolding],
) -> (Vec<RenditionHolding>, Vec<String>) {
    let upserted: Vec<RenditionHolding> = now
        .iter()
        .filter(|r| acked.get(&r.rendition) != Some(*r))
        .cloned()
        .collect();
    let current: std::collections::HashSet<&str> =
        now.iter().map(|r| r.rendition.as_str()).collect();
    let removed = acked
        .keys()
        .filter(|k| !current.contains(k.as_str()))
        .cloned()
        .collect();
    (upserted, removed)
}

/// Addresses this appliance actually bound, for URLs the config leaves out.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub admin: std::net::SocketAddr,
    pub http: Option<std::net::SocketAddr>,
    pub https: Option<std::net::SocketAddr>,
}

/// Run until `stop`.
pub async fn run(
    admin: Arc<Admin>,
    cfg: ControlConfig,
    bound: Bound,
    mut stop: watch::Receiver<bool>,
) {
    let client = match ControlClient::new(
        &cfg.url,
        &cfg.appliance_id,
        &cfg.credential,
        &cfg.cache_dir,
        cfg.ca_file.as_deref(),
        RetryPolicy::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "control plane client unusable");
            return;
        }
    };
    let shared = &admin.shared;
    let keys_from_control = !shared.access.keys_from_file();
    let mut keys_version = None;
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
    let mut interval = Duration::from_secs(5);
    let mut acked: BTreeMap<String, RenditionHolding> = BTreeMap::new();
    let mut acked_version = 0u64;
    let mut send_full = true;
    let mut registered = false;
    // Directories steering's catalog does not know (manifests, other packagings):
    // left out of reports, and asked about again every ten minutes.
    let mut not_in_catalog: std::collections::HashSet<String> = Default::default();
    let mut not_in_catalog_since = std::time::Instant::now();
    // BGP-learned prefixes: what steering acknowledged, at which version.
    let mut prefixes_acked: BTreeSet<IpNet> = BTreeSet::new();
    let mut prefixes_version = 0u64;
    let mut prefixes_full = true;
    loop {
        if !registered {
            match client
                .register(&RegisterRequest { info: info.clone() })
                .await
            {
                Ok(r) => {
                    registered = true;
                    interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(100, 600_000));
                    // If steering already holds exactly what we hold, no full resync is needed.
                    let now = shared.store.renditions();
                    if r.inventory_digest == inventory_digest(&now) && r.inventory_version > 0 {
                        acked = now.into_iter().map(|h| (h.rendition.clone(), h)).collect();
                        acked_version = r.inventory_version;
                        send_full = false;
                    }
                    tracing::info!(appliance = %cfg.appliance_id, "registered with the control plane");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control plane registration failed; serving on and retrying")
                }
            }
        }
        if registered {
            if not_in_catalog_since.elapsed() > Duration::from_secs(600) {
                not_in_catalog.clear();
                not_in_catalog_since = std::time::Instant::now();
            }
            let mut now = shared.store.renditions();
            now.retain(|r| !not_in_catalog.contains(&r.rendition));
            let digest = inventory_digest(&now);
            let inventory = if send_full {
                Some(Inventory::Full {
                    version: acked_version + 1,
                    digest,
                    renditions: now.clone(),
                })
            } else {
                let (upserted, removed) = delta(&acked, &now);
                (!upserted.is_empty() || !removed.is_empty()).then(|| Inventory::Delta {
                    base_version: acked_version,
                    version: acked_version + 1,
                    digest,
                    upserted,
                    removed,
                })
            };
            let learned = shared.bgp.as_ref().map(|b| b.snapshot().prefixes);
            let prefixes = learned.as_ref().and_then(|now| {
                prefix_report(&prefixes_acked, prefixes_version, now, prefixes_full)
            });
            let hb = Heartbeat {
                prefixes: prefixes.clone(),
                health: health(&admin),
                inventory: inventory.clone(),
            };
            match client.heartbeat(&hb).await {
                Ok(resp) => {
                    if resp.prefixes_resync {
                        prefixes_full = true;
                    } else if let (Some(_), Some(now)) = (&prefixes, learned) {
                        prefixes_acked = now;
                        prefixes_version = resp.prefixes_version;
                        prefixes_full = false;
                    }
                    if resp.register {
                        // Steering restarted: tell it again who we are
                        // (addresses, capacity, storage) before the next beat.
                        registered = false;
                    }
                    if resp.resync {
                        send_full = true;
                    } else if inventory.is_some() {
                        acked = now.into_iter().map(|h| (h.rendition.clone(), h)).collect();
                        acked_version = resp.inventory_version;
                        send_full = false;
                    }
                    if keys_from_control && keys_version != Some(resp.keys_version) {
                        match client
                            .keys()
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|k| k.to_keyset().map(|ks| (k.version, ks)))
                        {
                            Ok((v, ks)) => {
                                shared.access.install(ks);
                                keys_version = Some(v);
                                tracing::info!(version = v, keys = ?shared.access.key_ids(), "signing keys updated from the control plane");
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot fetch signing keys; keeping the current ones")
                            }
                        }
                    }
                }
                Err(control_client::ClientError::Refused { code, .. })
                    if code == "unknown_appliance" =>
                {
                    registered = false
                }
                Err(control_client::ClientError::Refused { code, details, .. })
                    if code == "unknown_rendition" =>
                {
                    tracing::info!(renditions = ?details, "not in the catalog; left out of inventory reports");
                    not_in_catalog.extend(details);
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::http::until_set(&mut stop) => return,
        }
    }
}

/// What to tell steering about BGP-learned prefixes: everything when `full`
/// (first report, or steering asked), else what changed since the acknowledged
/// set, or nothing when nothing did.
fn prefix_report(
    acked: &BTreeSet<IpNet>,
    acked_version: u64,
    now: &BTreeSet<IpNet>,
    full: bool,
) -> Option<PrefixReport> {
    let text = |s: &mut dyn Iterator<Item = &IpNet>| s.map(|p| p.to_string()).collect::<Vec<_>>();
    if full {
        return Some(PrefixReport::Full {
            version: acked_version + 1,
            prefixes: text(&mut now.iter()),
        });
    }
    let announced = text(&mut now.difference(acked));
    let withdrawn = text(&mut acked.difference(now));
    (!announced.is_empty() || !withdrawn.is_empty()).then(|| PrefixReport::Delta {
        base_version: acked_version,
        version: acked_version + 1,
        announced,
        withdrawn,
    })
}

fn health(admin: &Admin) -> HealthSummary {
    HealthSummary {
        status: admin.status().to_owned(),
        egress_bps: admin.egress_bps(),
        capacity_bps: admin.capacity_bps,
        connections: admin.shared.metrics.connections_active.get().max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_reports_full_then_deltas_then_nothing() {
        let set = |v: &[&str]| {
            v.iter()
                .map(|p| p.parse::<IpNet>().unwrap())
                .collect::<BTreeSet<_>>()
        };
        let (a, b) = (
            set(&["10.0.0.0/8", "2001:db8::/32"]),
            set(&["10.0.0.0/8", "100.64.0.0/10"]),
        );
        assert_eq!(
            prefix_report(&BTreeSet::new(), 0, &a, true),
            Some(PrefixReport::Full {
                version: 1,
                prefixes: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            })
        );
        assert_eq!(
            prefix_report(&a, 1, &b, false),
            Some(PrefixReport::Delta {
                base_version: 1,
                version: 2,
                announced: vec!["100.64.0.0/10".into()],
                withdrawn: vec!["2001:db8::/32".into()],
            })
        );
        assert_eq!(prefix_report(&b, 2, &b, false), None);
    }

    fn r(n: &str, o: u64) -> RenditionHolding {
        RenditionHolding {
            rendition: n.into(),
            objects: o,
            bytes: o,
        }
    }

    #[test]
    fn delta_lists_changes_only() {
        let acked: BTreeMap<String, RenditionHolding> = [r("a", 1), r("b", 2), r("c", 3)]
            .into_iter()
            .map(|h| (h.rendition.clone(), h))
            .collect();
        let (up, rm) = delta(&acked, &[r("a", 1), r("b", 5), r("d", 1)]);
        assert_eq!(up, vec![r("b", 5), r("d", 1)]);
        assert_eq!(rm, vec!["c".to_owned()]);
        let (up, rm) = delta(&acked, &[r("a", 1), r("b", 2), r("c", 3)]);
        assert!(up.is_empty() && rm.is_empty());
    }
}
