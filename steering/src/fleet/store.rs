//! The fleet half's part of the store: appliances, inventories, signing keys,
//! BGP data and fill-plan versions; and what fill planning reads of the shared
//! catalog and demand log.

use std::collections::HashMap;

use control_client::wire::{ApplianceInfo, FillObject, KeyWire, RenditionHolding};
use rusqlite::{OptionalExtension, params};

use crate::fleet::fillplan::{Play, Rendition, Title};
use crate::store::{CatalogStore, Sqlite, StoreError, from_json, text_rows, to_json};

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

/// What the fleet half persists, whichever backend holds it.
pub trait FleetStore: CatalogStore {
    /// What an appliance said of itself when it registered: kept over the
    /// config's declaration from now on.
    fn upsert_appliance(
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
    fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError>;
    fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError>;
    /// Replace an appliance's whole inventory in one transaction.
    fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError>;
    fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError>;
    fn insert_key(&self, key: &KeyWire, created: u64) -> Result<(), StoreError>;
    /// Drop keys retired before `before` (they can verify nothing any more).
    fn delete_keys_retired_before(&self, before: u64) -> Result<usize, StoreError>;
    /// All keys, oldest first.
    fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError>;
    /// Replace an appliance's learned prefixes (CIDR strings) and their version.
    fn put_learned_prefixes(
        &self,
        appliance: &str,
        version: u64,
        prefixes: &[String],
    ) -> Result<(), StoreError>;
    /// `(appliance, version, prefixes)` of every appliance that reported some.
    fn learned_prefixes(&self) -> Result<Vec<(String, u64, Vec<String>)>, StoreError>;
    /// Replace the RIB table wholesale, in one transaction.
    fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError>;
    /// Bumped by every import (0: never imported), so a running steering can
    /// tell a new import without reading the table.
    fn rib_generation(&self) -> Result<u64, StoreError>;
    /// Every `(prefix, origin ASN)` of the imported RIB.
    fn rib(&self) -> Result<Vec<(String, u32)>, StoreError>;
    /// Every title with its renditions and their objects, titles and renditions
    /// by id, objects in import order (init segment, then segments in play
    /// order, so a fill that stops early holds a playable start). One read
    /// transaction: an import running meanwhile is seen whole or not at all.
    fn fill_catalog(&self) -> Result<Vec<Title>, StoreError>;
    /// Plays of every region since `since`, newest first, at most `limit` (the
    /// oldest weigh least, so they are the ones a cap drops).
    fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError>;
    /// The version of `appliance`'s plan whose content is `digest`: the stored
    /// one when the content is unchanged, else the next (recorded with `now`).
    /// Read and bump in one write transaction, so two concurrent requests for
    /// the same new plan get one version.
    fn fill_plan_version(&self, appliance: &str, digest: &str, now: u64)
    -> Result<u64, StoreError>;
}

impl FleetStore for Sqlite {
    fn upsert_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        self.conn().execute(
            "INSERT INTO appliances (id, info, credential_sha256, registered_at, registered)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(id) DO UPDATE SET info = excluded.info,
                 credential_sha256 = excluded.credential_sha256, registered = 1",
            params![id, info, credential_sha256, now as i64],
        )?;
        Ok(())
    }

    fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        self.conn().execute(
            "INSERT INTO appliances (id, info, credential_sha256, registered_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET credential_sha256 = excluded.credential_sha256,
                 info = CASE WHEN appliances.registered = 1 THEN appliances.info ELSE excluded.info END",
            params![id, info, credential_sha256, now as i64],
        )?;
        Ok(())
    }

    fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError> {
        let sql = "SELECT id, info, credential_sha256 FROM appliances ORDER BY id";
        text_rows(&self.conn(), sql)?
            .into_iter()
            .map(|[id, info, credential_sha256]| {
                Ok(ApplianceRow {
                    info: from_json(&info, &id)?,
                    id,
                    credential_sha256,
                })
            })
            .collect()
    }

    fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError> {
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

    fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError> {
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

    fn insert_key(&self, key: &KeyWire, created: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO signing_keys (id, secret, not_before, not_after, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.id, key.secret, key.not_before.map(|v| v as i64), key.not_after.map(|v| v as i64), created as i64],
        )?;
        Ok(())
    }

    fn delete_keys_retired_before(&self, before: u64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after < ?1",
            params![before as i64],
        )?)
    }

    fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError> {
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

    fn put_learned_prefixes(
        &self,
        appliance: &str,
        version: u64,
        prefixes: &[String],
    ) -> Result<(), StoreError> {
        let json = to_json(&prefixes)?;
        self.conn().execute(
            "INSERT INTO learned_prefixes (appliance, version, prefixes) VALUES (?1, ?2, ?3)
             ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, prefixes = excluded.prefixes",
            params![appliance, version as i64, json],
        )?;
        Ok(())
    }

    fn learned_prefixes(&self) -> Result<Vec<(String, u64, Vec<String>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT appliance, version, prefixes FROM learned_prefixes")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (a, v, json) = row?;
            let list = from_json(&json, format_args!("prefixes of {a}"))?;
            out.push((a, v, list));
        }
        Ok(out)
    }

    fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM rib", [])?;
        {
            let mut ins =
                tx.prepare("INSERT OR REPLACE INTO rib (prefix, origin_asn) VALUES (?1, ?2)")?;
            for (p, asn) in entries {
                ins.execute(params![p, asn])?;
            }
        }
        tx.execute(
            "INSERT INTO rib_meta (id, generation) VALUES (1, 1)
             ON CONFLICT(id) DO UPDATE SET generation = generation + 1",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn rib_generation(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT generation FROM rib_meta WHERE id = 1", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    }

    fn rib(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT prefix, origin_asn FROM rib")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn fill_catalog(&self) -> Result<Vec<Title>, StoreError> {
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
                let regions: Vec<String> = from_json(&regions, format_args!("title {id}"))?;
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

    fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError> {
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

    fn fill_plan_version(
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
mod tests;
