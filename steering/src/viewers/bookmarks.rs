//! Resume positions, in a store of their own reached only through a `Guard`:
//! when it is slow or gone, plays start from the beginning and bookmark
//! updates are refused, but nothing else waits on it. Either a separate
//! SQLite file (one instance) or a table in PostgreSQL with its own pool
//! (every instance reads and writes the same positions).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::deps::{DepError, Guard};
use crate::store::Location;

pub struct Bookmarks {
    backend: Backend,
    pub guard: Guard,
}

enum Backend {
    Sqlite {
        path: PathBuf,
        busy_timeout: Duration,
        /// Reads (a play's resume position, the continue-watching row) and
        /// writes each have a connection: in WAL mode a reader never waits
        /// for a writer, so a play does not wait behind a heartbeat flush's
        /// batch of positions. Each is opened on first use and reopened
        /// after an error, so a store that was missing at start is picked up
        /// once it is back.
        reader: Arc<Mutex<Option<Connection>>>,
        writer: Arc<Mutex<Option<Connection>>>,
    },
    Postgres {
        pool: deadpool_postgres::Pool,
        /// The table exists (created on first use, like SQLite's).
        ready: AtomicBool,
    },
}

/// Which SQLite connection a call uses.
#[derive(Clone, Copy)]
enum Role {
    Read,
    Write,
}

/// One resume point.
#[derive(Debug, Clone, PartialEq)]
pub struct Bookmark {
    pub title: String,
    pub position: f64,
    pub updated: u64,
}

const PG_TABLE: &str = "CREATE TABLE IF NOT EXISTS bookmarks (
    \"user\" TEXT NOT NULL,
    profile TEXT NOT NULL,
    title TEXT NOT NULL,
    position DOUBLE PRECISION NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (\"user\", profile, title)
)";

impl Bookmarks {
    /// The store at `location`; nothing is opened until first use. A
    /// PostgreSQL URL that does not parse is refused by config validation,
    /// so here it only fails if its TLS setup cannot be built.
    pub fn new(location: Location, guard: Guard, busy_timeout: Duration) -> Bookmarks {
        let backend = match location {
            Location::Sqlite(path) => Backend::Sqlite {
                path,
                busy_timeout,
                reader: Arc::default(),
                writer: Arc::default(),
            },
            Location::Postgres(url) => match crate::store::postgres::pool(&url, 4) {
                Ok(pool) => Backend::Postgres {
                    pool,
                    ready: AtomicBool::new(false),
                },
                Err(e) => {
                    tracing::error!(error = %e, "bookmark store unusable; plays start from the beginning");
                    Backend::Sqlite {
                        path: PathBuf::from("/nonexistent/bookmarks.db"),
                        busy_timeout,
                        reader: Arc::default(),
                        writer: Arc::default(),
                    }
                }
            },
        };
        Bookmarks { backend, guard }
    }

