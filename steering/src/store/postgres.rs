//! The shared backend: a PostgreSQL database that several steering instances
//! (in several regions) use at once, through an async pool (deadpool over
//! tokio-postgres), with TLS by rustls when the URL's `sslmode` asks for it.
//!
//! Concurrency is the database's: every write is one transaction, and what
//! must not interleave across instances takes a lock the database holds (a
//! row lock, or an advisory lock named in `Lock`). Durability is its too:
//! `synchronous_commit` stays on, and commits arriving together share a WAL
//! flush, so a started stream is never acknowledged before it is on disk.
//!
//! The URL may name several hosts (`postgres://a:5432,b:5432/db?
//! target_session_attrs=read-write`): connections then go to whichever is
//! the writable primary, so a standby promoted after the primary failed is
//! found by the next connection without restarting steering.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;

use super::StoreError;

/// Schema migrations, applied in order, each in a transaction recorded in
/// `schema_migrations`. Step for step the same as SQLite's list
/// (`sqlite::MIGRATIONS`), in this dialect: BIGINT for every integer, the
/// column `user` quoted (a reserved word here), an identity column where
/// SQLite's rowid gives import order.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: registry, inventory, keys.
    "CREATE TABLE appliances (
         id TEXT PRIMARY KEY,
         info TEXT NOT NULL,
         credential_sha256 TEXT NOT NULL,
         registered_at BIGINT NOT NULL
     );
     CREATE TABLE inventory (
         appliance TEXT NOT NULL,
         rendition TEXT NOT NULL,
         objects BIGINT NOT NULL,
         bytes BIGINT NOT NULL,
         PRIMARY KEY (appliance, rendition)
     );
     CREATE TABLE inventory_meta (
         appliance TEXT PRIMARY KEY,
         version BIGINT NOT NULL,
         digest TEXT NOT NULL
     );
     CREATE TABLE signing_keys (
         id TEXT PRIMARY KEY,
         secret TEXT NOT NULL,
         not_before BIGINT,
         not_after BIGINT,
         created BIGINT NOT NULL
     );",
    // 2: the catalog.
    "CREATE TABLE titles (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         regions TEXT NOT NULL,
         release_time BIGINT
     );
     CREATE TABLE renditions (
         id TEXT PRIMARY KEY,
         title TEXT NOT NULL REFERENCES titles(id),
         kind TEXT NOT NULL,
         codec TEXT,
         width BIGINT,
         height BIGINT,
         bandwidth BIGINT NOT NULL,
         container TEXT NOT NULL,
         segment_duration DOUBLE PRECISION NOT NULL
     );
     CREATE TABLE objects (
         key TEXT PRIMARY KEY,
         rendition TEXT NOT NULL REFERENCES renditions(id),
         size BIGINT NOT NULL,
         sha256 TEXT NOT NULL,
         seq BIGINT GENERATED ALWAYS AS IDENTITY
     );
     CREATE INDEX objects_by_rendition ON objects(rendition, seq);",
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
         created BIGINT NOT NULL
     );
     CREATE TABLE profiles (
         \"user\" TEXT NOT NULL REFERENCES users(id),
         id TEXT NOT NULL,
         name TEXT NOT NULL,
         PRIMARY KEY (\"user\", id)
     );
     CREATE TABLE viewer_tokens (
         sha256 TEXT PRIMARY KEY,
         \"user\" TEXT NOT NULL REFERENCES users(id),
         created BIGINT NOT NULL,
         expires BIGINT NOT NULL
     );
     CREATE TABLE streams (
         id TEXT PRIMARY KEY,
         \"user\" TEXT NOT NULL,
         profile TEXT NOT NULL,
         title TEXT NOT NULL,
         client TEXT NOT NULL,
         body TEXT NOT NULL,
         expires BIGINT NOT NULL,
         started BIGINT NOT NULL,
         last_seen BIGINT NOT NULL,
         ended BIGINT
     );
     CREATE INDEX streams_by_user ON streams(\"user\", last_seen);
     CREATE TABLE plays (
         title TEXT NOT NULL,
         region TEXT NOT NULL,
         at BIGINT NOT NULL
     );
     CREATE INDEX plays_by_region ON plays(region, at);",
    // 4: fill plans.
    "CREATE TABLE fill_plans (
         appliance TEXT PRIMARY KEY,
         version BIGINT NOT NULL,
         digest TEXT NOT NULL,
         generated BIGINT NOT NULL
     );
     CREATE INDEX plays_by_time ON plays(at);",
    // 5: learned prefixes and the RIB.
    "CREATE TABLE learned_prefixes (
         appliance TEXT PRIMARY KEY,
         version BIGINT NOT NULL,
         prefixes TEXT NOT NULL
     );
     CREATE TABLE rib (
         prefix TEXT PRIMARY KEY,
         origin_asn BIGINT NOT NULL
     );
     CREATE TABLE rib_meta (
         id BIGINT PRIMARY KEY CHECK (id = 1),
         generation BIGINT NOT NULL
     );",
    // 6: registered appliances.
    "ALTER TABLE appliances ADD COLUMN registered BIGINT NOT NULL DEFAULT 0;",
    // 7: the readiness probe's row.
    "CREATE TABLE health_probe (
         id BIGINT PRIMARY KEY CHECK (id = 1),
         at BIGINT NOT NULL
     );",
    // 8: pruning streams by age.
    "CREATE INDEX streams_by_last_seen ON streams(last_seen);",
    // 9: several instances on one store.
    "CREATE TABLE instances (
         id TEXT PRIMARY KEY,
         region TEXT NOT NULL,
         started_ms BIGINT NOT NULL,
         beat_ms BIGINT NOT NULL
     );
     CREATE TABLE appliance_live (
         appliance TEXT PRIMARY KEY,
         report TEXT,
         report_ms BIGINT NOT NULL,
         up BIGINT NOT NULL,
         up_ms BIGINT NOT NULL,
         updated_ms BIGINT NOT NULL,
         written_by TEXT NOT NULL
     );
     CREATE INDEX appliance_live_by_update ON appliance_live(updated_ms);
     CREATE TABLE fleet_changes (
         at_ms BIGINT NOT NULL,
         appliance TEXT NOT NULL,
         what TEXT NOT NULL
     );
     CREATE INDEX fleet_changes_by_time ON fleet_changes(at_ms);",
    // 10: a launch's expected audience.
    "ALTER TABLE titles ADD COLUMN audience DOUBLE PRECISION;",
    // 11: content keys and licences per play.
    "CREATE TABLE content_keys (
         title TEXT NOT NULL,
         kid TEXT NOT NULL,
         sealed TEXT NOT NULL,
         created BIGINT NOT NULL,
         PRIMARY KEY (title, kid)
     );
     CREATE TABLE play_licences (
         play TEXT PRIMARY KEY,
         count BIGINT NOT NULL
     );",
    // 12: enrolment.
    "ALTER TABLE appliances ADD COLUMN bound TEXT;
     ALTER TABLE appliances ADD COLUMN revoked_at BIGINT;
     CREATE TABLE enrolments (
         token_sha256 TEXT PRIMARY KEY,
         appliance TEXT,
         placement TEXT NOT NULL,
         created BIGINT NOT NULL,
         expires BIGINT NOT NULL,
         used_at BIGINT,
         used_by TEXT,
         used_credential_sha256 TEXT
     );",
    // 13: who played.
    "ALTER TABLE plays ADD COLUMN \"user\" TEXT;
     ALTER TABLE plays ADD COLUMN profile TEXT;
     CREATE INDEX plays_by_profile ON plays(\"user\", profile, at);",
    // 14: artwork.
    "ALTER TABLE titles ADD COLUMN artwork TEXT;",
    // 15: measured paths, shared.
    "CREATE TABLE path_estimates (
         instance TEXT NOT NULL,
         network TEXT NOT NULL,
         appliance TEXT NOT NULL,
         w DOUBLE PRECISION NOT NULL,
         tput DOUBLE PRECISION NOT NULL,
         ttfb DOUBLE PRECISION NOT NULL,
         err DOUBLE PRECISION NOT NULL,
         at BIGINT NOT NULL,
         updated_ms BIGINT NOT NULL,
         PRIMARY KEY (instance, network, appliance)
     );
     CREATE INDEX path_estimates_by_update ON path_estimates(updated_ms);",
];

