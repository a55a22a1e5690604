//! The embedded backend: one SQLite file (WAL, synchronous=FULL, so a
//! committed write survives `kill -9` and power loss), reached without ever
//! blocking a runtime thread.
//!
//! - Reads run on the blocking pool, each on a connection of its own from a
//!   small idle pool: WAL lets them run beside the writer and each other.
//! - Writes go to one writer thread, which commits them in groups: it takes
//!   every write queued while the previous commit was syncing, runs each in a
//!   savepoint of one transaction (a failing write rolls back alone), commits
//!   once, then answers each. One fsync then covers a whole group, so plays
//!   that arrive together wait for one disk flush instead of queueing for one
//!   each (what capped the play API at a few hundred a second). No write is
//!   answered before the commit that holds it is durable.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::StoreError;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many
/// ran. The PostgreSQL backend keeps the same list, step for step, in its
/// dialect (`postgres::MIGRATIONS`). Tables by owner: fleet (appliances,
/// inventory, inventory_meta, signing_keys, fill_plans, learned_prefixes,
/// rib, rib_meta), viewers (users, profiles, viewer_tokens, streams), shared
/// (the catalog: titles, renditions, objects, title_manifests; the demand log
/// `plays`, written by plays and read by fill planning).
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: registry, inventory, keys.
    "CREATE TABLE appliances (
         id TEXT PRIMARY KEY,
         info TEXT NOT NULL,
         credential_sha256 TEXT NOT NULL,
         registered_at INTEGER NOT NULL
     );
     CREATE TABLE inventory (
         appliance TEXT NOT NULL,
         rendition TEXT NOT NULL,
         objects INTEGER NOT NULL,
         bytes INTEGER NOT NULL,
         PRIMARY KEY (appliance, rendition)
     );
     CREATE TABLE inventory_meta (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         digest TEXT NOT NULL
     );
     CREATE TABLE signing_keys (
         id TEXT PRIMARY KEY,
         secret TEXT NOT NULL,
         not_before INTEGER,
         not_after INTEGER,
         created INTEGER NOT NULL
     );",
    // 2: the catalog.
    "CREATE TABLE titles (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         regions TEXT NOT NULL,
         release_time INTEGER
     );
     CREATE TABLE renditions (
         id TEXT PRIMARY KEY,
         title TEXT NOT NULL REFERENCES titles(id),
         kind TEXT NOT NULL,
         codec TEXT,
         width INTEGER,
         height INTEGER,
         bandwidth INTEGER NOT NULL,
         container TEXT NOT NULL,
         segment_duration REAL NOT NULL
     );
     CREATE TABLE objects (
         key TEXT PRIMARY KEY,
         rendition TEXT NOT NULL REFERENCES renditions(id),
         size INTEGER NOT NULL,
         sha256 TEXT NOT NULL
     );
     CREATE INDEX objects_by_rendition ON objects(rendition);",
    // 3: packaged manifests, accounts, streams, plays.
    "ALTER TABLE renditions ADD COLUMN protocol TEXT NOT NULL DEFAULT 'hls';
     CREATE TABLE title_manifests (
         title TEXT NOT NULL REFERENCES titles(id),
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         body TEXT NOT NULL,
         PRIMARY KEY (title, kind)
     );
     CREATE TABLE users (
         id TEXT PRIMARY KEY,
         plan TEXT NOT NULL,
         subscription TEXT NOT NULL,
         country TEXT NOT NULL,
         region TEXT NOT NULL,
         created INTEGER NOT NULL
     );
     CREATE TABLE profiles (
         user TEXT NOT NULL REFERENCES users(id),
         id TEXT NOT NULL,
         name TEXT NOT NULL,
         PRIMARY KEY (user, id)
     );
     CREATE TABLE viewer_tokens (
         sha256 TEXT PRIMARY KEY,
         user TEXT NOT NULL REFERENCES users(id),
         created INTEGER NOT NULL,
         expires INTEGER NOT NULL
     );
     CREATE TABLE streams (
         id TEXT PRIMARY KEY,
         user TEXT NOT NULL,
         profile TEXT NOT NULL,
         title TEXT NOT NULL,
         client TEXT NOT NULL,
         body TEXT NOT NULL,
         expires INTEGER NOT NULL,
         started INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         ended INTEGER
     );
     CREATE INDEX streams_by_user ON streams(user, last_seen);
     CREATE TABLE plays (
         title TEXT NOT NULL,
         region TEXT NOT NULL,
         at INTEGER NOT NULL
     );
     CREATE INDEX plays_by_region ON plays(region, at);",
    // 4: fill plans: the version an appliance was last handed, and what it covered.
    "CREATE TABLE fill_plans (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         digest TEXT NOT NULL,
         generated INTEGER NOT NULL
     );
     CREATE INDEX plays_by_time ON plays(at);",
    // 5: client prefixes appliances learned over BGP; a prefix → origin-ASN
    // table imported from an MRT RIB dump.
    "CREATE TABLE learned_prefixes (
         appliance TEXT PRIMARY KEY,
         version INTEGER NOT NULL,
         prefixes TEXT NOT NULL
     );
     CREATE TABLE rib (
         prefix TEXT PRIMARY KEY,
         origin_asn INTEGER NOT NULL
     );
     CREATE TABLE rib_meta (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         generation INTEGER NOT NULL
     );",
    // 6: whether an appliance's info came from its own registration (then a
    // restart keeps it over the config's declaration).
    "ALTER TABLE appliances ADD COLUMN registered INTEGER NOT NULL DEFAULT 0;",
    // 7: the readiness probe's row (see `Probe`).
    "CREATE TABLE health_probe (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         at INTEGER NOT NULL
     );",
    // 8: old streams are pruned by age in the background (`prune`), not by
    // every play; this index keeps that a range delete.
    "CREATE INDEX streams_by_last_seen ON streams(last_seen);",
    // 9: several instances on one store (`fleet::cluster`): who is alive, the
    // appliances' live state (reports and up/down verdicts) shared between
    // them, and a short log of what changed for the others to follow.
    "CREATE TABLE instances (
         id TEXT PRIMARY KEY,
         region TEXT NOT NULL,
         started_ms INTEGER NOT NULL,
         beat_ms INTEGER NOT NULL
     );
     CREATE TABLE appliance_live (
         appliance TEXT PRIMARY KEY,
         report TEXT,
         report_ms INTEGER NOT NULL,
         up INTEGER NOT NULL,
         up_ms INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         written_by TEXT NOT NULL
     );
     CREATE INDEX appliance_live_by_update ON appliance_live(updated_ms);
     CREATE TABLE fleet_changes (
         at_ms INTEGER NOT NULL,
         appliance TEXT NOT NULL,
         what TEXT NOT NULL
     );
     CREATE INDEX fleet_changes_by_time ON fleet_changes(at_ms);",
    // 10: a launch's expected audience, for the demand forecast.
    "ALTER TABLE titles ADD COLUMN audience REAL;",
    // 11: content keys (sealed under the KEK) and licences issued per play.
    "CREATE TABLE content_keys (
         title TEXT NOT NULL,
         kid TEXT NOT NULL,
         sealed TEXT NOT NULL,
         created INTEGER NOT NULL,
         PRIMARY KEY (title, kid)
     );
     CREATE TABLE play_licences (
         play TEXT PRIMARY KEY,
         count INTEGER NOT NULL
     );",
    // 12: enrolment (`fleet::enrol`): one-time tokens by digest, where an
    // enrolled appliance was placed, and revocation.
    "ALTER TABLE appliances ADD COLUMN bound TEXT;
     ALTER TABLE appliances ADD COLUMN revoked_at INTEGER;
     CREATE TABLE enrolments (
         token_sha256 TEXT PRIMARY KEY,
         appliance TEXT,
         placement TEXT NOT NULL,
         created INTEGER NOT NULL,
         expires INTEGER NOT NULL,
         used_at INTEGER,
         used_by TEXT,
         used_credential_sha256 TEXT
     );",
    // 13: who played (recommendations learn from each profile's plays).
    "ALTER TABLE plays ADD COLUMN user TEXT;
     ALTER TABLE plays ADD COLUMN profile TEXT;
     CREATE INDEX plays_by_profile ON plays(user, profile, at);",
    // 14: a title's artwork (file names in its directory).
    "ALTER TABLE titles ADD COLUMN artwork TEXT;",
    // 15: what players measured of each path, as each instance's decayed
    // sums, shared between instances (`fleet::measure`).
    "CREATE TABLE path_estimates (
         instance TEXT NOT NULL,
         network TEXT NOT NULL,
         appliance TEXT NOT NULL,
         w REAL NOT NULL,
         tput REAL NOT NULL,
         ttfb REAL NOT NULL,
         err REAL NOT NULL,
         at INTEGER NOT NULL,
         updated_ms INTEGER NOT NULL,
         PRIMARY KEY (instance, network, appliance)
     );
     CREATE INDEX path_estimates_by_update ON path_estimates(updated_ms);",
];

