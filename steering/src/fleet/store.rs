//! The fleet half's part of the store: appliances, inventories, signing keys,
//! BGP data and fill-plan versions; and what fill planning reads of the shared
//! catalog and demand log.

use async_trait::async_trait;
use std::collections::BTreeMap;

use control_client::wire::{
    ApplianceInfo, EnrolRequest, HealthSummary, KeyWire, RenditionHolding, RouteAttrs, Tier,
};
use serde::{Deserialize, Serialize};

use crate::fleet::fillplan::{Play, Title};
use crate::forecast::Counts;
use crate::store::{CatalogStore, StoreError};

/// A persisted appliance.
#[derive(Debug, Clone)]
pub struct ApplianceRow {
    pub id: String,
    pub info: ApplianceInfo,
    pub credential_sha256: String,
    /// Where the operator placed it, for an enrolled appliance (see `Placement`).
    pub bound: Option<Placement>,
    /// Its credential was revoked: it is refused and steered to by no one.
    pub revoked: bool,
}

/// Where an operator placed an enrolled appliance, bound by its enrolment
/// token: the appliance may not claim another tier, site or region, and
/// steering learns from here what the appliance cannot say of itself (where
/// it is, its local fill window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub tier: Tier,
    pub site: String,
    /// Unset on a token: the region the appliance states (then bound to it).
    #[serde(default)]
    pub region: Option<String>,
    /// `[latitude, longitude]` in degrees.
    #[serde(default)]
    pub location: Option<[f64; 2]>,
    /// `HH:MM-HH:MM` local time (unset: `fill.window`).
    #[serde(default)]
    pub fill_window: Option<String>,
    /// `+HH:MM` or `-HH:MM` (unset: UTC).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

/// A one-time enrolment token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolmentRow {
    pub token_sha256: String,
    /// The id the appliance must enrol as (unset: the one it proposes).
    pub appliance: Option<String>,
    pub placement: Placement,
    pub created: u64,
    /// Unix seconds after which the token enrols no one.
    pub expires: u64,
    pub used: Option<EnrolmentUse>,
}

/// Who used a token, when, with which credential (a retry after a lost
/// answer presents the same and is answered again).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolmentUse {
    pub at: u64,
    pub by: String,
    pub credential_sha256: String,
}

/// What `revoke_appliance` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    Already,
    NoSuchAppliance,
}

/// An appliance's BGP-learned prefixes as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnedRow {
    pub appliance: String,
    pub version: u64,
    /// CIDR strings.
    pub prefixes: Vec<String>,
    /// Communities and MED of the prefixes that carry any.
    pub attrs: BTreeMap<String, RouteAttrs>,
}

/// The `prefixes` column: a list of CIDR strings (as first stored), or the
/// list with the attributes of the prefixes that carry any.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPrefixes {
    Routes {
        prefixes: Vec<String>,
        #[serde(default)]
        attrs: BTreeMap<String, RouteAttrs>,
    },
    List(Vec<String>),
}

impl LearnedRow {
    /// The column's JSON.
    pub(crate) fn column(&self) -> Result<String, StoreError> {
        crate::store::to_json(&StoredPrefixes::Routes {
            prefixes: self.prefixes.clone(),
            attrs: self.attrs.clone(),
        })
    }

    /// A row from the column's JSON, either shape.
    pub(crate) fn from_column(
        appliance: String,
        version: u64,
        json: &str,
    ) -> Result<LearnedRow, StoreError> {
        let (prefixes, attrs) =
            match crate::store::from_json(json, format_args!("prefixes of {appliance}"))? {
                StoredPrefixes::Routes { prefixes, attrs } => (prefixes, attrs),
                StoredPrefixes::List(prefixes) => (prefixes, BTreeMap::new()),
            };
        Ok(LearnedRow {
            appliance,
            version,
            prefixes,
            attrs,
        })
    }
}

/// A persisted inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryRow {
    pub version: u64,
    pub digest: String,
    pub renditions: Vec<RenditionHolding>,
}

