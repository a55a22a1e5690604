//! The URL-signing key schedule: a new key every `rotate_every`, each valid for
//! `lifetime`, so there are always at least two live keys around a rotation and
//! tokens signed just before it keep verifying after it.

use std::sync::Arc;
use std::time::Duration;

use control_client::wire::{KeySetWire, KeyWire};
use tokio::sync::{Notify, watch};

use super::Fleet;
use crate::config::KeysConfig;

/// What the schedule says to do at `now`, given the keys held (key, created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Create a key valid from `now` for the configured lifetime.
    pub create: bool,
    /// Delete keys retired before this time.
    pub delete_retired_before: u64,
}

/// Decide the schedule's next step. Pure: `now` in, plan out.
pub fn plan(keys: &[(KeyWire, u64)], now: u64, rotate_every: u64) -> Plan {
    let newest = keys.iter().map(|(_, created)| *created).max();
    Plan {
        create: newest.is_none_or(|c| now >= c.saturating_add(rotate_every)),
        // Keep retired keys a day for diagnostics; they verify nothing after not_after.
        delete_retired_before: now.saturating_sub(86_400),
    }
}

/// A new key created at `now`, valid from `now + lead` for `lifetime`.
/// Appliances receive it at once, but it signs nothing until `now + lead`:
/// by then every appliance has heartbeaten and holds it.
pub fn new_key(now: u64, lead: u64, lifetime: u64) -> KeyWire {
    KeyWire {
        id: format!("k{now}"),
        secret: urlsign::generate_secret(),
        not_before: Some(now + lead),
        not_after: Some(now + lead + lifetime),
    }
}

/// The lead a key created at `now` gets: none when no held key verifies at
/// `now` (nothing else could sign), else `lead`.
pub fn lead_for(keys: &[(KeyWire, u64)], now: u64, lead: u64) -> u64 {
    let live = keys.iter().any(|(k, _)| {
        k.not_before.is_none_or(|nb| nb <= now) && k.not_after.is_none_or(|na| now < na)
    });
    if live { lead } else { 0 }
}

/// The key set as appliances receive it; the version changes whenever the set does.
pub fn key_set(keys: &[(KeyWire, u64)]) -> KeySetWire {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, _) in keys {
        ctx.update(k.id.as_bytes());
        ctx.update(b"\n");
    }
    let d = ctx.finish();
    let mut v = [0u8; 8];
    v.copy_from_slice(&d.as_ref()[..8]);
    KeySetWire {
        version: u64::from_be_bytes(v) >> 1,
        keys: keys.iter().map(|(k, _)| k.clone()).collect(),
    }
}

/// Apply the schedule about once a minute (so rotation keeps within a minute of
/// it) and on SIGHUP (`reload`), which also re-reads what offline commands
/// change: the RIB after `bgp import-rib`, catalogue totals after `catalog
/// import`. Ends when `stop` turns true.
pub async fn key_loop(fleet: Arc<Fleet>, reload: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(check_every(&fleet.config.keys));
    loop {
        tokio::select! {
            reloading = async {
                tokio::select! {
                    _ = tick.tick() => false,
                    _ = reload.notified() => true,
                }
            } => {
                if let Err(e) = fleet.rotate_keys().await {
                    tracing::error!(error = %e, "key rotation failed; will retry");
                }
                // A RIB import (offline) changes the client networks.
                if let Err(e) = fleet.refresh_networks().await {
                    tracing::warn!(error = %e, "cannot read the RIB");
                }
                // Re-imports change totals: pick them up here too.
                if let Err(e) = fleet.refresh_catalog().await {
                    tracing::warn!(error = %e, "cannot refresh catalog totals");
                }
                if reloading {
                    tracing::info!("reloaded: keys, RIB and catalogue totals");
                    service::notify::ready(&fleet.status_line());
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// How often the key loop applies the schedule.
pub fn check_every(cfg: &KeysConfig) -> Duration {
    cfg.rotate_every
        .min(Duration::from_secs(60))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_schedule_overlaps() {
        let day = 86_400;
        assert!(plan(&[], 1000, day).create, "no keys: create one");
        let k1 = (new_key(1000, 0, 3 * day), 1000);
        assert!(!plan(std::slice::from_ref(&k1), 1000 + day - 1, day).create);
        assert!(plan(std::slice::from_ref(&k1), 1000 + day, day).create);
        let lead = lead_for(std::slice::from_ref(&k1), 1000 + day, 600);
        assert_eq!(lead, 600);
        let k2 = (new_key(1000 + day, lead, 3 * day), 1000 + day);
        let set = key_set(&[k1.clone(), k2.clone()]);
        assert_ne!(set.version, key_set(std::slice::from_ref(&k1)).version);
        let ks = set.to_keyset().unwrap();
        // Published but not yet signing: appliances get it first.
        assert_eq!(ks.signing_key(1000 + day + 10).unwrap().id, k1.0.id);
        // After the lead the newer one signs, and both verify.
        assert_eq!(ks.signing_key(1000 + day + 600).unwrap().id, k2.0.id);
        assert!(ks.get(&k1.0.id).unwrap().usable_at(1000 + day + 600, 0));
    }

    #[test]
    fn the_first_key_signs_at_once() {
        assert_eq!(lead_for(&[], 1000, 600), 0);
        // Every held key expired: no lead either.
        let old = (new_key(0, 0, 100), 0);
        assert_eq!(lead_for(&[old], 1000, 600), 0);
    }
}
