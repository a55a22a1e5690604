//! Several steering instances on one store (PostgreSQL, or one SQLite file
//! on one machine). Any instance answers any request, so each must know what
//! the others learned; and the work only one should do is shared out:
//!
//! - **Liveness.** Every instance beats (`instances`) each `sync_interval`;
//!   one that missed three beats is dead.
//! - **Live state.** Heartbeats reach whichever instance an appliance talks
//!   to, polls are made by one instance per appliance: their reports and
//!   up/down verdicts are batched here and flushed each `sync_interval`
//!   (`appliance_live`, newer wins), and every instance reads what the
//!   others flushed.
//! - **Measurements.** What players measured of each path, through
//!   heartbeats this instance took, is written as decayed sums each
//!   `sync_interval` (`path_estimates`); the others' sums are read back and
//!   added to this instance's (`fleet::measure`).
//! - **Changes.** Registrations, inventories, prefixes, catalog and RIB
//!   imports and key steps are logged (`fleet_changes`) in the transaction
//!   that makes them; each instance re-reads what the log names.
//! - **Polling.** Each appliance is polled by one live instance, chosen by
//!   rendezvous hashing among the live instances of its region (else among
//!   all): when one dies, only its share moves, at the next poll round after
//!   its death is seen.
//!
//! Bound: a change made through one instance is in every other's registry
//! (and snapshot) within one `sync_interval` plus a store round trip. Times
//! come from the database's clock, so instances' own clocks need not agree
//! for the log; reports carry the wall clock of the instance that took them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control_client::wire::{HealthSummary, PrefixReport};
use tokio::sync::watch;

use super::Fleet;
use super::store::{Change, ChangeKind, InstanceRow, LiveRow, PathRow};
use crate::store::StoreError;

/// How far back each read of the log and live rows reaches before the last
/// one: a write stamped before a read but committed after it (a slow
/// transaction) is still seen. Re-reads are harmless (seen changes are
/// skipped, live rows are newer-wins).
const OVERLAP_MS: u64 = 3_000;

/// This instance, and what it shares with the others.
pub struct Cluster {
    pub id: String,
    pub region: String,
    pub sync_every: Duration,
    /// Share live state (reports, verdicts) through the store. Only a shared
    /// store (PostgreSQL) has other instances to share it with: on SQLite,
    /// one instance, the writes would buy nothing (the change log is still
    /// followed, so offline imports are seen at once).
    share_live: bool,
    /// Reports and verdicts taken here since the last flush.
    pending: Mutex<HashMap<String, LiveRow>>,
    /// The live instances as of the last beat, by id.
    live: Mutex<Vec<InstanceRow>>,
    follow: Mutex<Follow>,
}

#[derive(Default)]
struct Follow {
    /// Database clock of the last read; 0 before the first.
    cursor_ms: u64,
    /// Changes already applied that a re-read within the overlap returns again.
    seen: HashSet<Change>,
}

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who polls appliance `appliance` (of `region`) among the live instances:
/// the highest rendezvous score among those of its region, or among all when
/// its region has none. Pure: every instance computes the same answer from
/// the same list.
pub fn poller_of<'a>(appliance: &str, region: &str, live: &'a [InstanceRow]) -> Option<&'a str> {
    let local = live.iter().any(|i| i.region == region);
    live.iter()
        .filter(|i| !local || i.region == region)
        .max_by_key(|i| (score(&i.id, appliance), i.id.as_str()))
        .map(|i| i.id.as_str())
}

fn score(instance: &str, appliance: &str) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(instance.as_bytes());
    ctx.update(b"\n");
    ctx.update(appliance.as_bytes());
    let d = ctx.finish();
    let mut v = [0u8; 8];
    v.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(v)
}

impl Cluster {
    pub fn new(id: String, region: String, sync_every: Duration, share_live: bool) -> Cluster {
        Cluster {
            id,
            region,
            sync_every,
            share_live,
            pending: Mutex::default(),
            live: Mutex::default(),
            follow: Mutex::default(),
        }
    }

    /// An instance is dead after this long without a beat.
    pub fn dead_after(&self) -> Duration {
        (self.sync_every * 3).max(Duration::from_millis(1_500))
    }

