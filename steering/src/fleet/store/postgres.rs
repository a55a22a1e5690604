//! The fleet part's SQL for PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use control_client::wire::{ApplianceInfo, EnrolRequest, FillObject, KeyWire, RenditionHolding};

use super::{
    ApplianceRow, Change, ChangeKind, EnrolmentRow, EnrolmentUse, FleetStore, InstanceRow,
    InventoryRow, KeyDecision, LearnedRow, LiveRow, PathRow, Revoked,
};
use crate::fleet::enrol::{self, Verdict};
use crate::fleet::fillplan::{Play, Rendition, Title};
use crate::forecast::{Counts, DAY};
use crate::store::postgres::{Lock, NOW_MS};
use crate::store::{Postgres, StoreError, from_json, to_json};

#[async_trait]
impl FleetStore for Postgres {
    async fn upsert_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        self.client()
            .await?
            .execute(
                &format!(
                    "WITH logged AS (INSERT INTO fleet_changes (at_ms, appliance, what)
                         VALUES ({NOW_MS}, $1, 'info'))
                 INSERT INTO appliances (id, info, credential_sha256, registered_at, registered)
                 VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (id) DO UPDATE SET info = excluded.info,
                     credential_sha256 = excluded.credential_sha256, registered = 1"
                ),
                &[&id, &info, &credential_sha256, &(now as i64)],
            )
            .await?;
        Ok(())
    }

    async fn declare_appliance(
        &self,
        id: &str,
        info: &ApplianceInfo,
        credential_sha256: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let info = to_json(info)?;
        self.client()
            .await?
            .execute(
                &format!(
                    "WITH logged AS (INSERT INTO fleet_changes (at_ms, appliance, what)
                         VALUES ({NOW_MS}, $1, 'info'))
                 INSERT INTO appliances (id, info, credential_sha256, registered_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET credential_sha256 = excluded.credential_sha256,
                     info = CASE WHEN appliances.registered = 1 THEN appliances.info
                                 ELSE excluded.info END,
                     revoked_at = CASE WHEN appliances.credential_sha256 = excluded.credential_sha256
                                       THEN appliances.revoked_at END"
                ),
                &[&id, &info, &credential_sha256, &(now as i64)],
            )
            .await?;
        Ok(())
    }

    async fn appliances(&self) -> Result<Vec<ApplianceRow>, StoreError> {
        self.client()
            .await?
            .query(&format!("{APPLIANCE_ROW} ORDER BY id"), &[])
            .await?
            .iter()
            .map(appliance_row)
            .collect()
    }

    async fn add_enrolment(&self, e: &EnrolmentRow) -> Result<(), StoreError> {
        let placement = to_json(&e.placement)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM enrolments WHERE expires < $1",
            &[&(e.created.saturating_sub(30 * DAY) as i64)],
        )
        .await?;
        tx.execute(
            "INSERT INTO enrolments (token_sha256, appliance, placement, created, expires)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &e.token_sha256,
                &e.appliance,
                &placement,
                &(e.created as i64),
                &(e.expires as i64),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enrolments(&self) -> Result<Vec<EnrolmentRow>, StoreError> {
        self.client()
            .await?
            .query(&format!("{ENROLMENT_ROW} ORDER BY created DESC"), &[])
            .await?
            .iter()
            .map(enrolment_row)
            .collect()
    }

    async fn enrol(
        &self,
        token_sha256: &str,
        req: &EnrolRequest,
        now: u64,
    ) -> Result<Verdict, StoreError> {
        let info = to_json(&req.info)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The token's row stays locked to the commit: an instance presented
        // the same token meanwhile waits, then sees it used.
        let token = tx
            .query_opt(
                &format!("{ENROLMENT_ROW} WHERE token_sha256 = $1 FOR UPDATE"),
                &[&token_sha256],
            )
            .await?
            .as_ref()
            .map(enrolment_row)
            .transpose()?;
        let id = enrol::id_for(token.as_ref(), req).to_owned();
        let existing = tx
            .query_opt(
                "SELECT revoked_at IS NOT NULL FROM appliances WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .map(|r| enrol::Existing { revoked: r.get(0) });
        let mut verdict = enrol::decide(token.as_ref(), existing.as_ref(), req, now);
        if let Verdict::Enrol { id, bound } = &verdict {
            tx.execute(
                "UPDATE enrolments SET used_at = $2, used_by = $3, used_credential_sha256 = $4
                 WHERE token_sha256 = $1",
                &[&token_sha256, &(now as i64), id, &req.credential_sha256],
            )
            .await?;
            // Two tokens enrolling one new id at once: the second insert
            // finds the first's row and changes nothing.
            let written = tx
                .execute(
                    "INSERT INTO appliances (id, info, credential_sha256, registered_at, registered, bound)
                     VALUES ($1, $2, $3, $4, 1, $5)
                     ON CONFLICT (id) DO UPDATE SET info = excluded.info,
                         credential_sha256 = excluded.credential_sha256, registered = 1,
                         bound = excluded.bound, revoked_at = NULL
                     WHERE appliances.revoked_at IS NOT NULL",
                    &[id, &info, &req.credential_sha256, &(now as i64), &to_json(bound)?],
                )
                .await?;
            if written == 0 {
                verdict = Verdict::Refused(enrol::Refusal::IdTaken { id: id.clone() });
                tx.rollback().await?;
                return Ok(verdict);
            }
            log_change(&tx, id, ChangeKind::Info).await?;
        }
        tx.commit().await?;
        Ok(verdict)
    }

    async fn revoke_appliance(&self, id: &str, now: u64) -> Result<Revoked, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let state = tx
            .query_opt(
                "SELECT revoked_at IS NOT NULL FROM appliances WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .map(|r| r.get::<_, bool>(0));
        let outcome = match state {
            None => Revoked::NoSuchAppliance,
            Some(true) => Revoked::Already,
            Some(false) => {
                tx.execute(
                    "UPDATE appliances SET revoked_at = $2 WHERE id = $1",
                    &[&id, &(now as i64)],
                )
                .await?;
                log_change(&tx, id, ChangeKind::Info).await?;
                Revoked::Now
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn put_inventory(&self, appliance: &str, inv: &InventoryRow) -> Result<(), StoreError> {
        let names: Vec<&str> = inv
            .renditions
            .iter()
            .map(|r| r.rendition.as_str())
            .collect();
        let objects: Vec<i64> = inv.renditions.iter().map(|r| r.objects as i64).collect();
        let bytes: Vec<i64> = inv.renditions.iter().map(|r| r.bytes as i64).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM inventory WHERE appliance = $1", &[&appliance])
            .await?;
        tx.execute(
            "INSERT INTO inventory (appliance, rendition, objects, bytes)
             SELECT $1, r, o, b FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) AS u(r, o, b)",
            &[&appliance, &names, &objects, &bytes],
        )
        .await?;
        tx.execute(
            "INSERT INTO inventory_meta (appliance, version, digest) VALUES ($1, $2, $3)
             ON CONFLICT (appliance) DO UPDATE SET version = excluded.version,
                 digest = excluded.digest",
            &[&appliance, &(inv.version as i64), &inv.digest],
        )
        .await?;
        log_change(&tx, appliance, ChangeKind::Inventory).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn inventory(&self, appliance: &str) -> Result<InventoryRow, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let Some(meta) = tx
            .query_opt(
                "SELECT version, digest FROM inventory_meta WHERE appliance = $1",
                &[&appliance],
            )
            .await?
        else {
            return Ok(InventoryRow::default());
        };
        let renditions = tx
            .query(
                "SELECT rendition, objects, bytes FROM inventory WHERE appliance = $1
                 ORDER BY rendition",
                &[&appliance],
            )
            .await?
            .iter()
            .map(|r| RenditionHolding {
                rendition: r.get(0),
                objects: r.get::<_, i64>(1) as u64,
                bytes: r.get::<_, i64>(2) as u64,
            })
            .collect();
        tx.commit().await?;
        Ok(InventoryRow {
            version: meta.get::<_, i64>(0) as u64,
            digest: meta.get(1),
            renditions,
        })
    }

    async fn step_keys(&self, decide: KeyDecision) -> Result<Vec<(KeyWire, u64)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Held until commit: every other instance's step waits here, then
        // sees this one's key and decides there is nothing to create.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(Lock::Keys as i64)])
            .await?;
        let step = decide(&pg_keys(&tx).await?);
        if let Some((key, created)) = &step.create {
            tx.execute(
                "INSERT INTO signing_keys (id, secret, not_before, not_after, created)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &key.id,
                    &key.secret,
                    &key.not_before.map(|v| v as i64),
                    &key.not_after.map(|v| v as i64),
                    &(*created as i64),
                ],
            )
            .await?;
        }
        let deleted = tx
            .execute(
                "DELETE FROM signing_keys WHERE not_after IS NOT NULL AND not_after < $1",
                &[&(step.delete_retired_before as i64)],
            )
            .await?;
        if step.create.is_some() || deleted > 0 {
            log_change(&tx, "", ChangeKind::Keys).await?;
        }
        let keys = pg_keys(&tx).await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn keys(&self) -> Result<Vec<(KeyWire, u64)>, StoreError> {
        pg_keys(&self.client().await?).await
    }

    async fn put_learned_prefixes(&self, row: &LearnedRow) -> Result<(), StoreError> {
        let json = row.column()?;
        self.client()
            .await?
            .execute(
                &format!(
                    "WITH logged AS (INSERT INTO fleet_changes (at_ms, appliance, what)
                         VALUES ({NOW_MS}, $1, 'prefixes'))
                 INSERT INTO learned_prefixes (appliance, version, prefixes) VALUES ($1, $2, $3)
                 ON CONFLICT (appliance) DO UPDATE SET version = excluded.version,
                     prefixes = excluded.prefixes"
                ),
                &[&row.appliance, &(row.version as i64), &json],
            )
            .await?;
        Ok(())
    }

    async fn learned_prefixes(&self) -> Result<Vec<LearnedRow>, StoreError> {
        self.client()
            .await?
            .query(
                "SELECT appliance, version, prefixes FROM learned_prefixes ORDER BY appliance",
                &[],
            )
            .await?
            .iter()
            .map(|r| LearnedRow::from_column(r.get(0), r.get::<_, i64>(1) as u64, r.get(2)))
            .collect()
    }

    async fn put_rib(&self, entries: &[(String, u32)]) -> Result<(), StoreError> {
        let prefixes: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        let asns: Vec<i64> = entries.iter().map(|(_, a)| *a as i64).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM rib", &[]).await?;
        // A prefix listed twice keeps its last origin, as SQLite's
        // INSERT OR REPLACE does.
        tx.execute(
            "INSERT INTO rib (prefix, origin_asn)
             SELECT DISTINCT ON (p) p, a FROM UNNEST($1::text[], $2::bigint[])
                 WITH ORDINALITY AS u(p, a, n) ORDER BY p, n DESC",
            &[&prefixes, &asns],
        )
        .await?;
        tx.execute(
            "INSERT INTO rib_meta (id, generation) VALUES (1, 1)
             ON CONFLICT (id) DO UPDATE SET generation = rib_meta.generation + 1",
            &[],
        )
        .await?;
        log_change(&tx, "", ChangeKind::Rib).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rib_generation(&self) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT generation FROM rib_meta WHERE id = 1", &[])
            .await?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn rib(&self) -> Result<Vec<(String, u32)>, StoreError> {
        Ok(self
            .client()
            .await?
            .query("SELECT prefix, origin_asn FROM rib", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u32))
            .collect())
    }

    async fn fill_catalog(&self) -> Result<Vec<Title>, StoreError> {
        let mut client = self.client().await?;
        // One snapshot: an import running meanwhile is seen whole or not at all.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut titles = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for r in tx
            .query(
                "SELECT id, regions, release_time, audience FROM titles ORDER BY id",
                &[],
            )
            .await?
        {
            let id: String = r.get(0);
            let regions: Vec<String> = from_json(r.get(1), format_args!("title {id}"))?;
            at.insert(id.clone(), titles.len());
            titles.push(Title {
                id,
                regions,
                release: r.get::<_, Option<i64>>(2).map(|v| v.max(0) as u64),
                audience: r.get(3),
                renditions: Vec::new(),
            });
        }
        let mut rendition_at: HashMap<String, (usize, usize)> = HashMap::new();
        for r in tx
            .query("SELECT id, title FROM renditions ORDER BY title, id", &[])
            .await?
        {
            let (id, title): (String, String) = (r.get(0), r.get(1));
            let Some(&t) = at.get(&title) else { continue };
            rendition_at.insert(id.clone(), (t, titles[t].renditions.len()));
            titles[t].renditions.push(Rendition {
                id,
                objects: Vec::new(),
            });
        }
        for r in tx
            .query(
                "SELECT rendition, key, size, sha256 FROM objects ORDER BY rendition, seq",
                &[],
            )
            .await?
        {
            let rendition: String = r.get(0);
            if let Some(&(t, i)) = rendition_at.get(&rendition) {
                titles[t].renditions[i].objects.push(FillObject {
                    key: r.get(1),
                    size: r.get::<_, i64>(2).max(0) as u64,
                    sha256: r.get(3),
                });
            }
        }
        tx.commit().await?;
        Ok(titles)
    }

    async fn plays_all_since(&self, since: u64, limit: u32) -> Result<Vec<Play>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT title, region, at FROM plays WHERE at >= $1 ORDER BY at DESC LIMIT $2",
                &[&(since as i64), &(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| Play {
                title: r.get(0),
                region: r.get(1),
                at: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn demand(&self, now: u64, days: u32) -> Result<Counts, StoreError> {
        let (now, since) = (now as i64, now.saturating_sub(u64::from(days) * DAY) as i64);
        let client = self.client().await?;
        // `(now - at) / span`: 0 for `at` in `(now - span, now]`: a play
        // recorded this very second counts.
        let daily = client
            .query(
                "SELECT region, title, ($1 - at) / 86400 AS day, COUNT(*) FROM plays
                 WHERE at > $2 AND at <= $1 GROUP BY region, title, day",
                &[&now, &since],
            )
            .await?;
        let hourly = client
            .query(
                "SELECT region, ($1 - at) / 3600 AS hour, COUNT(*) FROM plays
                 WHERE at > $2 AND at <= $1 GROUP BY region, hour",
                &[&now, &since],
            )
            .await?;
        Ok(Counts {
            daily: daily
                .iter()
                .map(|r| {
                    let day: i64 = r.get(2);
                    let n: i64 = r.get(3);
                    (r.get(0), r.get(1), day.max(0) as u32, n as f64)
                })
                .collect(),
            hourly: hourly
                .iter()
                .map(|r| {
                    let hour: i64 = r.get(1);
                    let n: i64 = r.get(2);
                    (r.get(0), hour.max(0) as u32, n as f64)
                })
                .collect(),
        })
    }

    async fn appliance(&self, id: &str) -> Result<Option<ApplianceRow>, StoreError> {
        self.client()
            .await?
            .query_opt(&format!("{APPLIANCE_ROW} WHERE id = $1"), &[&id])
            .await?
            .as_ref()
            .map(appliance_row)
            .transpose()
    }

    async fn beat(
        &self,
        id: &str,
        region: &str,
        live_ms: u64,
    ) -> Result<(u64, Vec<InstanceRow>), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH now AS (SELECT {NOW_MS} AS ms),
                 beat AS (
                     INSERT INTO instances (id, region, started_ms, beat_ms)
                     SELECT $1, $2, ms, ms FROM now
                     ON CONFLICT (id) DO UPDATE SET region = excluded.region,
                         beat_ms = excluded.beat_ms
                     RETURNING id, region, beat_ms)
                 SELECT now.ms, i.id, i.region, i.beat_ms FROM now,
                     (SELECT id, region, beat_ms FROM instances WHERE id <> $1
                      UNION ALL SELECT id, region, beat_ms FROM beat) i
                 WHERE i.beat_ms >= now.ms - $3 ORDER BY i.id"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&id, &region, &(live_ms as i64)])
            .await?;
        let now = rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64);
        let live = rows
            .iter()
            .map(|r| InstanceRow {
                id: r.get(1),
                region: r.get(2),
                beat_ms: r.get::<_, i64>(3).max(0) as u64,
            })
            .collect();
        Ok((now, live))
    }

    async fn put_live(&self, by: &str, rows: &[LiveRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut names = Vec::with_capacity(rows.len());
        let mut reports = Vec::with_capacity(rows.len());
        let (mut report_ms, mut up, mut up_ms) = (Vec::new(), Vec::new(), Vec::new());
        for r in rows {
            names.push(r.appliance.as_str());
            reports.push(r.report.as_ref().map(to_json).transpose()?);
            report_ms.push(r.report_ms as i64);
            up.push(r.up as i64);
            up_ms.push(r.up_ms as i64);
        }
        // One statement for the batch; an appliance twice in it would make
        // the upsert touch a row twice, so the newest of each is kept first.
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO appliance_live (appliance, report, report_ms, up, up_ms, updated_ms,
                     written_by)
                 SELECT DISTINCT ON (a) a, r, rm, u, um, {NOW_MS}, $6
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
                     AS b(a, r, rm, u, um)
                 ORDER BY a, greatest(rm, um) DESC
                 ON CONFLICT (appliance) DO UPDATE SET
                     report = CASE WHEN excluded.report_ms > appliance_live.report_ms
                                   THEN excluded.report ELSE appliance_live.report END,
                     report_ms = greatest(excluded.report_ms, appliance_live.report_ms),
                     up = CASE WHEN excluded.up_ms > appliance_live.up_ms
                               THEN excluded.up ELSE appliance_live.up END,
                     up_ms = greatest(excluded.up_ms, appliance_live.up_ms),
                     updated_ms = excluded.updated_ms, written_by = excluded.written_by"
                ),
                &[&names, &reports, &report_ms, &up, &up_ms, &by],
            )
            .await?;
        Ok(())
    }

    async fn put_paths(&self, by: &str, rows: &[PathRow], keep_ms: u64) -> Result<(), StoreError> {
        let client = self.client().await?;
        if !rows.is_empty() {
            let nets: Vec<&str> = rows.iter().map(|r| r.network.as_str()).collect();
            let apps: Vec<&str> = rows.iter().map(|r| r.appliance.as_str()).collect();
            let col = |f: fn(&PathRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
            let (w, tput, ttfb, err) = (
                col(|r| r.sums.w),
                col(|r| r.sums.tput),
                col(|r| r.sums.ttfb),
                col(|r| r.sums.err),
            );
            let at: Vec<i64> = rows.iter().map(|r| r.sums.at as i64).collect();
            // One statement for the batch (a path appears once in it: the
            // rows come from one map).
            client
                .execute(
                    &format!(
                        "INSERT INTO path_estimates (instance, network, appliance, w, tput, ttfb, err, at, updated_ms)
                         SELECT $1, n, a, w, t, f, e, at, {NOW_MS}
                         FROM UNNEST($2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[],
                                     $7::float8[], $8::bigint[]) AS b(n, a, w, t, f, e, at)
                         ON CONFLICT (instance, network, appliance) DO UPDATE SET
                             w = excluded.w, tput = excluded.tput, ttfb = excluded.ttfb,
                             err = excluded.err, at = excluded.at, updated_ms = excluded.updated_ms
                         WHERE excluded.at >= path_estimates.at"
                    ),
                    &[&by, &nets, &apps, &w, &tput, &ttfb, &err, &at],
                )
                .await?;
        }
        client
            .execute(
                &format!("DELETE FROM path_estimates WHERE updated_ms < {NOW_MS} - $1"),
                &[&(keep_ms as i64)],
            )
            .await?;
        Ok(())
    }

    async fn paths_since(&self, since_ms: u64, except: &str) -> Result<Vec<PathRow>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT instance, network, appliance, w, tput, ttfb, err, at FROM path_estimates
                 WHERE updated_ms >= $1 AND instance <> $2",
            )
            .await?;
        Ok(client
            .query(&stmt, &[&(since_ms as i64), &except])
            .await?
            .iter()
            .map(|r| PathRow {
                instance: r.get(0),
                network: r.get(1),
                appliance: r.get(2),
                sums: crate::fleet::measure::Sums {
                    w: r.get(3),
                    tput: r.get(4),
                    ttfb: r.get(5),
                    err: r.get(6),
                    at: r.get::<_, i64>(7).max(0) as u64,
                },
            })
            .collect())
    }

    async fn live_since(&self, since_ms: u64, except: &str) -> Result<Vec<LiveRow>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT appliance, report, report_ms, up, up_ms FROM appliance_live
                 WHERE updated_ms >= $1 AND written_by <> $2",
            )
            .await?;
        client
            .query(&stmt, &[&(since_ms as i64), &except])
            .await?
            .iter()
            .map(|r| {
                let appliance: String = r.get(0);
                let report = r
                    .get::<_, Option<&str>>(1)
                    .map(|j| from_json(j, format_args!("live state of {appliance}")))
                    .transpose()?;
                Ok(LiveRow {
                    appliance,
                    report,
                    report_ms: r.get::<_, i64>(2).max(0) as u64,
                    up: r.get::<_, i64>(3) != 0,
                    up_ms: r.get::<_, i64>(4).max(0) as u64,
                })
            })
            .collect()
    }

    async fn changes_since(&self, since_ms: u64) -> Result<Vec<Change>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT at_ms, appliance, what FROM fleet_changes WHERE at_ms >= $1
                 ORDER BY at_ms",
            )
            .await?;
        Ok(client
            .query(&stmt, &[&(since_ms as i64)])
            .await?
            .iter()
            .filter_map(|r| {
                Some(Change {
                    at_ms: r.get::<_, i64>(0).max(0) as u64,
                    appliance: r.get(1),
                    what: ChangeKind::parse(r.get(2))?,
                })
            })
            .collect())
    }

    async fn fill_plan_version(
        &self,
        appliance: &str,
        digest: &str,
        now: u64,
    ) -> Result<u64, StoreError> {
        // One statement: the upsert locks the row, so two instances handing
        // out the same new plan at once get one version.
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO fill_plans (appliance, version, digest, generated)
                 VALUES ($1, 1, $2, $3)
                 ON CONFLICT (appliance) DO UPDATE SET
                     version = CASE WHEN fill_plans.digest = excluded.digest
                                    THEN fill_plans.version ELSE fill_plans.version + 1 END,
                     generated = CASE WHEN fill_plans.digest = excluded.digest
                                      THEN fill_plans.generated ELSE excluded.generated END,
                     digest = excluded.digest
                 RETURNING version",
                &[&appliance, &digest, &(now as i64)],
            )
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

