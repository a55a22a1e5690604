//! The catalog's SQL for SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CatalogStore, TitleBrief, TitleRecord, TitleRendition};
use crate::catalog::Title;
use crate::store::{Sqlite, StoreError, from_json, to_json};

#[async_trait]
impl CatalogStore for Sqlite {
    async fn put_content_keys(
        &self,
        title: &str,
        keys: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError> {
        let (title, keys) = (title.to_owned(), keys.to_vec());
        self.write(move |tx| {
            tx.execute("DELETE FROM content_keys WHERE title = ?1", params![title])?;
            for (kid, sealed) in &keys {
                tx.execute(
                    "INSERT INTO content_keys (title, kid, sealed, created) VALUES (?1, ?2, ?3, ?4)",
                    params![title, kid, sealed, now as i64],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn content_keys(&self, title: &str) -> Result<Vec<(String, String)>, StoreError> {
        let title = title.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kid, sealed FROM content_keys WHERE title = ?1 ORDER BY kid",
            )?;
            let rows = stmt.query_map(params![title], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn put_title(&self, t: &Title) -> Result<(), StoreError> {
        let t = t.clone();
        let regions = to_json(&t.sidecar.regions)?;
        let artwork = to_json(&t.sidecar.artwork)?;
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO titles (id, name, regions, release_time, audience, artwork) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, regions = excluded.regions,
                     release_time = excluded.release_time, audience = excluded.audience,
                     artwork = excluded.artwork",
                params![t.id, t.sidecar.name, regions, t.sidecar.release.map(|v| v as i64), t.sidecar.audience, artwork],
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
                let mut ins = tx.prepare_cached(
                    "INSERT INTO objects (key, rendition, size, sha256) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for o in &r.objects {
                    ins.execute(params![o.key, r.id, o.size as i64, o.sha256])?;
                }
            }
            crate::fleet::store::log_change_sqlite(tx, "", crate::fleet::store::ChangeKind::Catalog)
        })
        .await
    }

    async fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let rendition = rendition.to_owned();
        self.read(move |conn| {
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
        })
        .await
    }

    async fn catalog_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        self.read(|conn| {
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
        })
        .await
    }

    async fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        self.read(|conn| {
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
        })
        .await
    }

    async fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let head: Option<(String, String, Option<i64>, Option<String>)> = conn
                .prepare_cached(
                    "SELECT name, regions, release_time, artwork FROM titles WHERE id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((name, regions, release, artwork)) = head else {
                return Ok(None);
            };
            let regions: Vec<String> = from_json(&regions, format_args!("title {id}"))?;
            let artwork: Vec<String> = artwork
                .map(|a| from_json(&a, format_args!("title {id}")))
                .transpose()?
                .unwrap_or_default();
            let mut stmt = conn.prepare_cached(
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
            let mut stmt = conn
                .prepare_cached("SELECT kind, key, body FROM title_manifests WHERE title = ?1")?;
            let manifests = stmt
                .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(TitleRecord {
                id,
                name,
                regions,
                release: release.map(|v| v as u64),
                renditions,
                manifests,
                artwork,
            }))
        })
        .await
    }

    async fn titles_brief(&self) -> Result<Vec<TitleBrief>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, regions, release_time, audience FROM titles ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(id, name, regions, release, audience)| {
                    Ok(TitleBrief {
                        regions: from_json(&regions, format_args!("title {id}"))?,
                        id,
                        name,
                        release: release.map(|t| t as u64),
                        audience,
                    })
                })
                .collect()
        })
        .await
    }
}
