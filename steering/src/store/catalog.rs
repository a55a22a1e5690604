//! The catalog, shared by both halves: titles → renditions → objects and the
//! packaged manifests, written by `catalog import` and read by plays (titles,
//! home rows) and by the fleet (totals for inventory completeness, fill plans).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, StoreError, from_json, text_rows, to_json};
use crate::catalog::Title;

/// A title with what a play needs of it.
#[derive(Debug, Clone)]
pub struct TitleRecord {
    pub id: String,
    pub name: String,
    pub regions: Vec<String>,
    pub release: Option<u64>,
    pub renditions: Vec<TitleRendition>,
    /// `(kind, key, body)` of each packaged manifest.
    pub manifests: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TitleRendition {
    pub id: String,
    pub kind: String,
    pub codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub bandwidth: u64,
    pub protocol: String,
    pub segment_duration: f64,
    /// Key of its media playlist (HLS renditions).
    pub playlist: Option<String>,
}

/// What the catalog tables answer, whichever backend holds them.
pub trait CatalogStore: Send + Sync {
    /// Record a title with its renditions and objects, replacing what an earlier
    /// import recorded for it (so re-importing is idempotent), in one transaction.
    fn put_title(&self, t: &Title) -> Result<(), StoreError>;
    /// A rendition's object count and total bytes, if it is in the catalog.
    fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError>;
    /// Object count and bytes of every catalog rendition.
    fn catalog_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError>;
    /// Titles, renditions, objects and bytes in the catalog.
    fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError>;
    /// A title with its renditions and packaged manifests.
    fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError>;
    /// `(id, name, regions)` of every title.
    fn title_names(&self) -> Result<Vec<(String, String, Vec<String>)>, StoreError>;
}

impl CatalogStore for Sqlite {
    fn put_title(&self, t: &Title) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let regions = to_json(&t.sidecar.regions)?;
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

    fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError> {
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

    fn catalog_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError> {
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

    fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError> {
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

    fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError> {
        let conn = self.conn();
        let head: Option<(String, String, Option<i64>)> = conn
            .query_row(
                "SELECT name, regions, release_time FROM titles WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((name, regions, release)) = head else {
            return Ok(None);
        };
        let regions: Vec<String> = from_json(&regions, format_args!("title {id}"))?;
        let mut stmt = conn.prepare(
            "SELECT r.id, r.kind, r.codec, r.width, r.height, r.bandwidth, r.protocol, r.segment_duration,
                 (SELECT key FROM objects o WHERE o.rendition = r.id AND o.key LIKE '%.m3u8' LIMIT 1)
             FROM renditions r WHERE r.title = ?1 ORDER BY r.id",
        )?;
        let renditions = stmt
            .query_map(params![id], |r| {
                Ok(TitleRendition {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    codec: r.get(2)?,
                    width: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    height: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    bandwidth: r.get::<_, i64>(5)? as u64,
                    protocol: r.get(6)?,
                    segment_duration: r.get(7)?,
                    playlist: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt =
            conn.prepare("SELECT kind, key, body FROM title_manifests WHERE title = ?1")?;
        let manifests = stmt
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TitleRecord {
            id: id.to_owned(),
            name,
            regions,
            release: release.map(|v| v as u64),
            renditions,
            manifests,
        }))
    }

    fn title_names(&self) -> Result<Vec<(String, String, Vec<String>)>, StoreError> {
        text_rows(
            &self.conn(),
            "SELECT id, name, regions FROM titles ORDER BY id",
        )?
        .into_iter()
        .map(|[id, name, regions]| {
            let regions = from_json(&regions, format_args!("title {id}"))?;
            Ok((id, name, regions))
        })
        .collect()
    }
}
