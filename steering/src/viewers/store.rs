//! Accounts, viewer tokens, streams and plays; and titles as plays read them.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A subscriber account: just enough to authorise a play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub plan: String,
    /// `active`, `suspended` or `cancelled`.
    pub subscription: String,
    pub country: String,
    pub region: String,
}

/// A play in progress. `body` is the play's issued state (renditions and
/// pathways with their signed base URLs) as JSON, so manifests can be rebuilt
/// after a restart exactly as first handed out.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub id: String,
    pub user: String,
    pub profile: String,
    pub title: String,
    pub client: String,
    pub body: String,
    pub expires: u64,
    pub started: u64,
    pub last_seen: u64,
}

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

impl Store {
    /// Create a user with its profiles; fails if the id exists.
    pub fn add_user(
        &self,
        u: &UserRow,
        profiles: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO users (id, plan, subscription, country, region, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![u.id, u.plan, u.subscription, u.country, u.region, now as i64],
        )?;
        for (id, name) in profiles {
            tx.execute(
                "INSERT INTO profiles (user, id, name) VALUES (?1, ?2, ?3)",
                params![u.id, id, name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Change a user's plan, subscription or home; false if there is no such user.
    pub fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE users SET plan = ?2, subscription = ?3, country = ?4, region = ?5 WHERE id = ?1",
            params![u.id, u.plan, u.subscription, u.country, u.region],
        )? == 1)
    }

    pub fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO profiles (user, id, name) VALUES (?1, ?2, ?3)",
            params![user, id, name],
        )?;
        Ok(())
    }

    pub fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, plan, subscription, country, region FROM users WHERE id = ?1",
                params![id],
                user_row,
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, plan, subscription, country, region FROM users ORDER BY id")?;
        let rows = stmt.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `(id, name)` of a user's profiles.
    pub fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name FROM profiles WHERE user = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record a viewer token by its hash (the token itself is never stored).
    pub fn add_viewer_token(
        &self,
        sha256: &str,
        user: &str,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO viewer_tokens (sha256, user, created, expires) VALUES (?1, ?2, ?3, ?4)",
            params![sha256, user, now as i64, expires as i64],
        )?;
        Ok(())
    }

    /// The user a (hashed) viewer token belongs to, if it has not expired.
    pub fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT u.id, u.plan, u.subscription, u.country, u.region FROM viewer_tokens t
                 JOIN users u ON u.id = t.user WHERE t.sha256 = ?1 AND t.expires > ?2",
                params![sha256, now as i64],
                user_row,
            )
            .optional()?)
    }

    /// Start a stream if the user has fewer than `max_streams` active ones
    /// (seen since `active_since`); the count and the insert are one
    /// transaction, so two plays racing cannot both take the last slot. The play
    /// is recorded for popularity in the same transaction.
    /// Returns the active count when the limit is reached.
    pub fn start_stream(
        &self,
        s: &StreamRow,
        region: &str,
        max_streams: u32,
        active_since: u64,
    ) -> Result<Result<(), u32>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let active: i64 = tx.query_row(
            "SELECT COUNT(*) FROM streams WHERE user = ?1 AND ended IS NULL AND last_seen >= ?2",
            params![s.user, active_since as i64],
            |r| r.get(0),
        )?;
        if active >= max_streams as i64 {
            return Ok(Err(active as u32));
        }
        tx.execute(
            "INSERT INTO streams (id, user, profile, title, client, body, expires, started, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![s.id, s.user, s.profile, s.title, s.client, s.body, s.expires as i64, s.started as i64, s.last_seen as i64],
        )?;
        tx.execute(
            "INSERT INTO plays (title, region, at) VALUES (?1, ?2, ?3)",
            params![s.title, region, s.started as i64],
        )?;
        // Old streams are kept a day for inspection, then dropped here, where
        // the table is written anyway.
        tx.execute(
            "DELETE FROM streams WHERE last_seen < ?1",
            params![s.started.saturating_sub(86_400) as i64],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    pub fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, user, profile, title, client, body, expires, started, last_seen FROM streams WHERE id = ?1",
                params![id],
                |r| {
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
                    })
                },
            )
            .optional()?)
    }

    /// Keep a stream counted as active; false if it is not the user's or has ended.
    pub fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE streams SET last_seen = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            params![id, user, now as i64],
        )? == 1)
    }

    /// End a stream (the player stopped); false if it is not the user's.
    pub fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE streams SET ended = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            params![id, user, now as i64],
        )? == 1)
    }

    /// `(title, at)` of plays in `region` since `since`, newest first, at most `limit`.
    pub fn plays_since(
        &self,
        region: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT title, at FROM plays WHERE region = ?1 AND at >= ?2 ORDER BY at DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![region, since as i64, limit], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A title with its renditions and packaged manifests.
    pub fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError> {
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
        let regions: Vec<String> = serde_json::from_str(&regions)
            .map_err(|e| StoreError::Corrupt(format!("title {id}: {e}")))?;
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

    /// `(id, name, regions)` of every title.
    pub fn title_names(&self) -> Result<Vec<(String, String, Vec<String>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, regions FROM titles ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, regions) = row?;
            let regions = serde_json::from_str(&regions)
                .map_err(|e| StoreError::Corrupt(format!("title {id}: {e}")))?;
            out.push((id, name, regions));
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: &str, user: &str, at: u64) -> StreamRow {
        StreamRow {
            id: id.into(),
            user: user.into(),
            profile: "main".into(),
            title: "t1".into(),
            client: "127.0.0.1".into(),
            body: "{}".into(),
            expires: at + 3600,
            started: at,
            last_seen: at,
        }
    }

    #[test]
    fn stream_limit_counts_only_live_streams() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let u = UserRow {
            id: "u".into(),
            plan: "basic".into(),
            subscription: "active".into(),
            country: "NL".into(),
            region: "eu-west".into(),
        };
        s.add_user(&u, &[("main".into(), "Main".into())], 0)
            .unwrap();
        assert_eq!(
            s.start_stream(&stream("a", "u", 1000), "eu-west", 1, 900)
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            s.start_stream(&stream("b", "u", 1010), "eu-west", 1, 910)
                .unwrap(),
            Err(1),
            "one live stream already"
        );
        // No heartbeat since 1000: once the window moves past it, it stops counting.
        assert_eq!(
            s.start_stream(&stream("c", "u", 1200), "eu-west", 1, 1100)
                .unwrap(),
            Ok(())
        );
        // A bookmark keeps a stream alive; ending one frees its slot.
        assert!(s.touch_stream("c", "u", 1300).unwrap());
        assert!(!s.touch_stream("c", "someone-else", 1300).unwrap());
        assert_eq!(
            s.start_stream(&stream("d", "u", 1350), "eu-west", 1, 1250)
                .unwrap(),
            Err(1)
        );
        assert!(s.end_stream("c", "u", 1360).unwrap());
        assert!(
            !s.touch_stream("c", "u", 1370).unwrap(),
            "ended streams stay ended"
        );
        assert_eq!(
            s.start_stream(&stream("e", "u", 1380), "eu-west", 1, 1280)
                .unwrap(),
            Ok(())
        );
        // Every started play is recorded for popularity.
        assert_eq!(s.plays_since("eu-west", 0, 10).unwrap().len(), 3);
        assert!(s.plays_since("us-east", 0, 10).unwrap().is_empty());
        // Tokens resolve by hash and only until they expire.
        s.add_viewer_token("h", "u", 0, 100).unwrap();
        assert_eq!(s.user_by_token("h", 99).unwrap(), Some(u));
        assert_eq!(s.user_by_token("h", 100).unwrap(), None);
    }
}
