//! The fleet part's SQL for SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use control_client::wire::{ApplianceInfo, EnrolRequest, FillObject, KeyWire, RenditionHolding};
use rusqlite::{OptionalExtension, params};

use super::{
    ApplianceRow, Change, ChangeKind, EnrolmentRow, EnrolmentUse, FleetStore, InstanceRow,
    InventoryRow, KeyDecision, LearnedRow, LiveRow, PathRow, Revoked,
};
use crate::fleet::enrol::{self, Verdict};
use crate::fleet::fillplan::{Play, Rendition, Title};
use crate::forecast::{Counts, DAY};
use crate::store::sqlite::NOW_MS;
use crate::store::{Sqlite, StoreError, from_json, to_json};

#[async_trait]
impl FleetStore for Sqlite {
    async fn upsert_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        let (id, cred) = (id.to_owned(), credential_sha256.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO appliances (id, info, credential_sha256, registered_at, registered)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(id) DO UPDATE SET info = excluded.info,
                     credential_sha256 = excluded.credential_sha256, registered = 1",
                params![id, info, cred, now as i64],
            )?;
            log_change(c, &id, ChangeKind::Info)
        })
        .await
    }

    async fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        let (id, cred) = (id.to_owned(), credential_sha256.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO appliances (id, info, credential_sha256, registered_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET credential_sha256 = excluded.credential_sha256,
                     info = CASE WHEN appliances.registered = 1 THEN appliances.info ELSE excluded.info END,
                     revoked_at = CASE WHEN appliances.credential_sha256 = excluded.credential_sha256
                                       THEN appliances.revoked_at END",
                params![id, info, cred, now as i64],
            )?;
            log_change(c, &id, ChangeKind::Info)
        })
        .await
    }

    async fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{APPLIANCE_ROW} ORDER BY id"))?;
            let rows = stmt
                .query_map([], appliance_columns)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(appliance_row).collect()
        })
        .await
    }

    async fn add_enrolment(&self, e: &EnrolmentRow) -> Result<(), StoreError> {
        let placement = to_json(&e.placement)?;
        let e = e.clone();
        self.write(move |c| {
            c.execute(
                "DELETE FROM enrolments WHERE expires < ?1",
                params![e.created.saturating_sub(30 * DAY) as i64],
            )?;
            c.execute(
                "INSERT INTO enrolments (token_sha256, appliance, placement, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    e.token_sha256,
                    e.appliance,
                    placement,
                    e.created as i64,
                    e.expires as i64
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn enrolments(&self) -> Result<Vec<EnrolmentRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{ENROLMENT_ROW} ORDER BY created DESC"))?;
            let rows = stmt
                .query_map([], enrolment_columns)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(enrolment_row).collect()
        })
        .await
    }

    async fn enrol(
        &self,
        token_sha256: &str,
        req: &EnrolRequest,
        now: u64,
    ) -> Result<Verdict, StoreError> {
        let (token_sha256, req) = (token_sha256.to_owned(), req.clone());
        let info = to_json(&req.info)?;
        // The writer runs one job at a time: nothing else writes between
        // these reads and the writes that follow them.
        self.write(move |c| {
            let token = c
                .query_row(
                    &format!("{ENROLMENT_ROW} WHERE token_sha256 = ?1"),
                    params![token_sha256],
                    enrolment_columns,
                )
                .optional()?
                .map(enrolment_row)
                .transpose()?;
            let id = enrol::id_for(token.as_ref(), &req).to_owned();
            let existing = c
                .query_row(
                    "SELECT revoked_at IS NOT NULL FROM appliances WHERE id = ?1",
                    params![id],
                    |r| Ok(enrol::Existing { revoked: r.get(0)? }),
                )
                .optional()?;
            let verdict = enrol::decide(token.as_ref(), existing.as_ref(), &req, now);
            if let Verdict::Enrol { id, bound } = &verdict {
                c.execute(
                    "UPDATE enrolments SET used_at = ?2, used_by = ?3, used_credential_sha256 = ?4
                     WHERE token_sha256 = ?1",
                    params![token_sha256, now as i64, id, req.credential_sha256],
                )?;
                c.execute(
                    "INSERT INTO appliances (id, info, credential_sha256, registered_at, registered, bound)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5)
                     ON CONFLICT(id) DO UPDATE SET info = excluded.info,
                         credential_sha256 = excluded.credential_sha256, registered = 1,
                         bound = excluded.bound, revoked_at = NULL",
                    params![id, info, req.credential_sha256, now as i64, to_json(bound)?],
                )?;
                log_change(c, id, ChangeKind::Info)?;
            }
            Ok(verdict)
        })
        .await
    }

    async fn revoke_appliance(&self, id: &str, now: u64) -> Result<Revoked, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let state: Option<bool> = c
                .query_row(
                    "SELECT revoked_at IS NOT NULL FROM appliances WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match state {
                None => Revoked::NoSuchAppliance,
                Some(true) => Revoked::Already,
                Some(false) => {
                    c.execute(
                        "UPDATE appliances SET revoked_at = ?2 WHERE id = ?1",
                        params![id, now as i64],
                    )?;
                    log_change(c, &id, ChangeKind::Info)?;
                    Revoked::Now
                }
            })
        })
        .await
    }

    async fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError> {
        let (appliance, inv) = (appliance.to_owned(), inv.clone());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM inventory WHERE appliance = ?1",
                params![appliance],
            )?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO inventory (appliance, rendition, objects, bytes) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in &inv.renditions {
                ins.execute(params![
                    appliance,
                    r.rendition,
                    r.objects as i64,
                    r.bytes as i64
                ])?;
            }
            tx.execute(
                "INSERT INTO inventory_meta (appliance, version, digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, digest = excluded.digest",
                params![appliance, inv.version as i64, inv.digest],
            )?;
            log_change(tx, &appliance, ChangeKind::Inventory)
        })
        .await
    }

    async fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError> {
        let appliance = appliance.to_owned();
        self.read(move |conn| {
            let tx = conn.transaction()?;
            let meta: Option<(i64, String)> = tx
                .query_row(
                    "SELECT version, digest FROM inventory_meta WHERE appliance = ?1",
                    params![appliance],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((version, digest)) = meta else {
                return Ok(InventoryRow::default());
            };
            let mut stmt = tx.prepare(
                "SELECT rendition, objects, bytes FROM inventory WHERE appliance = ?1 ORDER BY rendition",
            )?;
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
        })
        .await
    }

    async fn step_keys(&self, decide: KeyDecision) -> Result<Vec<(KeyWire, u64)>, StoreError> {
        // The writer's transaction is BEGIN IMMEDIATE: it holds the file's
        // write lock, which other processes on the same file wait for.
        self.write(move |tx| {
            let step = decide(&sqlite_keys(tx)?);
            if let Some((key, created)) = &step.create {
                tx.execute(
                    "INSERT INTO signing_keys (id, secret, not_before, not_after, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key.id, key.secret, key.not_before.map(|v| v as i64), key.not_after.map(|v| v as i64), *created as i64],
                )?;
            }
            let deleted = tx.execute(
                "DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after < ?1",
                params![step.delete_retired_before as i64],
            )?;
            if step.create.is_some() || deleted > 0 {
                log_change(tx, "", ChangeKind::Keys)?;
            }
            sqlite_keys(tx)
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError> {
        self.read(|conn| sqlite_keys(conn)).await
    }

    async fn put_learned_prefixes(&self, row: &LearnedRow) -> Result<(), StoreError> {
        let json = row.column()?;
        let (appliance, version) = (row.appliance.clone(), row.version);
        self.write(move |c| {
            c.execute(
                "INSERT INTO learned_prefixes (appliance, version, prefixes) VALUES (?1, ?2, ?3)
                 ON CONFLICT(appliance) DO UPDATE SET version = excluded.version, prefixes = excluded.prefixes",
                params![appliance, version as i64, json],
            )?;
            log_change(c, &appliance, ChangeKind::Prefixes)
        })
        .await
    }

    async fn learned_prefixes(&self) -> Result<Vec<LearnedRow>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT appliance, version, prefixes FROM learned_prefixes")?;
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
                out.push(LearnedRow::from_column(a, v, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.write(move |tx| {
            tx.execute("DELETE FROM rib", [])?;
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO rib (prefix, origin_asn) VALUES (?1, ?2)",
            )?;
            for (p, asn) in &entries {
                ins.execute(params![p, asn])?;
            }
            tx.execute(
                "INSERT INTO rib_meta (id, generation) VALUES (1, 1)
                 ON CONFLICT(id) DO UPDATE SET generation = generation + 1",
                [],
            )?;
            log_change(tx, "", ChangeKind::Rib)
        })
        .await
    }

    async fn rib_generation(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT generation FROM rib_meta WHERE id = 1", [], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
                .unwrap_or(0) as u64,
            )
        })
        .await
    }

    async fn rib(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT prefix, origin_asn FROM rib")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn fill_catalog(&self) -> Result<Vec<Title>, StoreError> {
        self.read(|conn| {
            let tx = conn.transaction()?;
            let mut titles = Vec::new();
            let mut at: HashMap<String, usize> = HashMap::new();
            {
                let mut stmt = tx.prepare(
                    "SELECT id, regions, release_time, audience FROM titles ORDER BY id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                    ))
                })?;
                for row in rows {
                    let (id, regions, release, audience) = row?;
                    let regions: Vec<String> = from_json(&regions, format_args!("title {id}"))?;
                    at.insert(id.clone(), titles.len());
                    titles.push(Title {
                        id,
                        regions,
                        release: release.map(|v| v.max(0) as u64),
                        audience,
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
        })
        .await
    }

    async fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
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
        })
        .await
    }

    async fn demand(&self, now: u64, days: u32) -> Result<Counts, StoreError> {
        let (now, since) = (now as i64, now.saturating_sub(u64::from(days) * DAY) as i64);
        self.read(move |conn| {
            let mut counts = Counts::default();
            // `(now - at) / span`: 0 for `at` in `(now - span, now]`: a play
            // recorded this very second counts.
            let mut stmt = conn.prepare_cached(
                "SELECT region, title, (?1 - at) / 86400 AS day, COUNT(*) FROM plays
                 WHERE at > ?2 AND at <= ?1 GROUP BY region, title, day",
            )?;
            let rows = stmt.query_map(params![now, since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?.max(0) as u32,
                    r.get::<_, i64>(3)? as f64,
                ))
            })?;
            counts.daily = rows.collect::<Result<_, _>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT region, (?1 - at) / 3600 AS hour, COUNT(*) FROM plays
                 WHERE at > ?2 AND at <= ?1 GROUP BY region, hour",
            )?;
            let rows = stmt.query_map(params![now, since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?.max(0) as u32,
                    r.get::<_, i64>(2)? as f64,
                ))
            })?;
            counts.hourly = rows.collect::<Result<_, _>>()?;
            Ok(counts)
        })
        .await
    }

    async fn appliance(&self, id: &str) -> Result<Option<ApplianceRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("{APPLIANCE_ROW} WHERE id = ?1"),
                params![id],
                appliance_columns,
            )
            .optional()?
            .map(appliance_row)
            .transpose()
        })
        .await
    }

    async fn beat(
        &self,
        id: &str,
        region: &str,
        live_ms: u64,
    ) -> Result<(u64, Vec<InstanceRow>), StoreError> {
        let (id, region) = (id.to_owned(), region.to_owned());
        self.write(move |c| {
            let now: i64 = c.query_row(&format!("SELECT {NOW_MS}"), [], |r| r.get(0))?;
            c.execute(
                "INSERT INTO instances (id, region, started_ms, beat_ms) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(id) DO UPDATE SET region = excluded.region, beat_ms = excluded.beat_ms",
                params![id, region, now],
            )?;
            let mut stmt = c.prepare_cached(
                "SELECT id, region, beat_ms FROM instances WHERE beat_ms >= ?1 ORDER BY id",
            )?;
            let live = stmt
                .query_map(params![now - live_ms as i64], |r| {
                    Ok(InstanceRow {
                        id: r.get(0)?,
                        region: r.get(1)?,
                        beat_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((now.max(0) as u64, live))
        })
        .await
    }

    async fn put_live(&self, by: &str, rows: &[LiveRow]) -> Result<(), StoreError> {
        let by = by.to_owned();
        let mut encoded = Vec::with_capacity(rows.len());
        for r in rows {
            let report = r.report.as_ref().map(to_json).transpose()?;
            encoded.push((r.clone(), report));
        }
        self.write(move |c| {
            let mut up = c.prepare_cached(&format!(
                "INSERT INTO appliance_live (appliance, report, report_ms, up, up_ms, updated_ms,
                     written_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, {NOW_MS}, ?6)
                 ON CONFLICT(appliance) DO UPDATE SET
                     report = CASE WHEN excluded.report_ms > appliance_live.report_ms
                                   THEN excluded.report ELSE appliance_live.report END,
                     report_ms = max(excluded.report_ms, appliance_live.report_ms),
                     up = CASE WHEN excluded.up_ms > appliance_live.up_ms
                               THEN excluded.up ELSE appliance_live.up END,
                     up_ms = max(excluded.up_ms, appliance_live.up_ms),
                     updated_ms = excluded.updated_ms, written_by = excluded.written_by"
            ))?;
            for (r, report) in &encoded {
                up.execute(params![
                    r.appliance,
                    report,
                    r.report_ms as i64,
                    r.up as i64,
                    r.up_ms as i64,
                    by
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn put_paths(&self, by: &str, rows: &[PathRow], keep_ms: u64) -> Result<(), StoreError> {
        let (by, rows) = (by.to_owned(), rows.to_vec());
        self.write(move |c| {
            let mut up = c.prepare_cached(&format!(
                "INSERT INTO path_estimates (instance, network, appliance, w, tput, ttfb, err, at, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW_MS})
                 ON CONFLICT(instance, network, appliance) DO UPDATE SET
                     w = excluded.w, tput = excluded.tput, ttfb = excluded.ttfb, err = excluded.err,
                     at = excluded.at, updated_ms = excluded.updated_ms
                 WHERE excluded.at >= path_estimates.at"
            ))?;
            for r in &rows {
                let s = &r.sums;
                up.execute(params![
                    by, r.network, r.appliance, s.w, s.tput, s.ttfb, s.err, s.at as i64
                ])?;
            }
            c.prepare_cached(&format!(
                "DELETE FROM path_estimates WHERE updated_ms < {NOW_MS} - ?1"
            ))?
            .execute(params![keep_ms as i64])?;
            Ok(())
        })
        .await
    }

    async fn paths_since(&self, since_ms: u64, except: &str) -> Result<Vec<PathRow>, StoreError> {
        let except = except.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT instance, network, appliance, w, tput, ttfb, err, at FROM path_estimates
                 WHERE updated_ms >= ?1 AND instance <> ?2",
            )?;
            let rows = stmt
                .query_map(params![since_ms as i64, except], |r| {
                    Ok(PathRow {
                        instance: r.get(0)?,
                        network: r.get(1)?,
                        appliance: r.get(2)?,
                        sums: crate::fleet::measure::Sums {
                            w: r.get(3)?,
                            tput: r.get(4)?,
                            ttfb: r.get(5)?,
                            err: r.get(6)?,
                            at: r.get::<_, i64>(7)?.max(0) as u64,
                        },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn live_since(&self, since_ms: u64, except: &str) -> Result<Vec<LiveRow>, StoreError> {
        let except = except.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT appliance, report, report_ms, up, up_ms FROM appliance_live
                 WHERE updated_ms >= ?1 AND written_by <> ?2",
            )?;
            let rows = stmt
                .query_map(params![since_ms as i64, except], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(appliance, report, report_ms, up, up_ms)| {
                    let report = report
                        .map(|j| from_json(&j, format_args!("live state of {appliance}")))
                        .transpose()?;
                    Ok(LiveRow {
                        appliance,
                        report,
                        report_ms: report_ms.max(0) as u64,
                        up: up != 0,
                        up_ms: up_ms.max(0) as u64,
                    })
                })
                .collect()
        })
        .await
    }

    async fn changes_since(&self, since_ms: u64) -> Result<Vec<Change>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ms, appliance, what FROM fleet_changes WHERE at_ms >= ?1
                 ORDER BY at_ms",
            )?;
            let rows = stmt
                .query_map(params![since_ms as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(at, appliance, what)| {
                    Some(Change {
                        at_ms: at.max(0) as u64,
                        appliance,
                        what: ChangeKind::parse(&what)?,
                    })
                })
                .collect())
        })
        .await
    }

    async fn fill_plan_version(
        &self,
        appliance: &str,
        digest: &str,
        now: u64,
    ) -> Result<u64, StoreError> {
        let (appliance, digest) = (appliance.to_owned(), digest.to_owned());
        self.write(move |tx| {
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
            Ok(version)
        })
        .await
    }
}

/// The columns `appliance_columns` reads.
const APPLIANCE_ROW: &str =
    "SELECT id, info, credential_sha256, bound, revoked_at IS NOT NULL FROM appliances";

type ApplianceColumns = (String, String, String, Option<String>, bool);

fn appliance_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApplianceColumns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn appliance_row(
    (id, info, credential_sha256, bound, revoked): ApplianceColumns,
) -> Result<ApplianceRow, StoreError> {
    Ok(ApplianceRow {
        info: from_json(&info, &id)?,
        bound: bound.map(|b| from_json(&b, &id)).transpose()?,
        id,
        credential_sha256,
        revoked,
    })
}

/// The columns `enrolment_columns` reads.
const ENROLMENT_ROW: &str = "SELECT token_sha256, appliance, placement, created, expires,
     used_at, used_by, used_credential_sha256 FROM enrolments";

type EnrolmentColumns = (
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn enrolment_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrolmentColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn enrolment_row(
    (token_sha256, appliance, placement, created, expires, at, by, cred): EnrolmentColumns,
) -> Result<EnrolmentRow, StoreError> {
    Ok(EnrolmentRow {
        placement: from_json(&placement, &token_sha256)?,
        token_sha256,
        appliance,
        created: created as u64,
        expires: expires as u64,
        used: match (at, by, cred) {
            (Some(at), Some(by), Some(credential_sha256)) => Some(EnrolmentUse {
                at: at as u64,
                by,
                credential_sha256,
            }),
            _ => None,
        },
    })
}

/// Log a change for the other instances, in the writer's transaction.
pub(crate) fn log_change(
    c: &rusqlite::Connection,
    appliance: &str,
    what: ChangeKind,
) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO fleet_changes (at_ms, appliance, what) VALUES ({NOW_MS}, ?1, ?2)"
    ))?
    .execute(params![appliance, what.as_str()])?;
    Ok(())
}

fn sqlite_keys(conn: &rusqlite::Connection) -> Result<Vec<(KeyWire, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, secret, not_before, not_after, created FROM signing_keys ORDER BY created, id",
    )?;
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
