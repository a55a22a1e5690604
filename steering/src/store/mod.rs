//! The store, in parts. Each half of steering owns its part, a trait with
//! backend-neutral rows next to the half's code (`fleet::store`,
//! `viewers::store`); the catalog (`catalog`) is shared, written by
//! `catalog import` and read by both halves. Two backends implement every
//! part with the same behaviour: SQLite (`sqlite`, one embedded file: the
//! default, for the lab, tests and a single small deployment) and PostgreSQL
//! (`postgres`, shared by several instances in several regions). `open`
//! chooses by the configured `database`; nothing outside the backends'
//! `impl` blocks knows which one it has.
//!
//! Every method is async and none blocks a runtime thread: SQLite work runs
//! on the blocking pool and a writer thread, PostgreSQL's on an async pool.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

mod catalog;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub use catalog::{CatalogStore, TitleBrief, TitleRecord, TitleRendition};
pub use postgres::Postgres;
pub use sqlite::Sqlite;
#[cfg(test)]
mod suite;

pub use crate::fleet::store::FleetStore;
pub use crate::viewers::store::ViewerStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (SQLite: its error; another backend: its own).
    #[error("database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The store cannot be reached now (no connection, a timeout, a server
    /// shutting down or not yet promoted): worth answering from memory where
    /// that is safe, and retrying later.
    #[error("store unreachable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            // Locked by another process past the busy timeout, or the file
            // cannot be opened or read now.
            Some(DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(Box::new(e)),
        }
    }
}

/// JSON kept in a text column.
pub(crate) fn to_json(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A text column's JSON read back; `of` names the record in the error.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    json: &str,
    of: impl std::fmt::Display,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{of}: {e}")))
}

/// Whether the store takes writes now, for `/health`.
#[async_trait]
pub trait Probe: Send + Sync {
    /// One small write transaction, recording `now`. The caller bounds it.
    async fn probe_write(&self, now: u64) -> Result<(), StoreError>;
    /// Drop what is kept only for a while: streams last seen before
    /// `streams_before`, plays before `plays_before`, at most `limit` rows of
    /// each (so one call never holds the write lock long; call again while it
    /// returns `limit` or more). Run in the background, so no play pays for
    /// history. Returns the rows removed.
    async fn prune(
        &self,
        streams_before: u64,
        plays_before: u64,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// Every part of the store as one object: what a backend provides.
pub trait Store: FleetStore + ViewerStore + Probe {}

impl<T: FleetStore + ViewerStore + Probe> Store for T {}

/// Where the store is, from the configured `database`: a `postgres://` or
/// `postgresql://` URL names a PostgreSQL database; anything else is the path
/// of a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn parse(database: &str) -> Location {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            Location::Postgres(database.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(database))
        }
    }
}

/// Whether `url` is a PostgreSQL URL steering can use (checked when the
/// configuration is, so a typo fails at start with the reason).
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))
}

/// Open the store the configuration names: the one place that chooses a
/// backend. `connections`: the PostgreSQL pool's size.
pub async fn open(database: &str, connections: usize) -> Result<Arc<dyn Store>, StoreError> {
    match Location::parse(database) {
        Location::Sqlite(path) => Ok(Arc::new(Sqlite::open(&path)?)),
        Location::Postgres(url) => Ok(Arc::new(Postgres::open(&url, connections).await?)),
    }
}

/// Rows one `prune` statement removes at most.
const PRUNE_BATCH: u32 = 5_000;

/// Prune what `history` no longer keeps, batch by batch; the rows removed.
pub async fn prune_history(
    store: &dyn Store,
    history: &crate::config::HistoryConfig,
    now: u64,
) -> Result<u64, StoreError> {
    let streams_before = now.saturating_sub(history.keep_streams.as_secs());
    let plays_before = now.saturating_sub(history.keep_plays.as_secs());
    let mut removed = 0;
    loop {
        let n = store
            .prune(streams_before, plays_before, PRUNE_BATCH)
            .await?;
        removed += n;
        if n < u64::from(PRUNE_BATCH) {
            return Ok(removed);
        }
    }
}

/// Prune once a minute until `stop` turns true. Every instance runs it; the
/// deletes are idempotent, so instances sharing a database just share it.
pub async fn prune_loop(
    store: Arc<dyn Store>,
    history: crate::config::HistoryConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match prune_history(store.as_ref(), &history, crate::unix_now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old streams and plays"),
                Err(e) => tracing::warn!(error = %e, "cannot prune history; will retry"),
            },
            _ = stop.changed() => return,
        }
    }
}

#[async_trait]
impl Probe for Postgres {
    async fn probe_write(&self, now: u64) -> Result<(), StoreError> {
        self.probe(now).await
    }

    async fn prune(
        &self,
        streams_before: u64,
        plays_before: u64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let streams = client
            .execute(
                "DELETE FROM streams WHERE ctid IN
                     (SELECT ctid FROM streams WHERE last_seen < $1 LIMIT $2)",
                &[&(streams_before as i64), &(limit as i64)],
            )
            .await?;
        let plays = client
            .execute(
                "DELETE FROM plays WHERE ctid IN
                     (SELECT ctid FROM plays WHERE at < $1 LIMIT $2)",
                &[&(plays_before as i64), &(limit as i64)],
            )
            .await?;
        // Licence counts go with their plays' streams.
        client
            .execute(
                "DELETE FROM play_licences WHERE ctid IN (SELECT ctid FROM play_licences l
                     WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.id = l.play) LIMIT $1)",
                &[&(limit as i64)],
            )
            .await?;
        client
            .execute(
                &format!(
                    "DELETE FROM fleet_changes WHERE at_ms < {} - 600000",
                    postgres::NOW_MS
                ),
                &[],
            )
            .await?;
        client
            .execute(
                &format!(
                    "DELETE FROM instances WHERE beat_ms < {} - 86400000",
                    postgres::NOW_MS
                ),
                &[],
            )
            .await?;
        Ok(streams.max(plays))
    }
}

#[async_trait]
impl Probe for Sqlite {
    async fn probe_write(&self, now: u64) -> Result<(), StoreError> {
        self.probe(now).await
    }

    async fn prune(
        &self,
        streams_before: u64,
        plays_before: u64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.write(move |c| {
            let streams = c.execute(
                "DELETE FROM streams WHERE rowid IN
                     (SELECT rowid FROM streams WHERE last_seen < ?1 LIMIT ?2)",
                rusqlite::params![streams_before as i64, limit],
            )?;
            let plays = c.execute(
                "DELETE FROM plays WHERE rowid IN
                     (SELECT rowid FROM plays WHERE at < ?1 LIMIT ?2)",
                rusqlite::params![plays_before as i64, limit],
            )?;
            // Licence counts go with their plays' streams.
            c.execute(
                "DELETE FROM play_licences WHERE rowid IN (SELECT l.rowid FROM play_licences l
                     WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.id = l.play) LIMIT ?1)",
                rusqlite::params![limit],
            )?;
            // The change log only has to outlive the instances' overlap.
            c.execute(
                &format!(
                    "DELETE FROM fleet_changes WHERE at_ms < {} - 600000",
                    sqlite::NOW_MS
                ),
                [],
            )?;
            c.execute(
                &format!(
                    "DELETE FROM instances WHERE beat_ms < {} - 86400000",
                    sqlite::NOW_MS
                ),
                [],
            )?;
            Ok(streams.max(plays) as u64)
        })
        .await
    }
}
