//! The fleet half's part of the store: appliances, inventories, signing keys,
//! BGP data and fill-plan versions; and what fill planning reads of the shared
//! catalog and demand log.

use async_trait::async_trait;
use control_client::wire::{ApplianceInfo, KeyWire, RenditionHolding};

use crate::fleet::fillplan::{Play, Title};
use crate::store::{CatalogStore, StoreError};

/// A persisted appliance.
#[derive(Debug, Clone)]
pub struct ApplianceRow {
    pub id: String,
    pub info: ApplianceInfo,
    pub credential_sha256: String,
}

/// A persisted inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryRow {
    pub version: u64,
    pub digest: String,
    pub renditions: Vec<RenditionHolding>,
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
    async fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError>;
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
    /// Replace an appliance's learned prefixes (CIDR strings) and their version.
    async fn put_learned_prefixes(
        &self,
        appliance: &str,
        version: u64,
        prefixes: &[String],
    ) -> Result<(), StoreError>;
    /// `(appliance, version, prefixes)` of every appliance that reported some.
    async fn learned_prefixes(&self) -> Result<Vec<(String, u64, Vec<String>)>, StoreError>;
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
    /// The version of `appliance`'s plan whose content is `digest`: the stored
    /// one when the content is unchanged, else the next (recorded with `now`).
    /// Read and bump in one write transaction, so two concurrent requests for
    /// the same new plan get one version.
    async fn fill_plan_version(
        &self,
        appliance: &str,
        digest: &str,
        now: u64,
    ) -> Result<u64, StoreError>;
}

mod postgres;
mod sqlite;