    /// Run `f` on the SQLite connection for `role` on the blocking pool,
    /// under the guard.
    async fn sqlite<T: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DepError> {
        let Backend::Sqlite {
            path,
            busy_timeout,
            reader,
            writer,
        } = &self.backend
        else {
            unreachable!("called for the SQLite backend only");
        };
        let conn = match role {
            Role::Read => reader,
            Role::Write => writer,
        };
        let (conn, path, busy) = (Arc::clone(conn), path.clone(), *busy_timeout);
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

    /// A pooled PostgreSQL connection with the table in place, under the guard.
    async fn postgres<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DepError> {
        let Backend::Postgres { pool, ready } = &self.backend else {
            unreachable!("called for the PostgreSQL backend only");
        };
        self.guard
            .call(async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                if !ready.load(Ordering::Acquire) {
                    client
                        .batch_execute(PG_TABLE)
                        .await
                        .map_err(|e| e.to_string())?;
                    ready.store(true, Ordering::Release);
                }
                f(&client).await.map_err(|e| e.to_string())
            })
            .await
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    pub async fn get(&self, user: &str, profile: &str, title: &str) -> Result<f64, DepError> {
        if self.is_postgres() {
            return self
                .postgres(async |c| {
                    // Prepared once per connection: every play reads one.
                    let stmt = c
                        .prepare_cached(
                            "SELECT position FROM bookmarks
                             WHERE \"user\" = $1 AND profile = $2 AND title = $3",
                        )
                        .await?;
                    let row = c.query_opt(&stmt, &[&user, &profile, &title]).await?;
                    Ok(row.map_or(0.0, |r| r.get::<_, f64>(0)))
                })
                .await;
        }
        let (u, p, t) = (user.to_owned(), profile.to_owned(), title.to_owned());
        self.sqlite(Role::Read, move |c| {
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
        if self.is_postgres() {
            return self
                .postgres(async |c| {
                    let stmt = c
                        .prepare_cached(
                            "INSERT INTO bookmarks (\"user\", profile, title, position, updated)
                             VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (\"user\", profile, title) DO UPDATE
                                 SET position = excluded.position, updated = excluded.updated",
                        )
                        .await?;
                    c.execute(&stmt, &[&user, &profile, &title, &position, &(now as i64)])
                        .await
                        .map(drop)
                })
                .await;
        }
        let (u, p, t) = (user.to_owned(), profile.to_owned(), title.to_owned());
        self.sqlite(Role::Write, move |c| {
            c.execute(
                "INSERT INTO bookmarks (user, profile, title, position, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user, profile, title) DO UPDATE SET position = excluded.position, updated = excluded.updated",
                params![u, p, t, position, now as i64],
            )
            .map(drop)
        })
        .await
    }

    /// Many positions in one transaction (heartbeats' batched writes). A
    /// batched position never replaces one written in the same second or
    /// later (an `ended` heartbeat's, written at once while a flush that had
    /// taken an older one was under way).
    pub async fn put_many(&self, marks: &[super::beats::Mark]) -> Result<(), DepError> {
        if self.is_postgres() {
            let users: Vec<&str> = marks.iter().map(|m| m.user.as_str()).collect();
            let profiles: Vec<&str> = marks.iter().map(|m| m.profile.as_str()).collect();
            let titles: Vec<&str> = marks.iter().map(|m| m.title.as_str()).collect();
            let positions: Vec<f64> = marks.iter().map(|m| m.position).collect();
            let ats: Vec<i64> = marks.iter().map(|m| m.at as i64).collect();
            return self
                .postgres(async |c| {
                    let stmt = c
                        .prepare_cached(
                            "INSERT INTO bookmarks (\"user\", profile, title, position, updated)
                             SELECT * FROM unnest($1::text[], $2::text[], $3::text[],
                                                  $4::float8[], $5::bigint[])
                             ON CONFLICT (\"user\", profile, title) DO UPDATE
                                 SET position = excluded.position, updated = excluded.updated
                                 WHERE excluded.updated > bookmarks.updated",
                        )
                        .await?;
                    c.execute(&stmt, &[&users, &profiles, &titles, &positions, &ats])
                        .await
                        .map(drop)
                })
                .await;
        }
        let marks = marks.to_vec();
        self.sqlite(Role::Write, move |c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO bookmarks (user, profile, title, position, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(user, profile, title) DO UPDATE SET position = excluded.position, updated = excluded.updated
                     WHERE excluded.updated > bookmarks.updated",
                )?;
                for m in &marks {
                    stmt.execute(params![m.user, m.profile, m.title, m.position, m.at as i64])?;
                }
            }
            tx.commit()
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
        if self.is_postgres() {
            return self
                .postgres(async |c| {
                    let stmt = c
                        .prepare_cached(
                            "SELECT title, position, updated FROM bookmarks
                             WHERE \"user\" = $1 AND profile = $2
                             ORDER BY updated DESC LIMIT $3",
                        )
                        .await?;
                    let rows = c.query(&stmt, &[&user, &profile, &(limit as i64)]).await?;
                    Ok(rows
                        .iter()
                        .map(|r| Bookmark {
                            title: r.get(0),
                            position: r.get(1),
                            updated: r.get::<_, i64>(2) as u64,
                        })
                        .collect())
                })
                .await;
        }
        let (u, p) = (user.to_owned(), profile.to_owned());
        self.sqlite(Role::Read, move |c| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BookmarksConfig;
    use crate::viewers::beats::Mark;

    fn bookmarks(location: Location) -> Bookmarks {
        let cfg = BookmarksConfig::default();
        let guard = Guard::new("bookmarks", &cfg.guard(), &crate::metrics::Metrics::new());
        Bookmarks::new(location, guard, cfg.timeout)
    }

    fn mark(title: &str, position: f64, at: u64) -> Mark {
        Mark {
            user: "u".into(),
            profile: "main".into(),
            title: title.into(),
            position,
            at,
        }
    }

    /// Heartbeats' batched positions: written together, a later batch
    /// moving a position on, as single puts do.
    async fn batches_write_every_position(b: Bookmarks) {
        b.put_many(&[mark("t1", 12.0, 100), mark("t2", 30.5, 101)])
            .await
            .unwrap();
        assert_eq!(b.get("u", "main", "t1").await.unwrap(), 12.0);
        assert_eq!(b.get("u", "main", "t2").await.unwrap(), 30.5);
        b.put_many(&[mark("t1", 40.0, 110)]).await.unwrap();
        assert_eq!(b.get("u", "main", "t1").await.unwrap(), 40.0);
        let recent = b.recent("u", "main", 10).await.unwrap();
        assert_eq!(recent[0].title, "t1");
        assert_eq!(recent[0].updated, 110);
        // A position written at once (a play's end) is not replaced by an
        // older or same-second one a flush had taken.
        b.put("u", "main", "t1", 55.0, 120).await.unwrap();
        b.put_many(&[mark("t1", 41.0, 118), mark("t2", 31.0, 120)])
            .await
            .unwrap();
        b.put_many(&[mark("t1", 42.0, 120)]).await.unwrap();
        assert_eq!(b.get("u", "main", "t1").await.unwrap(), 55.0);
        assert_eq!(b.get("u", "main", "t2").await.unwrap(), 31.0);
    }

    #[tokio::test]
    async fn sqlite_batches() {
        let dir = tempfile::tempdir().unwrap();
        batches_write_every_position(bookmarks(Location::Sqlite(dir.path().join("b.db")))).await;
    }

    /// A play's read of its resume position does not wait while a
    /// heartbeat flush's batch holds the write connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_does_not_wait_for_a_write_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let b = bookmarks(Location::Sqlite(dir.path().join("b.db")));
        b.put("u", "main", "t1", 7.0, 100).await.unwrap();
        let Backend::Sqlite { writer, .. } = &b.backend else {
            unreachable!()
        };
        let (writer, (locked_tx, locked), (release, wait)) = (
            Arc::clone(writer),
            std::sync::mpsc::channel(),
            std::sync::mpsc::channel::<()>(),
        );
        let holder = std::thread::spawn(move || {
            let busy = writer.lock().unwrap();
            locked_tx.send(()).unwrap();
            let _ = wait.recv();
            drop(busy);
        });
        locked.recv().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), b.get("u", "main", "t1")).await;
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(got.expect("the read waited for the writer").unwrap(), 7.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_batches() {
        let server = tokio::task::spawn_blocking(temp_postgres::Server::start)
            .await
            .unwrap()
            .expect("start PostgreSQL (scripts/test.sh installs it)");
        server.create_database("marks").unwrap();
        batches_write_every_position(bookmarks(Location::Postgres(server.url("marks")))).await;
    }
}
