//! A PostgreSQL server of a test's own: `initdb` into a temporary directory,
//! `pg_ctl start` on a loopback port the kernel picked, stopped and removed
//! when dropped. PostgreSQL refuses to run as root, so as root the cluster
//! belongs to the `postgres` user (created by Debian's package) and its tools
//! run through `runuser`. `scripts/test.sh` installs the package when missing.
//!
//! A standby (`Server::standby`) is a streaming replica made with
//! `pg_basebackup -R`; `promote` turns it into a primary, as an operator's
//! failover would.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The server's binaries (Debian's layout for PostgreSQL 15, else `PATH`).
fn tool(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

fn is_root() -> bool {
    // The effective uid, as the shell reports it: no libc call needed here.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a PostgreSQL tool as the cluster's owner.
fn run(as_postgres: bool, name: &str, args: &[&str]) -> Result<Output, String> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool(name));
        c
    } else {
        Command::new(tool(name))
    };
    cmd.args(args)
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))
        .and_then(|o| {
            if o.status.success() {
                Ok(o)
            } else {
                Err(format!(
                    "{name} {args:?} failed: {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        })
}

/// A port on 127.0.0.1 the kernel just handed out (and took back): the
/// server binds it a moment later. A clash fails the start, which retries.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A running cluster; stopped (immediately) and deleted when dropped.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    stopped: bool,
    /// The write end of the reaper's stdin (see `reaper`): closed when this
    /// process ends, however it ends.
    _reaper: Option<std::process::ChildStdin>,
}

impl Server {
    /// A fresh primary with trust authentication on loopback.
    pub fn start() -> Result<Server, String> {
        let as_postgres = is_root();
        let dir = tempdir(as_postgres)?;
        let data = dir.path().join("data");
        let data_s = data.to_str().ok_or("non-UTF-8 temp dir")?;
        run(
            as_postgres,
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        Server::boot(dir, as_postgres)
    }

    /// Start the cluster in `dir/data` on a new port (retrying a few ports).
    fn boot(dir: tempfile::TempDir, as_postgres: bool) -> Result<Server, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match pg_ctl_start(dir.path(), port, as_postgres) {
                Ok(()) => {
                    let reaper = reaper(dir.path(), as_postgres);
                    return Ok(Server {
                        dir,
                        port,
                        as_postgres,
                        stopped: false,
                        _reaper: reaper,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(format!("PostgreSQL did not start: {last}"))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `host:port` of the server.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A URL for database `db` (created by `create_database`; `postgres` exists).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL through psql against `db`; its output (tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let o = run(
            self.as_postgres,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    /// Create an empty database.
    pub fn create_database(&self, db: &str) -> Result<(), String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""))
            .map(|_| ())
    }

    /// A streaming-replication standby of this server (`pg_basebackup -R`),
    /// running on a port of its own, read-only until promoted.
    pub fn standby(&self) -> Result<Server, String> {
        let dir = tempdir(self.as_postgres)?;
        let data = dir.path().join("data");
        let port = self.port.to_string();
        run(
            self.as_postgres,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                path_str(&data)?,
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "--checkpoint=fast",
            ],
        )?;
        Server::boot(dir, self.as_postgres)
    }

    /// A standby (see `standby`) that this server waits for at every commit
    /// (`synchronous_standby_names = '*'`): nothing committed here is lost
    /// when it is promoted. Returns once it streams synchronously, or an
    /// error after a minute.
    pub fn synchronous_standby(&self) -> Result<Server, String> {
        let standby = self.standby()?;
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n = self.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            )?;
            if n == "1" {
                return Ok(standby);
            }
            if std::time::Instant::now() > deadline {
                return Err("the standby did not become synchronous within a minute".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Promote a standby to primary (`pg_ctl promote`, waiting until done).
    pub fn promote(&self) -> Result<(), String> {
        let data = self.data();
        run(
            self.as_postgres,
            "pg_ctl",
            &["-D", path_str(&data)?, "-w", "-t", "60", "promote"],
        )
        .map(|_| ())
    }

    /// Stop the server at once, as a crash would (`-m immediate`).
    pub fn kill(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let data = self.data();
        run(
            self.as_postgres,
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        )
        .map(|_| ())
    }

    /// Start it again after `kill`, on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        if !self.stopped {
            return Ok(());
        }
        pg_ctl_start(self.dir.path(), self.port, self.as_postgres)?;
        self.stopped = false;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A process that stops the cluster and removes its directory once its stdin
/// closes: when the test ends normally (after `Drop` did the same), and also
/// when the test process is killed (a test runner's timeout), which `Drop`
/// cannot cover. It waits on the pipe, not on a timer.
fn reaper(dir: &Path, as_postgres: bool) -> Option<std::process::ChildStdin> {
    let script = "read _; \"$0\" -D \"$1/data\" -m immediate stop >/dev/null 2>&1; rm -rf \"$1\"";
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    cmd.arg(tool("pg_ctl"))
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?
        .stdin
        .take()
}

/// `pg_ctl start` of the cluster in `dir/data`, waiting until it accepts
/// connections (pg_ctl -w polls for that, up to its timeout).
fn pg_ctl_start(dir: &Path, port: u16, as_postgres: bool) -> Result<(), String> {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 \
         -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on",
        dir.display()
    );
    run(
        as_postgres,
        "pg_ctl",
        &[
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    .map(|_| ())
    .map_err(|e| {
        format!(
            "{e}\nserver log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

/// A temporary directory the cluster's owner can write.
fn tempdir(as_postgres: bool) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("temp-postgres-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    if as_postgres {
        let out = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "chown postgres {}: {} (is the postgresql package installed?)",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(dir)
}
