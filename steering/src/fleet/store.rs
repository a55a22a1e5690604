//! BGP-derived tables: prefixes each appliance learned, and the RIB import.

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Replace an appliance's learned prefixes (CIDR strings) and their version.
    pub fn put_learned_prefixes(
        &self,
        appliance: &str,
        version: u64,
        prefixes: &[String],
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(prefixes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO learned_prefixes (appliance, version, prefixes) VALUES (?1, ?2, ?3)
             ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, prefixes = excluded.prefixes",
            params![appliance, version as i64, json],
        )?;
        Ok(())
    }

    /// `(appliance, version, prefixes)` of every appliance that reported some.
    pub fn learned_prefixes(&self) -> Result<Vec<(String, u64, Vec<String>)>, StoreError> {
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
            let list = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("prefixes of {a}: {e}")))?;
            out.push((a, v, list));
        }
        Ok(out)
    }

    /// Replace the RIB table wholesale, in one transaction.
    pub fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError> {
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

    /// Bumped by every import (0: never imported), so a running steering can
    /// tell a new import without reading the table.
    pub fn rib_generation(&self) -> Result<u64, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn()
            .query_row("SELECT generation FROM rib_meta WHERE id = 1", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    }

    /// Every `(prefix, origin ASN)` of the imported RIB.
    pub fn rib(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT prefix, origin_asn FROM rib")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