/// The database's clock in milliseconds: instances on several machines agree
/// on it, whatever their own clocks say.
pub(crate) const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Writes queued while a commit syncs are committed together, up to this many.
const MAX_GROUP: usize = 512;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// How long a statement waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    readers: Arc<Mutex<Vec<Connection>>>,
    writer: mpsc::Sender<Box<dyn WriteJob>>,
}

impl Sqlite {
    /// Open (creating) the file, run the migrations, start the writer thread.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        let (writer, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Sqlite {
            path: path.to_owned(),
            readers: Arc::default(),
            writer,
        })
    }

    /// Run `f` on a read connection, on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match idle {
                Some(c) => c,
                None => open_existing(&path)?,
            };
            let result = f(&mut conn);
            // A connection that failed may be broken (file gone): not reused.
            if result.is_ok() {
                let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?
    }

    /// Run `f` inside the writer's next group commit; answered once that
    /// commit is durable (or failed). `f` runs in a savepoint: its own error
    /// rolls back only its own changes.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            f: Some(f),
            result: None,
            reply,
        };
        self.writer
            .send(Box::new(job))
            .map_err(|_| StoreError::Database("the SQLite writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("the SQLite writer thread has stopped".into()))?
    }

    /// The readiness probe's write. Through a connection of its own, opened
    /// by path without creating: the writer would go on writing into a file
    /// that was deleted or whose directory was removed (data lost at the next
    /// start), and would answer only after the writes queued before it. A
    /// busy database (another process holding the lock) fails after a second
    /// instead of waiting.
    pub(crate) async fn probe(&self, now: u64) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(1))?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO health_probe (id, at) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET at = excluded.at",
                params![now as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// A read connection: the file must exist (the writer created it).
fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    Ok(conn)
}

