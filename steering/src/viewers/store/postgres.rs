//! The viewers part's SQL for PostgreSQL.

use async_trait::async_trait;

use super::{StreamRow, UserRow, ViewerStore};
use crate::reco::model::Event;
use crate::store::{Postgres, StoreError};

fn user_row(r: &tokio_postgres::Row) -> UserRow {
    UserRow {
        id: r.get(0),
        plan: r.get(1),
        subscription: r.get(2),
        country: r.get(3),
        region: r.get(4),
    }
}

#[async_trait]
impl ViewerStore for Postgres {
    async fn add_user(
        &self,
        u: &UserRow,
        profiles: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO users (id, plan, subscription, country, region, created)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &u.id,
                &u.plan,
                &u.subscription,
                &u.country,
                &u.region,
                &(now as i64),
            ],
        )
        .await?;
        for (id, name) in profiles {
            tx.execute(
                "INSERT INTO profiles (\"user\", id, name) VALUES ($1, $2, $3)",
                &[&u.id, id, name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE users SET plan = $2, subscription = $3, country = $4, region = $5
                 WHERE id = $1",
                &[&u.id, &u.plan, &u.subscription, &u.country, &u.region],
            )
            .await?
            == 1)
    }

    async fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO profiles (\"user\", id, name) VALUES ($1, $2, $3)",
                &[&user, &id, &name],
            )
            .await?;
        Ok(())
    }

    async fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, plan, subscription, country, region FROM users WHERE id = $1",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(user_row))
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT id, plan, subscription, country, region FROM users ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(user_row)
            .collect())
    }

    async fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, name FROM profiles WHERE \"user\" = $1 ORDER BY id")
            .await?;
        Ok(client
            .query(&stmt, &[&user])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    async fn add_viewer_token(
        &self,
        sha256: &str,
        user: &str,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO viewer_tokens (sha256, \"user\", created, expires)
                 VALUES ($1, $2, $3, $4)",
                &[&sha256, &user, &(now as i64), &(expires as i64)],
            )
            .await?;
        Ok(())
    }

    async fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT u.id, u.plan, u.subscription, u.country, u.region FROM viewer_tokens t
                 JOIN users u ON u.id = t.\"user\" WHERE t.sha256 = $1 AND t.expires > $2",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&sha256, &(now as i64)])
            .await?
            .as_ref()
            .map(user_row))
    }

    async fn start_stream(
        &self,
        s: &StreamRow,
        region: &str,
        max_streams: u32,
        active_since: u64,
    ) -> Result<Result<(), u32>, StoreError> {
        let mut client = self.client().await?;
        let lock = client
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await?;
        // Count and both inserts in one statement: it runs after the lock
        // (statements on a connection run in order), so its snapshot already
        // holds every stream a racing play committed before it got the lock.
        let start = client
            .prepare_cached(
                "WITH active AS (
                     SELECT COUNT(*) AS n FROM streams
                     WHERE \"user\" = $2 AND ended IS NULL AND last_seen >= $10),
                 stream AS (
                     INSERT INTO streams (id, \"user\", profile, title, client, body, expires,
                         started, last_seen)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM active WHERE n < $11
                     RETURNING started),
                 play AS (
                     INSERT INTO plays (title, region, at, \"user\", profile)
                     SELECT $4, $12, started, $2, $3 FROM stream)
                 SELECT n FROM active",
            )
            .await?;
        let tx = client.transaction().await?;
        // The user's plays are serialised (across every instance): the count
        // and the insert cannot interleave with another play's, so two plays
        // racing for the last slot get one. Lock and statement are pipelined:
        // sent together, one round trip.
        let key = format!("streams:{}", s.user);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &s.id,
            &s.user,
            &s.profile,
            &s.title,
            &s.client,
            &s.body,
            &(s.expires as i64),
            &(s.started as i64),
            &(s.last_seen as i64),
            &(active_since as i64),
            &(max_streams as i64),
            &region,
        ];
        let (_, row) = futures_util::future::try_join(
            tx.execute(&lock, &[&key]),
            tx.query_one(&start, &params),
        )
        .await?;
        let active: i64 = row.get(0);
        tx.commit().await?;
        if active >= max_streams as i64 {
            return Ok(Err(active as u32));
        }
        Ok(Ok(()))
    }

    async fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, \"user\", profile, title, client, body, expires, started, last_seen,
                     ended
                 FROM streams WHERE id = $1",
            )
            .await?;
        Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| StreamRow {
            id: r.get(0),
            user: r.get(1),
            profile: r.get(2),
            title: r.get(3),
            client: r.get(4),
            body: r.get(5),
            expires: r.get::<_, i64>(6) as u64,
            started: r.get::<_, i64>(7) as u64,
            last_seen: r.get::<_, i64>(8) as u64,
            ended: r.get::<_, Option<i64>>(9).map(|v| v as u64),
        }))
    }

    async fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE streams SET last_seen = $3 WHERE id = $1 AND \"user\" = $2
                     AND ended IS NULL",
            )
            .await?;
        Ok(client.execute(&stmt, &[&id, &user, &(now as i64)]).await? == 1)
    }

    async fn touch_streams(
        &self,
        seen: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        // One statement for the batch: the store's cost does not grow with
        // the heartbeats, only with the plays.
        self.update_live_streams("last_seen = GREATEST(streams.last_seen, t.at)", seen)
            .await
    }

    async fn end_streams(
        &self,
        ended: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        self.update_live_streams("ended = t.at", ended).await
    }

    async fn count_licence(&self, play: &str, max: u32) -> Result<Option<u32>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO play_licences (play, count) VALUES ($1, 1)
                 ON CONFLICT (play) DO UPDATE SET count = play_licences.count + 1
                     WHERE play_licences.count < $2
                 RETURNING count",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&play, &i64::from(max)])
            .await?
            .map(|r| r.get::<_, i64>(0) as u32))
    }

    async fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE streams SET ended = $3 WHERE id = $1 AND \"user\" = $2 AND ended IS NULL",
                &[&id, &user, &(now as i64)],
            )
            .await?
            == 1)
    }

    async fn history(
        &self,
        user: &str,
        profile: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT title FROM plays WHERE \"user\" = $1 AND profile = $2
                 GROUP BY title ORDER BY MAX(at) DESC, title LIMIT $3",
            )
            .await?;
        Ok(client
            .query(&stmt, &[&user, &profile, &(limit as i64)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn viewing_since(&self, since: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT \"user\", profile, region, title, at FROM plays
                 WHERE at >= $1 AND \"user\" IS NOT NULL ORDER BY at DESC LIMIT $2",
                &[&(since as i64), &(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| Event {
                profile: format!("{}/{}", r.get::<_, String>(0), r.get::<_, String>(1)),
                region: r.get(2),
                title: r.get(3),
                at: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }

    async fn plays_since(
        &self,
        region: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT title, at FROM plays WHERE region = $1 AND at >= $2
                 ORDER BY at DESC LIMIT $3",
                &[&region, &(since as i64), &(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}

impl Postgres {
    /// `SET {set}` (which may read `t.at`) on each `(id, user, at)` row's
    /// stream if it is that user's and not ended, in one statement; the
    /// ids it did not find so.
    async fn update_live_streams(
        &self,
        set: &str,
        rows: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        let ids: Vec<&str> = rows.iter().map(|s| s.0.as_str()).collect();
        let users: Vec<&str> = rows.iter().map(|s| s.1.as_str()).collect();
        let ats: Vec<i64> = rows.iter().map(|s| s.2 as i64).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE streams SET {set}
                 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(id, u, at)
                 WHERE streams.id = t.id AND streams.\"user\" = t.u AND streams.ended IS NULL
                 RETURNING streams.id, streams.\"user\""
            ))
            .await?;
        let done: std::collections::HashSet<(String, String)> = client
            .query(&stmt, &[&ids, &users, &ats])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(rows
            .iter()
            .filter(|(id, user, _)| !done.contains(&(id.clone(), user.clone())))
            .map(|(id, _, _)| id.clone())
            .collect())
    }
}
