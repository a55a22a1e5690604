//! The embedded store: one SQLite file (WAL, synchronous=FULL, so a committed
//! write survives `kill -9` and power loss). Everything steering persists goes
//! through this narrow module, so a shared SQL database can replace it later.

use std::path::Path;
use std::sync::Mutex;

use control_client::wire::{ApplianceInfo, KeyWire, RenditionHolding};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
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
];

mod accounts;
mod bgp;
mod fill;
pub use accounts::{StreamRow, TitleRecord, TitleRendition, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored appliance record is unreadable: {0}")]
    Corrupt(String),
}

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

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What an appliance said of itself when it registered: kept over the
    /// config's declaration from now on.
    pub fn upsert_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = serde_json::to_string(info).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO appliances (id, info, credential_sha256, registered_at, registered)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(id) DO UPDATE SET info = excluded.info,
                 credential_sha256 = excluded.credential_sha256, registered = 1",
            params![id, info, credential_sha256, now as i64],
        )?;
        Ok(())
    }

    /// An appliance as the config declares it (at start): its credential
    /// always applies; its info only until the appliance has registered, since
    /// the appliance knows its own addresses better than a config written
    /// before it last moved.
    pub fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = serde_json::to_string(info).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO appliances (id, info, credential_sha256, registered_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET credential_sha256 = excluded.credential_sha256,
                 info = CASE WHEN appliances.registered = 1 THEN appliances.info ELSE excluded.info END",
            params![id, info, credential_sha256, now as i64],
        )?;
        Ok(())
    }

    pub fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, info, credential_sha256 FROM appliances ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, info, credential_sha256) = row?;
            let info = serde_json::from_str(&info)
                .map_err(|e| StoreError::Corrupt(format!("{id}: {e}")))?;
            out.push(ApplianceRow {
                id,
                info,
                credential_sha256,
            });
        }
        Ok(out)
    }

    /// Replace an appliance's whole inventory in one transaction.
    pub fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM inventory WHERE appliance = ?1",
            params![appliance],
        )?;
        {
            let mut ins = tx.prepare("INSERT INTO inventory (appliance, rendition, objects, bytes) VALUES (?1, ?2, ?3, ?4)")?;
            for r in &inv.renditions {
                ins.execute(params![
                    appliance,
                    r.rendition,
                    r.objects as i64,
                    r.bytes as i64
                ])?;
            }
        }
        tx.execute(
            "INSERT INTO inventory_meta (appliance, version, digest) VALUES (?1, ?2, ?3)
             ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, digest = excluded.digest",
            params![appliance, inv.version as i64, inv.digest],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Apply a delta in one transaction.
    pub fn apply_delta(
        &self,
        appliance: &str,
        upserted: &[RenditionHolding],
        removed: &[String],
        version: u64,
        digest: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut up = tx.prepare(
                "INSERT INTO inventory (appliance, rendition, objects, bytes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(appliance, rendition) DO UPDATE SET objects = excluded.objects, bytes = excluded.bytes",
            )?;
            for r in upserted {
                up.execute(params![
                    appliance,
                    r.rendition,
                    r.objects as i64,
                    r.bytes as i64
                ])?;
            }
            let mut del =
                tx.prepare("DELETE FROM inventory WHERE appliance = ?1 AND rendition = ?2")?;
            for r in removed {
                del.execute(params![appliance, r])?;
            }
        }
        tx.execute(
            "INSERT INTO inventory_meta (appliance, version, digest) VALUES (?1, ?2, ?3)
             ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, digest = excluded.digest",
            params![appliance, version as i64, digest],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError> {
        let conn = self.conn();
        let meta: Option<(i64, String)> = conn
            .query_row(
                "SELECT version, digest FROM inventory_meta WHERE appliance = ?1",
                params![appliance],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((version, digest)) = meta else {
            return Ok(InventoryRow::default());
        };
        let mut stmt = conn.prepare("SELECT rendition, objects, bytes FROM inventory WHERE appliance = ?1 ORDER BY rendition")?;
        let renditions = stmt
            .query_map(params![appliance], |r| {
                Ok(RenditionHolding {
                    rendition: r.get(0)?,
                    objects: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InventoryRow {
            version: version as u64,
            digest,
            renditions,
        })
    }

    /// Record a title with its renditions and objects, replacing what an earlier
    /// import recorded for it (so re-importing is idempotent), in one transaction.
    pub fn put_title(&self, t: &crate::catalog::Title) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let regions = serde_json::to_string(&t.sidecar.regions)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO titles (id, name, regions, release_time) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, regions = excluded.regions, release_time = excluded.release_time",
            params![t.id, t.sidecar.name, regions, t.sidecar.release.map(|v| v as i64)],
        )?;
        tx.execute(
            "DELETE FROM objects WHERE rendition IN (SELECT id FROM renditions WHERE title = ?1)",
            params![t.id],
        )?;
        tx.execute("DELETE FROM renditions WHERE title = ?1", params![t.id])?;
        tx.execute(
            "DELETE FROM title_manifests WHERE title = ?1",
            params![t.id],
        )?;
        for m in &t.manifests {
            tx.execute(
                "INSERT INTO title_manifests (title, kind, key, body) VALUES (?1, ?2, ?3, ?4)",
                params![t.id, m.kind, m.key, m.body],
            )?;
        }
        for r in &t.renditions {
            tx.execute(
                "INSERT INTO renditions (id, title, kind, codec, width, height, bandwidth, container, segment_duration, protocol)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![r.id, t.id, r.kind, r.codec, r.width.map(|v| v as i64), r.height.map(|v| v as i64), r.bandwidth as i64, r.container, r.segment_duration, r.protocol],
            )?;
            let mut ins = tx.prepare(
                "INSERT INTO objects (key, rendition, size, sha256) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for o in &r.objects {
                ins.execute(params![o.key, r.id, o.size as i64, o.sha256])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A rendition's object count and total bytes, if it is in the catalog.
    pub fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let conn = self.conn();
        let known: bool = conn
            .query_row(
                "SELECT 1 FROM renditions WHERE id = ?1",
                params![rendition],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if !known {
            return Ok(None);
        }
        let (n, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE rendition = ?1",
            params![rendition],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Some((n as u64, bytes as u64)))
    }

    /// Object count and bytes of every catalog rendition.
    pub fn catalog_totals(
        &self,
    ) -> Result<std::collections::HashMap<String, (u64, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.id, COUNT(o.key), COALESCE(SUM(o.size), 0) FROM renditions r
             LEFT JOIN objects o ON o.rendition = r.id GROUP BY r.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Titles, renditions, objects and bytes in the catalog.
    pub fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let conn = self.conn();
        let count = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
        };
        Ok((
            count("SELECT COUNT(*) FROM titles")?,
            count("SELECT COUNT(*) FROM renditions")?,
            count("SELECT COUNT(*) FROM objects")?,
            count("SELECT COALESCE(SUM(size), 0) FROM objects")?,
        ))
    }

    pub fn insert_key(&self, key: &KeyWire, created: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO signing_keys (id, secret, not_before, not_after, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.id, key.secret, key.not_before.map(|v| v as i64), key.not_after.map(|v| v as i64), created as i64],
        )?;
        Ok(())
    }

    /// Drop keys retired before `before` (they can verify nothing any more).
    pub fn delete_keys_retired_before(&self, before: u64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after < ?1",
            params![before as i64],
        )?)
    }

    /// All keys, oldest first.
    pub fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, secret, not_before, not_after, created FROM signing_keys ORDER BY created, id")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    KeyWire {
                        id: r.get(0)?,
                        secret: r.get(1)?,
                        not_before: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                        not_after: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    },
                    r.get::<_, i64>(4)? as u64,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_client::wire::Tier;

    fn info() -> ApplianceInfo {
        ApplianceInfo {
            tier: Tier::Embedded,
            site: "s1".into(),
            region: "eu".into(),
            asn: 64500,
            http_url: Some("http://127.0.0.1:1".into()),
            https_url: None,
            admin_url: "http://127.0.0.1:2".into(),
            capacity_bps: 10_000_000_000,
            storage_bytes: 1 << 40,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_registration_outlives_the_config_declaration_but_credentials_follow_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let declared = info();
        let moved = ApplianceInfo {
            admin_url: "http://127.0.0.1:3".into(),
            ..info()
        };
        let edited = ApplianceInfo {
            site: "s2".into(),
            ..info()
        };
        // Until it registers, the config's declaration applies, edits too.
        s.declare_appliance("a1", &declared, "c1", 1).unwrap();
        s.declare_appliance("a1", &edited, "c1", 2).unwrap();
        assert_eq!(s.appliances().unwrap()[0].info, edited);
        // It registers from a new address; a restart declares it again.
        s.upsert_appliance("a1", &moved, "c1", 3).unwrap();
        s.declare_appliance("a1", &declared, "c2", 4).unwrap();
        let row = &s.appliances().unwrap()[0];
        assert_eq!(row.info, moved);
        assert_eq!(row.credential_sha256, "c2");
    }

    #[test]
    fn survives_reopen_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.upsert_appliance("a1", &info(), "abc", 1).unwrap();
            let r = |n: &str, o| RenditionHolding {
                rendition: n.into(),
                objects: o,
                bytes: o * 10,
            };
            s.put_inventory(
                "a1",
                &InventoryRow {
                    version: 1,
                    digest: "d1".into(),
                    renditions: vec![r("t/1", 3), r("t/2", 4)],
                },
            )
            .unwrap();
            s.apply_delta("a1", &[r("t/3", 5)], &["t/1".into()], 2, "d2")
                .unwrap();
            s.insert_key(
                &KeyWire {
                    id: "k1".into(),
                    secret: "s".into(),
                    not_before: Some(1),
                    not_after: Some(100),
                },
                1,
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.appliances().unwrap()[0].info, info());
        let inv = s.inventory("a1").unwrap();
        assert_eq!((inv.version, inv.digest.as_str()), (2, "d2"));
        let names: Vec<_> = inv
            .renditions
            .iter()
            .map(|r| r.rendition.as_str())
            .collect();
        assert_eq!(names, ["t/2", "t/3"]);
        assert_eq!(s.keys().unwrap().len(), 1);
        assert_eq!(s.delete_keys_retired_before(200).unwrap(), 1);
        assert!(s.inventory("nobody").unwrap().renditions.is_empty());
    }
}
