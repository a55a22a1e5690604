//! The viewers part's SQL for SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{StreamRow, UserRow, ViewerStore};
use crate::reco::model::Event;
use crate::store::{Sqlite, StoreError};

#[async_trait]
impl ViewerStore for Sqlite {
    async fn add_user(
        &self,
        u: &UserRow,
        profiles: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError> {
        let (u, profiles) = (u.clone(), profiles.to_vec());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (id, plan, subscription, country, region, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![u.id, u.plan, u.subscription, u.country, u.region, now as i64],
            )?;
            for (id, name) in &profiles {
                tx.execute(
                    "INSERT INTO profiles (user, id, name) VALUES (?1, ?2, ?3)",
                    params![u.id, id, name],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        let u = u.clone();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE users SET plan = ?2, subscription = ?3, country = ?4, region = ?5 WHERE id = ?1",
                params![u.id, u.plan, u.subscription, u.country, u.region],
            )? == 1)
        })
        .await
    }

    async fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError> {
        let (user, id, name) = (user.to_owned(), id.to_owned(), name.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO profiles (user, id, name) VALUES (?1, ?2, ?3)",
                params![user, id, name],
            )?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, plan, subscription, country, region FROM users WHERE id = ?1",
            )?
            .query_row(params![id], user_row)
            .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, plan, subscription, country, region FROM users ORDER BY id")?;
            let rows = stmt.query_map([], user_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let user = user.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, name FROM profiles WHERE user = ?1 ORDER BY id")?;
            let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn add_viewer_token(
        &self,
        sha256: &str,
        user: &str,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError> {
        let (sha256, user) = (sha256.to_owned(), user.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO viewer_tokens (sha256, user, created, expires) VALUES (?1, ?2, ?3, ?4)",
                params![sha256, user, now as i64, expires as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError> {
        let sha256 = sha256.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT u.id, u.plan, u.subscription, u.country, u.region FROM viewer_tokens t
                 JOIN users u ON u.id = t.user WHERE t.sha256 = ?1 AND t.expires > ?2",
            )?
            .query_row(params![sha256, now as i64], user_row)
            .optional()?)
        })
        .await
    }

    async fn start_stream(
        &self,
        s: &StreamRow,
        region: &str,
        max_streams: u32,
        active_since: u64,
    ) -> Result<Result<(), u32>, StoreError> {
        let (s, region) = (s.clone(), region.to_owned());
        self.write(move |tx| {
            let active: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM streams WHERE user = ?1 AND ended IS NULL AND last_seen >= ?2",
                )?
                .query_row(params![s.user, active_since as i64], |r| r.get(0))?;
            if active >= max_streams as i64 {
                return Ok(Err(active as u32));
            }
            tx.prepare_cached(
                "INSERT INTO streams (id, user, profile, title, client, body, expires, started, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![s.id, s.user, s.profile, s.title, s.client, s.body, s.expires as i64, s.started as i64, s.last_seen as i64])?;
            tx.prepare_cached(
                "INSERT INTO plays (title, region, at, user, profile) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![s.title, region, s.started as i64, s.user, s.profile])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, user, profile, title, client, body, expires, started, last_seen, ended FROM streams WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok(StreamRow {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    profile: r.get(2)?,
                    title: r.get(3)?,
                    client: r.get(4)?,
                    body: r.get(5)?,
                    expires: r.get::<_, i64>(6)? as u64,
                    started: r.get::<_, i64>(7)? as u64,
                    last_seen: r.get::<_, i64>(8)? as u64,
                    ended: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
                })
            })
            .optional()?)
        })
        .await
    }

    async fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        let (id, user) = (id.to_owned(), user.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE streams SET last_seen = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            )?
            .execute(params![id, user, now as i64])?
                == 1)
        })
        .await
    }

    async fn touch_streams(
        &self,
        seen: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        self.update_live_streams("last_seen = MAX(last_seen, ?3)", seen)
            .await
    }

    async fn end_streams(
        &self,
        ended: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        self.update_live_streams("ended = ?3", ended).await
    }

    async fn count_licence(&self, play: &str, max: u32) -> Result<Option<u32>, StoreError> {
        let play = play.to_owned();
        self.write(move |c| {
            let n: Option<i64> = c
                .prepare_cached(
                    "INSERT INTO play_licences (play, count) VALUES (?1, 1)
                     ON CONFLICT(play) DO UPDATE SET count = count + 1 WHERE count < ?2
                     RETURNING count",
                )?
                .query_row(params![play, i64::from(max)], |r| r.get(0))
                .optional()?;
            Ok(n.map(|n| n as u32))
        })
        .await
    }

    async fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        let (id, user) = (id.to_owned(), user.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE streams SET ended = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            )?
            .execute(params![id, user, now as i64])?
                == 1)
        })
        .await
    }

    async fn history(
        &self,
        user: &str,
        profile: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let (user, profile) = (user.to_owned(), profile.to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT title FROM plays WHERE user = ?1 AND profile = ?2
                 GROUP BY title ORDER BY MAX(at) DESC, title LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![user, profile, limit], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn viewing_since(&self, since: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT user, profile, region, title, at FROM plays
                 WHERE at >= ?1 AND user IS NOT NULL ORDER BY at DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since as i64, limit], |r| {
                Ok(Event {
                    profile: format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    region: r.get(2)?,
                    title: r.get(3)?,
                    at: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn plays_since(
        &self,
        region: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let region = region.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT title, at FROM plays WHERE region = ?1 AND at >= ?2 ORDER BY at DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![region, since as i64, limit], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        plan: r.get(1)?,
        subscription: r.get(2)?,
        country: r.get(3)?,
        region: r.get(4)?,
    })
}

impl Sqlite {
    /// `SET {set}` (`?3`: the row's time) on each `(id, user, at)` row's
    /// stream if it is that user's and not ended, in one transaction; the
    /// ids it did not find so.
    async fn update_live_streams(
        &self,
        set: &'static str,
        rows: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        let rows = rows.to_vec();
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "UPDATE streams SET {set} WHERE id = ?1 AND user = ?2 AND ended IS NULL"
            ))?;
            let mut missed = Vec::new();
            for (id, user, at) in rows {
                if stmt.execute(params![id, user, at as i64])? == 0 {
                    missed.push(id);
                }
            }
            Ok(missed)
        })
        .await
    }
}
