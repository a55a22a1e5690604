//! Resume positions, in a store of their own (a separate SQLite file) reached
//! only through a `Guard`: when it is slow or gone, plays start from the
//! beginning and bookmark updates are refused, but nothing else waits on it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::deps::{DepError, Guard};

pub struct Bookmarks {
    path: PathBuf,
    busy_timeout: Duration,
    /// Opened on first use and reopened after an error, so a store that was
    /// missing at start is picked up once it is back.
    conn: Arc<Mutex<Option<Connection>>>,
    pub guard: Guard,
}

/// One resume point.
#[derive(Debug, Clone, PartialEq)]
pub struct Bookmark {
    pub title: String,
    pub position: f64,
    pub updated: u64,
}

impl Bookmarks {
    pub fn new(path: PathBuf, guard: Guard, busy_timeout: Duration) -> Bookmarks {
        Bookmarks {
            path,
            busy_timeout,
            conn: Arc::new(Mutex::new(None)),
            guard,
        }
    }

    /// Run `f` on the connection on the blocking pool, under the guard.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DepError> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        let busy = self.busy_timeout;
        let work = tokio::task::spawn_blocking(move || {
            let mut slot = conn.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(open(&path, busy)?);
            }
            let result = f(slot.as_ref().expect("opened above"));
            if result.is_err() {
                *slot = None;
            }
            result
        });
        self.guard
            .call(async move {
                match work.await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
    }

    pub async fn get(&self, user: &str, profile: &str, title: &str) -> Result<f64, DepError> {
        let (u, p, t) = (user.to_owned(), profile.to_owned(), title.to_owned());
        self.with(move |c| {
            c.query_row(
                "SELECT position FROM bookmarks WHERE user = ?1 AND profile = ?2 AND title = ?3",
                params![u, p, t],
                |r| r.get::<_, f64>(0),
            )
            .optional()
            .map(|p| p.unwrap_or(0.0))
        })
        .await
    }

    pub async fn put(
        &self,
        user: &str,
        profile: &str,
        title: &str,
        position: f64,
        now: u64,
    ) -> Result<(), DepError> {
        let (u, p, t) = (user.to_owned(), profile.to_owned(), title.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO bookmarks (user, profile, title, position, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user, profile, title) DO UPDATE SET position = excluded.position, updated = excluded.updated",
                params![u, p, t, position, now as i64],
            )
            .map(drop)
        })
        .await
    }

    /// A profile's most recent bookmarks, newest first (the continue-watching row).
    pub async fn recent(
        &self,
        user: &str,
        profile: &str,
        limit: u32,
    ) -> Result<Vec<Bookmark>, DepError> {
        let (u, p) = (user.to_owned(), profile.to_owned());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT title, position, updated FROM bookmarks WHERE user = ?1 AND profile = ?2
                 ORDER BY updated DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![u, p, limit], |r| {
                Ok(Bookmark {
                    title: r.get(0)?,
                    position: r.get(1)?,
                    updated: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

fn open(path: &std::path::Path, busy: Duration) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    // A locked store answers within the guard's timeout instead of holding a
    // blocking thread for SQLite's default.
    c.busy_timeout(busy)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS bookmarks (
             user TEXT NOT NULL,
             profile TEXT NOT NULL,
             title TEXT NOT NULL,
             position REAL NOT NULL,
             updated INTEGER NOT NULL,
             PRIMARY KEY (user, profile, title)
         );",
    )?;
    Ok(c)
}