/// The database's clock in milliseconds (the wall clock, not the
/// transaction's start): instances on several machines agree on it.
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Advisory locks (`pg_advisory_xact_lock`), held to the end of the
/// transaction that takes them: what must run on one instance at a time.
#[derive(Debug, Clone, Copy)]
#[repr(i64)]
pub(crate) enum Lock {
    /// Applying migrations (instances starting together).
    Migrate = 0x5354_0001,
    /// A step of the signing-key schedule.
    Keys = 0x5354_0002,
}

/// How long a request waits for a pooled connection, or for a new one.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// The PostgreSQL backend.
pub struct Postgres {
    pool: Pool,
}

impl Postgres {
    /// Connect (checking the server answers), and bring the schema up to
    /// date. `connections`: the pool's size (`database_connections`;
    /// PostgreSQL's `max_connections` must cover every instance's, see
    /// docs/OPERATIONS.md).
    pub async fn open(url: &str, connections: usize) -> Result<Postgres, StoreError> {
        let pg = Postgres {
            pool: pool(url, connections)?,
        };
        pg.migrate().await?;
        Ok(pg)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&(Lock::Migrate as i64)],
        )
        .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
        )
        .await?;
        let done: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
            tx.batch_execute(m).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&((i + 1) as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn probe(&self, now: u64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO health_probe (id, at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                &[&(now as i64)],
            )
            .await?;
        Ok(())
    }
}

/// A pool for `url`, connecting lazily: TLS when the URL's `sslmode` is not
/// `disable`, a connect timeout, bounded waits.
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Database(format!("database URL: {e}").into()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_WAIT);
    }
    if config.get_application_name().is_none() {
        config.application_name("steering");
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match config.get_ssl_mode() {
        SslMode::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        _ => Manager::from_config(config, tls()?, manager_config),
    };
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT * 2))
        .recycle_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    Ok(pool)
}

/// rustls with the system's trust roots (Debian's ca-certificates), which is
/// where an operator installs a private database CA too.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(Box::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl From<tokio_postgres::Error> for StoreError {
    /// No SQLSTATE means no answer (the connection broke or timed out); a
    /// connection-class state (08), a server shutting down (57P0x) or a
    /// read-only server (a standby not yet promoted) mean not now either.
    fn from(e: tokio_postgres::Error) -> StoreError {
        let transient = match e.code() {
            None => true,
            Some(c) => {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P0") || c == "25006"
            }
        };
        if transient {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(Box::new(e))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            // Timed out waiting for a connection or creating one, or closed.
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