    /// Whether this instance polls `appliance` (of `region`) now. Before the
    /// first beat it knows no one else, so it polls everything.
    pub fn polls(&self, appliance: &str, region: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.is_empty() {
            return true;
        }
        poller_of(appliance, region, &live).is_none_or(|p| p == self.id)
    }

    /// The live instances as of the last beat.
    pub fn live(&self) -> Vec<InstanceRow> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A health report taken here (heartbeat or poll), for the others.
    pub fn note_report(&self, appliance: &str, report: &HealthSummary, at_ms: u64) {
        if !self.share_live {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let row = pending
            .entry(appliance.to_owned())
            .or_insert_with(|| empty_row(appliance));
        if at_ms >= row.report_ms {
            row.report = Some(report.clone());
            row.report_ms = at_ms;
        }
    }

    /// An up/down verdict reached here (this instance polls it), for the others.
    pub fn note_verdict(&self, appliance: &str, up: bool, at_ms: u64) {
        if !self.share_live {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let row = pending
            .entry(appliance.to_owned())
            .or_insert_with(|| empty_row(appliance));
        if at_ms >= row.up_ms {
            row.up = up;
            row.up_ms = at_ms;
        }
    }

    /// Put back rows whose flush failed, under anything newer taken since.
    fn requeue(&self, rows: Vec<LiveRow>) {
        for r in rows {
            if let Some(report) = &r.report {
                self.note_report(&r.appliance, report, r.report_ms);
            }
            if r.up_ms > 0 {
                self.note_verdict(&r.appliance, r.up, r.up_ms);
            }
        }
    }
}

fn empty_row(appliance: &str) -> LiveRow {
    LiveRow {
        appliance: appliance.to_owned(),
        report: None,
        report_ms: 0,
        up: true,
        up_ms: 0,
    }
}

/// Sync every `sync_interval` until `stop` turns true.
pub async fn sync_loop(fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(fleet.cluster.sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = sync_once(&fleet).await {
                    tracing::warn!(error = %e, "cannot sync with the other instances; will retry");
                }
            }
            _ = stop.changed() => {
                // What was taken since the last round still reaches the others.
                let _ = flush(&fleet).await;
                return;
            }
        }
    }
}

async fn flush(fleet: &Fleet) -> Result<(), StoreError> {
    let rows: Vec<LiveRow> = {
        let mut pending = fleet
            .cluster
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pending.drain().map(|(_, r)| r).collect()
    };
    if rows.is_empty() {
        return Ok(());
    }
    if let Err(e) = fleet.store.put_live(&fleet.cluster.id, &rows).await {
        fleet.cluster.requeue(rows);
        return Err(e);
    }
    Ok(())
}

/// One round: flush what was taken here, beat, then read and apply what
/// the others wrote since the last round.
pub async fn sync_once(fleet: &Fleet) -> Result<(), StoreError> {
    let cluster = &fleet.cluster;
    flush(fleet).await?;
    let live_ms = cluster.dead_after().as_millis() as u64;
    let (now_ms, live) = fleet
        .store
        .beat(&cluster.id, &cluster.region, live_ms)
        .await?;
    *cluster.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
    let since = {
        let f = cluster.follow.lock().unwrap_or_else(|p| p.into_inner());
        f.cursor_ms.saturating_sub(OVERLAP_MS)
    };
    let rows = if cluster.share_live {
        fleet.store.live_since(since, &cluster.id).await?
    } else {
        Vec::new()
    };
    if cluster.share_live {
        share_paths(fleet, since).await?;
    }
    let changes = fleet.store.changes_since(since).await?;
    let mut rebuild = apply_live(fleet, &rows);
    let fresh: Vec<Change> = {
        let mut f = cluster.follow.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = changes
            .into_iter()
            .filter(|c| f.seen.insert(c.clone()))
            .collect();
        f.seen.retain(|c| c.at_ms >= since);
        f.cursor_ms = now_ms;
        fresh
    };
    rebuild |= apply_changes(fleet, &fresh).await?;
    if rebuild {
        super::snapshot::changed(fleet);
    }
    Ok(())
}

impl Cluster {
    /// Before `Fleet::load` reads the registry: beat, and start following
    /// the log from now, so nothing changed from here on is missed.
    pub async fn begin(&self, store: &dyn super::store::FleetStore) -> Result<(), StoreError> {
        let live_ms = self.dead_after().as_millis() as u64;
        let (now_ms, live) = store.beat(&self.id, &self.region, live_ms).await?;
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
        self.follow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cursor_ms = now_ms;
        Ok(())
    }
}