/// The columns `appliance_row` reads.
const APPLIANCE_ROW: &str =
    "SELECT id, info, credential_sha256, bound, revoked_at IS NOT NULL FROM appliances";

fn appliance_row(r: &tokio_postgres::Row) -> Result<ApplianceRow, StoreError> {
    let id: String = r.get(0);
    Ok(ApplianceRow {
        info: from_json(r.get(1), &id)?,
        bound: r
            .get::<_, Option<&str>>(3)
            .map(|b| from_json(b, &id))
            .transpose()?,
        credential_sha256: r.get(2),
        revoked: r.get(4),
        id,
    })
}

/// The columns `enrolment_row` reads.
const ENROLMENT_ROW: &str = "SELECT token_sha256, appliance, placement, created, expires,
     used_at, used_by, used_credential_sha256 FROM enrolments";

fn enrolment_row(r: &tokio_postgres::Row) -> Result<EnrolmentRow, StoreError> {
    let token_sha256: String = r.get(0);
    let used = match (
        r.get::<_, Option<i64>>(5),
        r.get::<_, Option<String>>(6),
        r.get::<_, Option<String>>(7),
    ) {
        (Some(at), Some(by), Some(credential_sha256)) => Some(EnrolmentUse {
            at: at as u64,
            by,
            credential_sha256,
        }),
        _ => None,
    };
    Ok(EnrolmentRow {
        placement: from_json(r.get(2), &token_sha256)?,
        appliance: r.get(1),
        created: r.get::<_, i64>(3) as u64,
        expires: r.get::<_, i64>(4) as u64,
        used,
        token_sha256,
    })
}

/// Log a change for the other instances, in the caller's transaction.
pub(crate) async fn log_change(
    client: &impl deadpool_postgres::GenericClient,
    appliance: &str,
    what: ChangeKind,
) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "INSERT INTO fleet_changes (at_ms, appliance, what) VALUES ({NOW_MS}, $1, $2)"
            ),
            &[&appliance, &what.as_str()],
        )
        .await?;
    Ok(())
}

async fn pg_keys(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Vec<(KeyWire, u64)>, StoreError> {
    Ok(client
        .query(
            "SELECT id, secret, not_before, not_after, created FROM signing_keys
             ORDER BY created, id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            (
                KeyWire {
                    id: r.get(0),
                    secret: r.get(1),
                    not_before: r.get::<_, Option<i64>>(2).map(|v| v as u64),
                    not_after: r.get::<_, Option<i64>>(3).map(|v| v as u64),
                },
                r.get::<_, i64>(4) as u64,
            )
        })
        .collect())
}
