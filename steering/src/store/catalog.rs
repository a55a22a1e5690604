//! What fill planning reads (the catalog with every object, plays of all
//! regions) and the plan versions it hands out.

use std::collections::HashMap;

use control_client::wire::FillObject;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::fillplan::{Play, Rendition, Title};

impl Store {
    /// Every title with its renditions and their objects, titles and renditions
    /// by id, objects in import order (init segment, then segments in play
    /// order, so a fill that stops early holds a playable start). One read
    /// transaction: an import running meanwhile is seen whole or not at all.
    pub fn fill_catalog(&self) -> Result<Vec<Title>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut titles = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        {
            let mut stmt =
                tx.prepare("SELECT id, regions, release_time FROM titles ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })?;
            for row in rows {
                let (id, regions, release) = row?;
                let regions: Vec<String> = serde_json::from_str(&regions)
                    .map_err(|e| StoreError::Corrupt(format!("title {id}: {e}")))?;
                at.insert(id.clone(), titles.len());
                titles.push(Title {
                    id,
                    regions,
                    release: release.map(|v| v.max(0) as u64),
                    renditions: Vec::new(),
                });
            }
        }
        // rendition id → (title index, rendition index)
        let mut rendition_at: HashMap<String, (usize, usize)> = HashMap::new();
        {
            let mut stmt = tx.prepare("SELECT id, title FROM renditions ORDER BY title, id")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (id, title) = row?;
                let Some(&t) = at.get(&title) else { continue };
                rendition_at.insert(id.clone(), (t, titles[t].renditions.len()));
                titles[t].renditions.push(Rendition {
                    id,
                    objects: Vec::new(),
                });
            }
        }
        {
            let mut stmt = tx.prepare(
                "SELECT rendition, key, size, sha256 FROM objects ORDER BY rendition, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    FillObject {
                        key: r.get(1)?,
                        size: r.get::<_, i64>(2)?.max(0) as u64,
                        sha256: r.get(3)?,
                    },
                ))
            })?;
            for row in rows {
                let (rendition, object) = row?;
                if let Some(&(t, r)) = rendition_at.get(&rendition) {
                    titles[t].renditions[r].objects.push(object);
                }
            }
        }
        tx.commit()?;
        Ok(titles)
    }

    /// Plays of every region since `since`, newest first, at most `limit` (the
    /// oldest weigh least, so they are the ones a cap drops).
    pub fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT title, region, at FROM plays WHERE at >= ?1 ORDER BY at DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since as i64, limit], |r| {
            Ok(Play {
                title: r.get(0)?,
                region: r.get(1)?,
                at: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The version of `appliance`'s plan whose content is `digest`: the stored
    /// one when the content is unchanged, else the next (recorded with `now`).
    /// Read and bump in one write transaction, so two concurrent requests for
    /// the same new plan get one version.
    pub fn fill_plan_version(
        &self,
        appliance: &str,
        digest: &str,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<(i64, String)> = tx
            .query_row(
                "SELECT version, digest FROM fill_plans WHERE appliance = ?1",
                params![appliance],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let version = match held {
            Some((v, d)) if d == digest => return Ok(v.max(0) as u64),
            Some((v, _)) => v.max(0) as u64 + 1,
            None => 1,
        };
        tx.execute(
            "INSERT INTO fill_plans (appliance, version, digest, generated) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(appliance) DO UPDATE SET version = excluded.version,
                 digest = excluded.digest, generated = excluded.generated",
            params![appliance, version as i64, digest, now as i64],
        )?;
        tx.commit()?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Object, Rendition as CatalogRendition, Sidecar, Title as CatalogTitle};

    fn rendition(id: &str, keys: &[(&str, u64)]) -> CatalogRendition {
        CatalogRendition {
            id: id.into(),
            kind: "video".into(),
            codec: Some("avc1.4d401f".into()),
            width: Some(1280),
            height: Some(720),
            bandwidth: 1_000_000,
            container: "fmp4".into(),
            protocol: "hls".into(),
            segment_duration: 4.0,
            objects: keys
                .iter()
                .map(|(k, size)| Object {
                    key: (*k).into(),
                    size: *size,
                    sha256: "ab".repeat(32),
                })
                .collect(),
        }
    }

    #[test]
    fn catalog_plays_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.put_title(&CatalogTitle {
            id: "t1".into(),
            sidecar: Sidecar {
                name: "One".into(),
                regions: vec!["eu".into(), "*".into()],
                release: Some(1234),
            },
            renditions: vec![
                rendition(
                    "titles/t1/v2",
                    &[("titles/t1/v2/init.mp4", 5), ("titles/t1/v2/seg10.m4s", 7)],
                ),
                rendition("titles/t1/v1", &[("titles/t1/v1/seg2.m4s", 3)]),
            ],
            manifests: vec![],
        })
        .unwrap();
        let catalog = s.fill_catalog().unwrap();
        assert_eq!(catalog.len(), 1);
        let t = &catalog[0];
        assert_eq!(
            (t.id.as_str(), t.regions.clone(), t.release),
            ("t1", vec!["eu".to_owned(), "*".to_owned()], Some(1234))
        );
        let ids: Vec<&str> = t.renditions.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["titles/t1/v1", "titles/t1/v2"]);
        let keys: Vec<&str> = t.renditions[1]
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["titles/t1/v2/init.mp4", "titles/t1/v2/seg10.m4s"],
            "import order, not key order"
        );
        assert_eq!(t.renditions[1].bytes(), 12);

        // Plays of every region, newest first, capped.
        let conn = s.conn();
        for (title, region, at) in [("t1", "eu", 10), ("t1", "us", 20), ("t2", "eu", 5)] {
            conn.execute(
                "INSERT INTO plays (title, region, at) VALUES (?1, ?2, ?3)",
                params![title, region, at],
            )
            .unwrap();
        }
        drop(conn);
        let plays = s.plays_all_since(6, 10).unwrap();
        let got: Vec<(&str, &str, u64)> = plays
            .iter()
            .map(|p| (p.title.as_str(), p.region.as_str(), p.at))
            .collect();
        assert_eq!(got, [("t1", "us", 20), ("t1", "eu", 10)]);
        assert_eq!(s.plays_all_since(0, 1).unwrap().len(), 1);

        // Versions: 1 for the first plan, unchanged for the same content, bumped for new.
        assert_eq!(s.fill_plan_version("a", "d1", 100).unwrap(), 1);
        assert_eq!(s.fill_plan_version("a", "d1", 200).unwrap(), 1);
        assert_eq!(s.fill_plan_version("b", "d1", 200).unwrap(), 1);
        assert_eq!(s.fill_plan_version("a", "d2", 300).unwrap(), 2);
        assert_eq!(s.fill_plan_version("a", "d1", 400).unwrap(), 3);
    }
}