/// After `Fleet::load` built the registry: every appliance's last report and
/// verdict, whoever took them.
pub async fn take_all_live(fleet: &Fleet) -> Result<(), StoreError> {
    if !fleet.cluster.share_live {
        return Ok(());
    }
    let rows = fleet.store.live_since(0, "").await?;
    apply_live(fleet, &rows);
    share_paths(fleet, 0).await
}

/// Writes the paths measured here since the last round and takes what the
/// others measured since `since`.
async fn share_paths(fleet: &Fleet, since_ms: u64) -> Result<(), StoreError> {
    let now = crate::unix_now();
    let mine = lock(&fleet.paths).take_dirty(now);
    let rows: Vec<PathRow> = mine
        .into_iter()
        .map(|(network, appliance, sums)| PathRow {
            instance: fleet.cluster.id.clone(),
            network,
            appliance,
            sums,
        })
        .collect();
    // Sums a tenth of a percent of their weight are gone: ten half-lives.
    let keep_ms = (fleet.config.steer.measure_half_life * 10).as_millis() as u64;
    fleet
        .store
        .put_paths(&fleet.cluster.id, &rows, keep_ms)
        .await?;
    let theirs = fleet.store.paths_since(since_ms, &fleet.cluster.id).await?;
    if !theirs.is_empty() {
        let mut paths = lock(&fleet.paths);
        for r in &theirs {
            paths.set_remote(&r.instance, &r.network, &r.appliance, r.sums, now);
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Take the others' reports and verdicts; whether an up/down state changed.
fn apply_live(fleet: &Fleet, rows: &[LiveRow]) -> bool {
    let now = Instant::now();
    let now_ms = wall_ms();
    let mut changed = false;
    let mut reg = fleet.registry();
    for row in rows {
        let polled_here = {
            let Some(a) = reg.appliances.get(&row.appliance) else {
                continue;
            };
            fleet.cluster.polls(&row.appliance, &a.info.region)
        };
        let Some(a) = reg.appliances.get_mut(&row.appliance) else {
            continue;
        };
        if row.report_ms > a.report_ms && row.report.is_some() {
            a.last = row.report.clone();
            a.report_ms = row.report_ms;
            let age = Duration::from_millis(now_ms.saturating_sub(row.report_ms));
            a.last_seen = Some(now.checked_sub(age).unwrap_or(now));
        }
        // The poller's own hysteresis is the verdict; others take it.
        if !polled_here && row.up_ms > a.up_ms {
            a.up_ms = row.up_ms;
            if a.health.up != row.up {
                a.health.set(row.up);
                changed = true;
                tracing::info!(appliance = %row.appliance, up = row.up, "appliance health changed (another instance's poll)");
            }
        }
    }
    changed
}

/// Re-read what the log names; whether the registry changed.
async fn apply_changes(fleet: &Fleet, changes: &[Change]) -> Result<bool, StoreError> {
    let mut kinds: HashSet<(ChangeKind, &str)> = HashSet::new();
    for c in changes {
        kinds.insert((c.what, c.appliance.as_str()));
    }
    let mut changed = false;
    let mut prefixes_read = None;
    for (what, appliance) in kinds {
        match what {
            ChangeKind::Info => {
                // What this instance wrote meanwhile (a registration taken
                // here) was written to the store first, so it is at least as
                // new as the row read here: keep it rather than the row.
                let seen = |reg: &super::registry::Registry| {
                    reg.appliances.get(appliance).map(|a| a.info_writes)
                };
                let before = seen(&fleet.registry());
                if let Some(row) = fleet.store.appliance(appliance).await? {
                    let is_new = {
                        let mut reg = fleet.registry();
                        if seen(&reg) != before {
                            continue;
                        }
                        if row.revoked {
                            if reg.revoke(appliance) {
                                tracing::warn!(%appliance, "appliance credential revoked; no longer steered to");
                            }
                            changed = true;
                            continue;
                        }
                        let is_new = !reg.appliances.contains_key(appliance);
                        reg.apply_row(row);
                        is_new
                    };
                    if is_new {
                        tracing::info!(%appliance, "appliance registered through another instance");
                        let inv = fleet.store.inventory(appliance).await?;
                        if inv.version > 0 {
                            fleet
                                .registry()
                                .set_inventory(appliance, inv.version, inv.renditions);
                        }
                    }
                    changed = true;
                }
            }
            ChangeKind::Inventory => {
                let inv = fleet.store.inventory(appliance).await?;
                let mut reg = fleet.registry();
                let differs = reg.appliances.get(appliance).is_some_and(|a| {
                    a.inventory_version != inv.version || a.inventory_digest != inv.digest
                });
                if differs {
                    reg.set_inventory(appliance, inv.version, inv.renditions);
                    changed = true;
                }
            }
            ChangeKind::Prefixes => {
                if prefixes_read.is_none() {
                    prefixes_read = Some(fleet.store.learned_prefixes().await?);
                }
                let all = prefixes_read.as_ref().expect("read above");
                if let Some(row) = all.iter().find(|r| r.appliance == appliance) {
                    let mut reg = fleet.registry();
                    let differs = reg
                        .appliances
                        .get(appliance)
                        .is_some_and(|a| a.prefixes_version != row.version);
                    if differs {
                        let report = PrefixReport::Full {
                            version: row.version,
                            prefixes: row.prefixes.clone(),
                            attrs: row.attrs.clone(),
                        };
                        reg.take_prefixes(appliance, &report);
                        changed = true;
                    }
                }
            }
            ChangeKind::Catalog => fleet.refresh_catalog().await?,
            ChangeKind::Rib => {
                fleet.refresh_networks().await?;
                changed = true;
            }
            ChangeKind::Keys => fleet.publish_keys().await?,
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, region: &str) -> InstanceRow {
        InstanceRow {
            id: id.into(),
            region: region.into(),
            beat_ms: 0,
        }
    }

    #[test]
    fn each_appliance_has_one_poller_preferring_its_region() {
        let live = [inst("a", "eu"), inst("b", "eu"), inst("c", "us")];
        let ids: Vec<String> = (0..300).map(|i| format!("oca-{i}")).collect();
        let mut shares: HashMap<&str, usize> = HashMap::new();
        for id in &ids {
            let p = poller_of(id, "eu", &live).unwrap();
            assert_ne!(
                p, "c",
                "an eu appliance is polled from eu while eu has instances"
            );
            *shares.entry(p).or_default() += 1;
        }
        assert!(
            shares["a"] > 100 && shares["b"] > 100,
            "shared out: {shares:?}"
        );
        assert_eq!(poller_of("x", "us", &live), Some("c"));
        // A region with no instance is polled by any.
        assert!(poller_of("x", "ap", &live).is_some());
        assert_eq!(poller_of("x", "eu", &[]), None);
    }

    #[test]
    fn a_death_moves_only_the_dead_instances_share() {
        let before = [inst("a", "eu"), inst("b", "eu"), inst("c", "eu")];
        let after = [inst("a", "eu"), inst("c", "eu")];
        for i in 0..300 {
            let id = format!("oca-{i}");
            let was = poller_of(&id, "eu", &before).unwrap();
            let now = poller_of(&id, "eu", &after).unwrap();
            if was != "b" {
                assert_eq!(was, now, "{id} moved though its poller lives");
            }
        }
    }

    #[test]
    fn pending_rows_keep_the_newest_of_each_half() {
        let c = Cluster::new("a".into(), "eu".into(), Duration::from_millis(500), true);
        let h = |s: &str| HealthSummary {
            status: s.into(),
            egress_bps: 0,
            capacity_bps: 0,
            connections: 0,
        };
        c.note_report("x", &h("new"), 20);
        c.note_report("x", &h("old"), 10);
        c.note_verdict("x", false, 15);
        let rows: Vec<LiveRow> = c.pending.lock().unwrap().drain().map(|(_, r)| r).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].report.as_ref().unwrap().status, "new");
        assert_eq!((rows[0].up, rows[0].up_ms), (false, 15));
        c.requeue(rows);
        c.note_report("x", &h("newer"), 30);
        let row = c.pending.lock().unwrap()["x"].clone();
        assert_eq!(
            (row.report.unwrap().status.as_str(), row.up),
            ("newer", false)
        );
    }
}
