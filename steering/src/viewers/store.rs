//! The viewers half's part of the store: accounts, profiles, viewer tokens and
//! streams; and the demand log (`plays`), which a started stream appends to and
//! home rows read (fill planning reads it too, from the fleet's part).

use rusqlite::{OptionalExtension, params};

use crate::store::{CatalogStore, Sqlite, StoreError};

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

/// What the viewers half persists, whichever backend holds it.
pub trait ViewerStore: CatalogStore {
    /// Create a user with its profiles; fails if the id exists.
    fn add_user(
        &self,
        u: &UserRow,
        profiles: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError>;
    /// Change a user's plan, subscription or home; false if there is no such user.
    fn update_user(&self, u: &UserRow) -> Result<bool, StoreError>;
    fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError>;
    fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError>;
    fn users(&self) -> Result<Vec<UserRow>, StoreError>;
    /// `(id, name)` of a user's profiles.
    fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Record a viewer token by its hash (the token itself is never stored).
    fn add_viewer_token(
        &self,
        sha256: &str,
        user: &str,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError>;
    /// The user a (hashed) viewer token belongs to, if it has not expired.
    fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError>;
    /// Start a stream if the user has fewer than `max_streams` active ones
    /// (seen since `active_since`); the count and the insert are one
    /// transaction, so two plays racing cannot both take the last slot. The play
    /// is recorded for popularity in the same transaction.
    /// Returns the active count when the limit is reached.
    fn start_stream(
        &self,
        s: &StreamRow,
        region: &str,
        max_streams: u32,
        active_since: u64,
    ) -> Result<Result<(), u32>, StoreError>;
    fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError>;
    /// Keep a stream counted as active; false if it is not the user's or has ended.
    fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError>;
    /// End a stream (the player stopped); false if it is not the user's.
    fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError>;
    /// `(title, at)` of plays in `region` since `since`, newest first, at most `limit`.
    fn plays_since(
        &self,
        region: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

impl ViewerStore for Sqlite {
    fn add_user(
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

    fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE users SET plan = ?2, subscription = ?3, country = ?4, region = ?5 WHERE id = ?1",
            params![u.id, u.plan, u.subscription, u.country, u.region],
        )? == 1)
    }

    fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO profiles (user, id, name) VALUES (?1, ?2, ?3)",
            params![user, id, name],
        )?;
        Ok(())
    }

    fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, plan, subscription, country, region FROM users WHERE id = ?1",
                params![id],
                user_row,
            )
            .optional()?)
    }

    fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, plan, subscription, country, region FROM users ORDER BY id")?;
        let rows = stmt.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name FROM profiles WHERE user = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_viewer_token(
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

    fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError> {
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

    fn start_stream(
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

    fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError> {
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

    fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE streams SET last_seen = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            params![id, user, now as i64],
        )? == 1)
    }

    fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE streams SET ended = ?3 WHERE id = ?1 AND user = ?2 AND ended IS NULL",
            params![id, user, now as i64],
        )? == 1)
    }

    fn plays_since(
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
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
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