/// A steering instance sharing the store, as last heard of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: String,
    pub region: String,
    /// When it last beat, by the database's clock (ms since the epoch).
    pub beat_ms: u64,
}

/// An appliance's live state as instances share it: its last health report
/// (from a heartbeat to any instance, or a poll) and the up/down verdict of
/// the instance polling it. Each half is newer-wins by its own time, so rows
/// from several instances merge in any order.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRow {
    pub appliance: String,
    /// The report and when it was taken (ms since the epoch; 0: none here).
    pub report: Option<HealthSummary>,
    pub report_ms: u64,
    /// The verdict and when it was reached (0: none here).
    pub up: bool,
    pub up_ms: u64,
}

/// One instance's decayed sums for one measured path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRow {
    pub instance: String,
    pub network: String,
    pub appliance: String,
    pub sums: super::measure::Sums,
}

/// What an instance changed that the others must re-read (`fleet_changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// An appliance's registration or declaration.
    Info,
    Inventory,
    Prefixes,
    /// The catalog (an import).
    Catalog,
    /// The RIB (an import).
    Rib,
    /// The signing keys.
    Keys,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Info => "info",
            ChangeKind::Inventory => "inventory",
            ChangeKind::Prefixes => "prefixes",
            ChangeKind::Catalog => "catalog",
            ChangeKind::Rib => "rib",
            ChangeKind::Keys => "keys",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        [
            ChangeKind::Info,
            ChangeKind::Inventory,
            ChangeKind::Prefixes,
            ChangeKind::Catalog,
            ChangeKind::Rib,
            ChangeKind::Keys,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One logged change: when (database clock, ms), to which appliance (empty
/// for catalog, RIB and keys), and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub at_ms: u64,
    pub appliance: String,
    pub what: ChangeKind,
}

/// What one step of the key schedule does (see `FleetStore::step_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStep {
    /// A key to add, with its creation time.
    pub create: Option<(KeyWire, u64)>,
    /// Drop keys retired before this time.
    pub delete_retired_before: u64,
}

/// Decides a `KeyStep` from the keys held (key, created), oldest first.
pub type KeyDecision = Box<dyn FnOnce(&[(KeyWire, u64)]) -> KeyStep + Send>;

