//! The catalog's SQL for PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{CatalogStore, TitleBrief, TitleRecord, TitleRendition};
use crate::catalog::Title;
use crate::store::{Postgres, StoreError, from_json, to_json};

#[async_trait]
impl CatalogStore for Postgres {
    async fn put_content_keys(
        &self,
        title: &str,
        keys: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM content_keys WHERE title = $1", &[&title])
            .await?;
        for (kid, sealed) in keys {
            tx.execute(
                "INSERT INTO content_keys (title, kid, sealed, created) VALUES ($1, $2, $3, $4)",
                &[&title, kid, sealed, &(now as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn content_keys(&self, title: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT kid, sealed FROM content_keys WHERE title = $1 ORDER BY kid",
                &[&title],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    async fn put_title(&self, t: &Title) -> Result<(), StoreError> {
        let regions = to_json(&t.sidecar.regions)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO titles (id, name, regions, release_time, audience, artwork)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, regions = excluded.regions,
                 release_time = excluded.release_time, audience = excluded.audience,
                 artwork = excluded.artwork",
            &[
                &t.id,
                &t.sidecar.name,
                &regions,
                &t.sidecar.release.map(|v| v as i64),
                &t.sidecar.audience,
                &to_json(&t.sidecar.artwork)?,
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM objects WHERE rendition IN (SELECT id FROM renditions WHERE title = $1)",
            &[&t.id],
        )
        .await?;
        tx.execute("DELETE FROM renditions WHERE title = $1", &[&t.id])
            .await?;
        tx.execute("DELETE FROM title_manifests WHERE title = $1", &[&t.id])
            .await?;
        for m in &t.manifests {
            tx.execute(
                "INSERT INTO title_manifests (title, kind, key, body) VALUES ($1, $2, $3, $4)",
                &[&t.id, &m.kind, &m.key, &m.body],
            )
            .await?;
        }
        for r in &t.renditions {
            tx.execute(
                "INSERT INTO renditions (id, title, kind, codec, width, height, bandwidth,
                     container, segment_duration, protocol)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &r.id,
                    &t.id,
                    &r.kind,
                    &r.codec,
                    &r.width.map(|v| v as i64),
                    &r.height.map(|v| v as i64),
                    &(r.bandwidth as i64),
                    &r.container,
                    &r.segment_duration,
                    &r.protocol,
                ],
            )
            .await?;
            // One statement per rendition: the arrays keep import order, which
            // the identity column records.
            let keys: Vec<&str> = r.objects.iter().map(|o| o.key.as_str()).collect();
            let sizes: Vec<i64> = r.objects.iter().map(|o| o.size as i64).collect();
            let hashes: Vec<&str> = r.objects.iter().map(|o| o.sha256.as_str()).collect();
            tx.execute(
                "INSERT INTO objects (key, rendition, size, sha256)
                 SELECT k, $2, s, h FROM UNNEST($1::text[], $3::bigint[], $4::text[])
                     WITH ORDINALITY AS o(k, s, h, n) ORDER BY n",
                &[&keys, &r.id, &sizes, &hashes],
            )
            .await?;
        }
        crate::fleet::store::log_change_postgres(&tx, "", crate::fleet::store::ChangeKind::Catalog)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT (SELECT COUNT(*) FROM objects WHERE rendition = r.id),
                     (SELECT COALESCE(SUM(size), 0)::bigint FROM objects WHERE rendition = r.id)
                 FROM renditions r WHERE r.id = $1",
                &[&rendition],
            )
            .await?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
    }

    async fn catalog_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.id, COUNT(o.key), COALESCE(SUM(o.size), 0)::bigint FROM renditions r
                 LEFT JOIN objects o ON o.rendition = r.id GROUP BY r.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    (r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64),
                )
            })
            .collect())
    }

    async fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let client = self.client().await?;
        let r = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM titles), (SELECT COUNT(*) FROM renditions),
                     (SELECT COUNT(*) FROM objects),
                     (SELECT COALESCE(SUM(size), 0)::bigint FROM objects)",
                &[],
            )
            .await?;
        let n = |i| r.get::<_, i64>(i) as u64;
        Ok((n(0), n(1), n(2), n(3)))
    }

    async fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError> {
        let client = self.client().await?;
        let head = client
            .prepare_cached("SELECT name, regions, release_time, artwork FROM titles WHERE id = $1")
            .await?;
        let Some(head) = client.query_opt(&head, &[&id]).await? else {
            return Ok(None);
        };
        let regions: Vec<String> = from_json(head.get(1), format_args!("title {id}"))?;
        let stmt = client
            .prepare_cached(
                "SELECT r.id, r.kind, r.codec, r.width, r.height, r.bandwidth, r.protocol,
                     r.segment_duration,
                     (SELECT key FROM objects o WHERE o.rendition = r.id AND o.key LIKE '%.m3u8'
                      ORDER BY o.seq LIMIT 1)
                 FROM renditions r WHERE r.title = $1 ORDER BY r.id",
            )
            .await?;
        let renditions = client
            .query(&stmt, &[&id])
            .await?
            .iter()
            .map(|r| TitleRendition {
                id: r.get(0),
                kind: r.get(1),
                codec: r.get(2),
                width: r.get::<_, Option<i64>>(3).map(|v| v as u64),
                height: r.get::<_, Option<i64>>(4).map(|v| v as u64),
                bandwidth: r.get::<_, i64>(5) as u64,
                protocol: r.get(6),
                segment_duration: r.get(7),
                playlist: r.get(8),
            })
            .collect();
        let stmt = client
            .prepare_cached(
                "SELECT kind, key, body FROM title_manifests WHERE title = $1 ORDER BY kind",
            )
            .await?;
        let manifests = client
            .query(&stmt, &[&id])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(Some(TitleRecord {
            id: id.to_owned(),
            name: head.get(0),
            regions,
            release: head.get::<_, Option<i64>>(2).map(|v| v as u64),
            renditions,
            manifests,
            artwork: head
                .get::<_, Option<&str>>(3)
                .map(|a| from_json(a, format_args!("title {id}")))
                .transpose()?
                .unwrap_or_default(),
        }))
    }

    async fn titles_brief(&self) -> Result<Vec<TitleBrief>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT id, name, regions, release_time, audience FROM titles ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                Ok(TitleBrief {
                    regions: from_json(r.get(2), format_args!("title {id}"))?,
                    name: r.get(1),
                    release: r.get::<_, Option<i64>>(3).map(|t| t as u64),
                    audience: r.get(4),
                    id,
                })
            })
            .collect()
    }
}
