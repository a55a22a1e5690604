//! The store, in parts. Each half of steering owns its part, a trait with
//! backend-neutral rows next to the half's code (`fleet::store`,
//! `viewers::store`); the catalog (`catalog`) is shared, written by
//! `catalog import` and read by both halves. SQLite is the one backend today:
//! this module opens the file and runs the schema migrations for every part
//! (one database, one `user_version`), and each part's SQL sits below its
//! trait. A second backend (PostgreSQL, for several instances sharing one
//! database) implements the same traits; nothing outside `impl ... for Sqlite`
//! blocks knows the backend.
//!
//! One SQLite file: WAL, synchronous=FULL, so a committed write survives
//! `kill -9` and power loss. The methods block on IO, as they always have.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

mod catalog;
pub use catalog::{CatalogStore, TitleRecord, TitleRendition};

pub use crate::fleet::store::FleetStore;
pub use crate::viewers::store::ViewerStore;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many
/// ran. Tables by owner: fleet (appliances, inventory, inventory_meta,
/// signing_keys, fill_plans, learned_prefixes, rib, rib_meta), viewers (users,
/// profiles, viewer_tokens, streams), shared (the catalog: titles, renditions,
/// objects, title_manifests; the demand log `plays`, written by plays and read
/// by fill planning).
const MIGRATIONS: &[&str] = &[
    // 1: registry, inventory, keys.
    "CREATE TABLE appliances (
         id TEXT PRIMARY KEY,
         info TEXT NOT NULL,
         credential_sha256 TEXT NOT NULL,
         registered_at INTEGER NOT NULL
     );
     CREATE TABLE inventory (
         appliance TEXT NOT NULL,
         rendition TEXT NOT NULL,
         objects INTEGER NOT NULL,
         bytes INTEGER NOT NULL,
         PRIMARY KEY (appliance, rendition)
     );
     CREATE TABLE inventory_meta (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         digest TEXT NOT NULL
     );
     CREATE TABLE signing_keys (
         id TEXT PRIMARY KEY,
         secret TEXT NOT NULL,
         not_before INTEGER,
         not_after INTEGER,
         created INTEGER NOT NULL
     );",
    // 2: the catalog.
    "CREATE TABLE titles (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         regions TEXT NOT NULL,
         release_time INTEGER
     );
     CREATE TABLE renditions (
         id TEXT PRIMARY KEY,
         title TEXT NOT NULL REFERENCES titles(id),
         kind TEXT NOT NULL,
         codec TEXT,
         width INTEGER,
         height INTEGER,
         bandwidth INTEGER NOT NULL,
         container TEXT NOT NULL,
         segment_duration REAL NOT NULL
     );
     CREATE TABLE objects (
         key TEXT PRIMARY KEY,
         rendition TEXT NOT NULL REFERENCES renditions(id),
         size INTEGER NOT NULL,
         sha256 TEXT NOT NULL
     );
     CREATE INDEX objects_by_rendition ON objects(rendition);",
    // 3: packaged manifests, accounts, streams, plays.
    "ALTER TABLE renditions ADD COLUMN protocol TEXT NOT NULL DEFAULT 'hls';
     CREATE TABLE title_manifests (
         title TEXT NOT NULL REFERENCES titles(id),
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         body TEXT NOT NULL,
         PRIMARY KEY (title, kind)
     );
     CREATE TABLE users (
         id TEXT PRIMARY KEY,
         plan TEXT NOT NULL,
         subscription TEXT NOT NULL,
         country TEXT NOT NULL,
         region TEXT NOT NULL,
         created INTEGER NOT NULL
     );
     CREATE TABLE profiles (
         user TEXT NOT NULL REFERENCES users(id),
         id TEXT NOT NULL,
         name TEXT NOT NULL,
         PRIMARY KEY (user, id)
     );
     CREATE TABLE viewer_tokens (
         sha256 TEXT PRIMARY KEY,
         user TEXT NOT NULL REFERENCES users(id),
         created INTEGER NOT NULL,
         expires INTEGER NOT NULL
     );
     CREATE TABLE streams (
         id TEXT PRIMARY KEY,
         user TEXT NOT NULL,
         profile TEXT NOT NULL,
         title TEXT NOT NULL,
         client TEXT NOT NULL,
         body TEXT NOT NULL,
         expires INTEGER NOT NULL,
         started INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         ended INTEGER
     );
     CREATE INDEX streams_by_user ON streams(user, last_seen);
     CREATE TABLE plays (
         title TEXT NOT NULL,
         region TEXT NOT NULL,
         at INTEGER NOT NULL
     );
     CREATE INDEX plays_by_region ON plays(region, at);",
    // 4: fill plans: the version an appliance was last handed, and what it covered.
    "CREATE TABLE fill_plans (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         digest TEXT NOT NULL,
         generated INTEGER NOT NULL
     );
     CREATE INDEX plays_by_time ON plays(at);",
    // 5: client prefixes appliances learned over BGP; a prefix → origin-ASN
    // table imported from an MRT RIB dump.
    "CREATE TABLE learned_prefixes (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         prefixes TEXT NOT NULL
     );
     CREATE TABLE rib (
         prefix TEXT PRIMARY KEY,
         origin_asn INTEGER NOT NULL
     );
     CREATE TABLE rib_meta (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         generation INTEGER NOT NULL
     );",
    // 6: whether an appliance's info came from its own registration (then a
    // restart keeps it over the config's declaration).
    "ALTER TABLE appliances ADD COLUMN registered INTEGER NOT NULL DEFAULT 0;",
    // 7: the readiness probe's row (see `Probe`).
    "CREATE TABLE health_probe (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         at INTEGER NOT NULL
     );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (SQLite: its error; another backend: its own).
    #[error("database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(Box::new(e))
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

/// Every row `sql` (no parameters) selects, as its `N` text columns.
pub(crate) fn text_rows<const N: usize>(
    conn: &Connection,
    sql: &str,
) -> Result<Vec<[String; N]>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        let mut row: [String; N] = std::array::from_fn(|_| String::new());
        for (i, col) in row.iter_mut().enumerate() {
            *col = r.get(i)?;
        }
        Ok(row)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the store takes writes now, for `/health`.
pub trait Probe: Send + Sync {
    /// One small write transaction, recording `now`. Blocks; the caller bounds it.
    fn probe_write(&self, now: u64) -> Result<(), StoreError>;
}

/// Every part of the store as one object: what a backend provides.
pub trait Store: FleetStore + ViewerStore + Probe {}

impl<T: FleetStore + ViewerStore + Probe> Store for T {}

/// Open the store at `path`: where a second backend would be chosen (by the
/// configuration), the one place that names SQLite.
pub fn open(path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(Sqlite::open(path)?))
}

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Sqlite {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Probe for Sqlite {
    /// Through a connection of its own, opened by path without creating: the
    /// serving connection would go on writing into a file that was deleted or
    /// whose directory was removed (data lost at the next start), and would
    /// wait behind a long request on its lock. A busy database (another
    /// writer holding the lock) fails after a second instead of waiting.
    fn probe_write(&self, now: u64) -> Result<(), StoreError> {
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO health_probe (id, at) VALUES (1, ?1)
             ON CONFLICT(id) DO UPDATE SET at = excluded.at",
            params![now as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_fails_once_the_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        s.probe_write(1).unwrap();
        s.probe_write(2).unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(s.probe_write(3).is_err(), "no store at the configured path");
    }
}