/// What the fleet half persists, whichever backend holds it.
#[async_trait]
pub trait FleetStore: CatalogStore {
    /// What an appliance said of itself when it registered: kept over the
    /// config's declaration from now on.
    async fn upsert_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError>;
    /// An appliance as the config declares it (at start): its credential
    /// always applies; its info only until the appliance has registered, since
    /// the appliance knows its own addresses better than a config written
    /// before it last moved.
    async fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError>;
    /// Every appliance, revoked ones included (marked).
    async fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError>;
    /// Keep a new enrolment token; drop tokens expired a month ago.
    async fn add_enrolment(&self, e: &EnrolmentRow) -> Result<(), StoreError>;
    /// Every kept enrolment token, newest first.
    async fn enrolments(&self) -> Result<Vec<EnrolmentRow>, StoreError>;
    /// Present an enrolment token (by its SHA-256): in one transaction, the
    /// token and the appliance row it names are read (locked), `enrol::decide`
    /// judges, and an `Enrol` verdict marks the token used and writes the
    /// appliance (logged as an `Info` change), so a token enrols once across
    /// every instance sharing the store.
    async fn enrol(
        &self,
        token_sha256: &str,
        req: &EnrolRequest,
        now: u64,
    ) -> Result<super::enrol::Verdict, StoreError>;
    /// Revoke an appliance's credential (logged as an `Info` change: every
    /// instance drops it at its next sync). A config declaration with the
    /// same credential does not bring it back; a new credential does.
    async fn revoke_appliance(&self, id: &str, now: u64) -> Result<Revoked, StoreError>;
    /// Replace an appliance's whole inventory in one transaction.
    async fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError>;
    async fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError>;
    /// One step of the signing-key schedule, atomic across every instance
    /// sharing the store: `decide` sees the keys held and says what to add and
    /// drop, and no other instance runs a step in between (SQLite: the write
    /// lock; PostgreSQL: an advisory lock), so a due key is created once, not
    /// once per instance. Returns the keys held after, oldest first.
    async fn step_keys(&self, decide: KeyDecision) -> Result<Vec<(KeyWire, u64)>, StoreError>;
    /// All keys, oldest first.
    async fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError>;
    /// Replace an appliance's learned prefixes and their version.
    async fn put_learned_prefixes(&self, row: &LearnedRow) -> Result<(), StoreError>;
    /// The learned prefixes of every appliance that reported some.
    async fn learned_prefixes(&self) -> Result<Vec<LearnedRow>, StoreError>;
    /// Replace the RIB table wholesale, in one transaction.
    async fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError>;
    /// Bumped by every import (0: never imported), so a running steering can
    /// tell a new import without reading the table.
    async fn rib_generation(&self) -> Result<u64, StoreError>;
    /// Every `(prefix, origin ASN)` of the imported RIB.
    async fn rib(&self) -> Result<Vec<(String, u32)>, StoreError>;
    /// Every title with its renditions and their objects, titles and renditions
    /// by id, objects in import order (init segment, then segments in play
    /// order, so a fill that stops early holds a playable start). One read
    /// transaction: an import running meanwhile is seen whole or not at all.
    async fn fill_catalog(&self) -> Result<Vec<Title>, StoreError>;
    /// Plays of every region since `since`, newest first, at most `limit` (the
    /// oldest weigh least, so they are the ones a cap drops).
    async fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError>;
    /// Plays of the `days` days before `now` counted per (region, title, day)
    /// and per (region, hour), in windows that end at `now`: the demand
    /// forecast's input, counted by the database rather than shipped row by
    /// row.
    async fn demand(&self, now: u64, days: u32) -> Result<Counts, StoreError>;
    /// The version of `appliance`'s plan whose content is `digest`: the stored
    /// one when the content is unchanged, else the next (recorded with `now`).
    /// Read and bump in one write transaction, so two concurrent requests for
    /// the same new plan get one version.
    /// One appliance, if registered or declared.
    async fn appliance(&self, id: &str) -> Result<Option<ApplianceRow>, StoreError>;
    /// Record that instance `id` (in `region`) is alive now; answer the
    /// database's clock and every instance that beat within `live_ms`.
    async fn beat(
        &self,
        id: &str,
        region: &str,
        live_ms: u64,
    ) -> Result<(u64, Vec<InstanceRow>), StoreError>;
    /// Merge live rows in (each half newer-wins), in one transaction, as
    /// written by instance `by`.
    async fn put_live(&self, by: &str, rows: &[LiveRow]) -> Result<(), StoreError>;
    /// Live rows written at or after `since_ms` (database clock), except those
    /// instance `except` wrote last (it has them already; "" for none).
    async fn live_since(&self, since_ms: u64, except: &str) -> Result<Vec<LiveRow>, StoreError>;
    /// Changes logged at or after `since_ms` (database clock), oldest first.
    async fn changes_since(&self, since_ms: u64) -> Result<Vec<Change>, StoreError>;
    /// This instance's measured paths (decayed sums, see `measure::Sums`),
    /// newer replacing older; rows of any instance not updated for
    /// `keep_ms` are dropped.
    async fn put_paths(&self, by: &str, rows: &[PathRow], keep_ms: u64) -> Result<(), StoreError>;
    /// Other instances' measured paths updated since `since_ms` (the
    /// database's clock).
    async fn paths_since(&self, since_ms: u64, except: &str) -> Result<Vec<PathRow>, StoreError>;
    async fn fill_plan_version(
        &self,
        appliance: &str,
        digest: &str,
        now: u64,
    ) -> Result<u64, StoreError>;
}

mod postgres;
mod sqlite;
pub(crate) use postgres::log_change as log_change_postgres;
pub(crate) use sqlite::log_change as log_change_sqlite;