/// A write waiting for its group: run inside the transaction, then told how
/// the commit went.
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Job<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T, StoreError> + Send> WriteJob for Job<T, F> {
    /// Whether it succeeded (else its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool {
        let f = self.f.take().expect("a job runs once");
        // A panicking write must not take the writer thread (and every later
        // write) with it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the write panicked".into())));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let answer = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Database("the write did not run".into())),
            // Its own error says more than the commit's.
            (Err(_), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(StoreError::Database(e.into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// The writer thread: one group per loop, until every `Sqlite` is dropped.
fn write_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let commit = run_group(&conn, &mut group);
        for job in group {
            job.finish(commit.clone());
        }
    }
}

fn run_group(conn: &Connection, group: &mut [Box<dyn WriteJob>]) -> Result<(), String> {
    // Prepared once and kept: a savepoint pair per write, thousands a second.
    let exec = |sql: &str| -> Result<(), String> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    exec("BEGIN IMMEDIATE")?;
    for job in group.iter_mut() {
        let step = exec("SAVEPOINT job").and_then(|()| {
            if !job.run(conn) {
                exec("ROLLBACK TO job")?;
            }
            exec("RELEASE job")
        });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    exec("COMMIT").inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_probe_fails_once_the_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
        s.probe(1).await.unwrap();
        s.probe(2).await.unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(s.probe(3).await.is_err(), "no store at the configured path");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_rolls_back_alone_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Sqlite::open(&dir.path().join("s.db")).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO plays (title, region, at) VALUES ('t', 'r', ?1)",
                        params![i],
                    )?;
                    if i % 10 == 0 {
                        return Err(StoreError::Corrupt(format!("refused {i}")));
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, i as i64);
                    ok += 1;
                }
                Err(e) => assert!(i % 10 == 0, "{i}: {e}"),
            }
        }
        assert_eq!(ok, 180);
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM plays", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            n, 180,
            "the refused writes left nothing, the others all landed"
        );
    }
}
