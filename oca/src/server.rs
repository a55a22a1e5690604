//! Binding, worker threads, and the drain-then-exit lifecycle.
//!
//! Threading (see docs/BENCHMARKS.md for the measurement): by default each worker
//! thread runs its own single-threaded tokio runtime with its own SO_REUSEPORT
//! listener per address, so the kernel spreads connections across workers and a
//! connection never migrates between cores. `threading = "shared"` runs one
//! work-stealing runtime on one listener instead.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::access::{Access, AccessMode};
use crate::admin::{Admin, RateWindow};
use crate::config::{Config, Threading};
use crate::http::{self, ConnGuard, Settings, Shared};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::sys;
use crate::tls::Tls;
use crate::tls::stream::TlsStream;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Keys(#[from] urlsign::KeyError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    BgpSecurity(String),
    #[error("admin.callers_file {0}")]
    AdminCallers(String),
}

/// A server with its sockets bound and its store indexed, not yet serving.
pub struct Server {
    config: Config,
    shared: Arc<Shared>,
    /// Listeners per worker (per-core) or one set for the shared runtime.
    listeners: Vec<Vec<(std::net::TcpListener, Scheme)>>,
    admin: std::net::TcpListener,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    /// The BGP listener and its bound address, when `[bgp]` is configured.
    bgp: Option<(std::net::TcpListener, SocketAddr)>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Server {
    /// Index the store and bind every socket, so that bind errors and the real
    /// ports (for `:0`) are known before anything is served.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let workers = config.effective_workers();
        // Every connection and every cached open file is a descriptor; the default
        // soft limit (1024) would cap the daemon long before `max_connections`.
        let nofile = sys::raise_fd_limit();
        let wanted = (config.max_connections + workers * config.open_file_cache + 256) as u64;
        if nofile < wanted {
            tracing::warn!(
                limit = nofile,
                wanted,
                "open-file limit is below max_connections + open_file_cache; raise LimitNOFILE"
            );
        }
        let (store, report) = Store::open_with(&config.stores, config.require_mount);
        tracing::info!(
            objects = report.objects,
            bytes = report.bytes,
            skipped = report.skipped,
            duplicates = report.duplicates,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "store indexed"
        );
        let sockets_per_addr = match config.threading {
            Threading::PerCore => workers,
            Threading::Shared => 1,
        };
        let mut listeners: Vec<Vec<(std::net::TcpListener, Scheme)>> =
            (0..sockets_per_addr).map(|_| Vec::new()).collect();
        let (mut http_addrs, mut https_addrs) = (Vec::new(), Vec::new());
        let plain = config.listen.iter().map(|a| (*a, Scheme::Http));
        let secure = config.tls_listen.iter().map(|a| (*a, Scheme::Https));
        for (addr, scheme) in plain.chain(secure) {
            let mut bound = addr;
            for slot in listeners.iter_mut() {
                let l = sys::listen_socket(bound)
                    .map_err(|source| StartError::Bind { addr, source })?;
                // Later sockets join the first one's port (matters for port 0).
                bound = l
                    .local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?;
                slot.push((l, scheme));
            }
            match scheme {
                Scheme::Http => http_addrs.push(bound),
                Scheme::Https => https_addrs.push(bound),
            }
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) if !config.tls_listen.is_empty() || config.admin.tls => {
                Some(Tls::load(cert, key)?)
            }
            _ => None,
        };
        let admin = std::net::TcpListener::bind(config.admin_listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| StartError::Bind {
                addr: config.admin_listen,
                source,
            })?;
        let access = Access::new(
            config.access,
            config.token_keys.as_deref(),
            config.token_skew.as_secs(),
        )?;
        // Keys from the control plane's last answer are in place before the
        // first request, so a restart while the control plane is down serves.
        if let Some(c) = &config.control
            && !access.keys_from_file()
            && let Some(cached) = control_client::ControlClient::cached_keys_in(&c.cache_dir)
        {
            match cached.to_keyset() {
                Ok(ks) => {
                    access.install(ks);
                    tracing::info!(
                        version = cached.version,
                        "signing keys loaded from the control-plane cache"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "cached signing keys unusable"),
            }
        }
        if config.access == AccessMode::Open {
            tracing::warn!("access = \"open\": objects are served without signed-URL tokens");
        }
        let bgp = match &config.bgp {
            Some(b) => {
                let l = std::net::TcpListener::bind(b.listen)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(|l| l.local_addr().map(|a| (l, a)))
                    .map_err(|source| StartError::Bind {
                        addr: b.listen,
                        source,
                    })?;
                crate::bgp::listener::protect(&l.0, b).map_err(StartError::BgpSecurity)?;
                Some(l)
            }
            None => None,
        };
        let learned = config.bgp.as_ref().map(|b| {
            let neighbors: Vec<_> = b
                .neighbors
                .iter()
                .map(|n| (n.address.to_canonical(), n.asn))
                .collect();
            Arc::new(crate::bgp::Learned::new(&neighbors, b.grace))
        });
        let mut metrics = Metrics::new();
        if learned.is_some() {
            metrics.register_bgp();
        }
        let kernel_tls = tls.is_some() && kernel_tls_available();
        if tls.is_some() {
            tracing::info!(kernel_tls, "HTTPS enabled");
        }
        let cold = crate::cold::ColdReads::start(
            metrics.cold_loads.clone(),
            config.cold_reads == crate::config::ColdReadsMode::IoUring,
            config.cold_threads,
            config.cold_nice,
        );
        tracing::info!(path = cold.path(), "cold reads");
        let mut settings = Settings::from_config(&config);
        if tls.is_some() && settings.tls_mapped_bodies {
            match crate::sys::guard_mapped_reads() {
                Ok(()) => tracing::info!("HTTPS bodies encrypted from mappings of the objects"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot catch faults on mapped pages; HTTPS bodies are read into buffers");
                    settings.tls_mapped_bodies = false;
                }
            }
        }
        let admin_callers = match &config.admin.callers_file {
            Some(path) => {
                let f =
                    crate::admin_auth::CallersFile::load(path).map_err(StartError::AdminCallers)?;
                tracing::info!(callers = f.current().len(), file = %path.display(),
                    "the admin listener asks every caller for its credential");
                Some(Arc::new(f))
            }
            None => {
                tracing::warn!(
                    "the admin listener answers anyone who reaches it (no admin.callers_file)"
                );
                None
            }
        };
        let shared = Arc::new(Shared {
            admin_callers,
            cold,
            kernel_tls,
            tls,
            access,
            store,
            metrics,
            settings,
            draining: Default::default(),
            all_closed: Default::default(),
            bgp: learned,
        });
        Ok(Server {
            config,
            shared,
            listeners,
            admin,
            http_addrs,
            https_addrs,
            bgp,
        })
    }

    /// A handle that reloads keys (and certificates) on demand, e.g. on SIGHUP.
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.shared))
    }

    /// The bound object-serving addresses (real ports, even when configured as 0).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The bound HTTPS addresses.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// The bound BGP address, when `[bgp]` is configured.
    pub fn bgp_addr(&self) -> Option<SocketAddr> {
        self.bgp.as_ref().map(|(_, a)| *a)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_listen)
    }

    /// Serve until `shutdown` completes, then drain: stop accepting, report
    /// `draining`, let in-flight responses finish within the grace period.
    /// Blocks the calling thread, which runs the admin listener.
    pub fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Server {
            config,
            shared,
            listeners,
            admin,
            http_addrs,
            https_addrs,
            bgp,
        } = self;
        let bound = crate::control::Bound {
            admin: admin.local_addr().unwrap_or(config.admin_listen),
            http: http_addrs.first().copied(),
            https: https_addrs.first().copied(),
        };
        let workers = config.effective_workers();
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every event loop beats; the watchdog pings systemd only while all do.
        let loops = match config.threading {
            Threading::PerCore => listeners.len(),
            Threading::Shared => 1,
        };
        let mut names: Vec<String> = (0..loops).map(|w| format!("worker-{w}")).collect();
        names.push("control".into());
        let liveness = service::Liveness::new(names);
        let control_slot = loops;

        let mut threads = Vec::new();
        match config.threading {
            Threading::PerCore => {
                for (w, set) in listeners.into_iter().enumerate() {
                    let (shared, drain, stop) =
                        (Arc::clone(&shared), drain_rx.clone(), stop_rx.clone());
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let rt = rt.map_err(StartError::Thread)?;
                    shared.metrics.runtimes.add(rt.handle().clone());
                    let beat = Arc::clone(&liveness).heartbeat(w);
                    threads.push(
                        std::thread::Builder::new()
                            .name(format!("oca-worker-{w}"))
                            .spawn(move || {
                                rt.block_on(async move {
                                    tokio::spawn(beat);
                                    worker(set, shared, drain, stop).await
                                })
                            })
                            .map_err(StartError::Thread)?,
                    );
                }
            }
            Threading::Shared => {
                let set = listeners.into_iter().next().unwrap_or_default();
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("oca-worker")
                    .enable_all()
                    .build()
                    .map_err(StartError::Thread)?;
                shared.metrics.runtimes.add(rt.handle().clone());
                let (shared, drain, stop) =
                    (Arc::clone(&shared), drain_rx.clone(), stop_rx.clone());
                let beat = Arc::clone(&liveness).heartbeat(0);
                threads.push(
                    std::thread::Builder::new()
                        .name("oca-workers".into())
                        .spawn(move || {
                            rt.block_on(async move {
                                tokio::spawn(beat);
                                worker(set, shared, drain, stop).await
                            })
                        })
                        .map_err(StartError::Thread)?,
                );
            }
        }

        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Thread)?;
        shared.metrics.runtimes.add(control.handle().clone());
        let admin_state = Arc::new(Admin {
            shared: Arc::clone(&shared),
            started: Instant::now(),
            capacity_bps: config.capacity_mbps.saturating_mul(1_000_000),
            workers,
            rate: Mutex::new(RateWindow::new(Duration::from_secs(5))),
            fill_status: config.fill_status.clone(),
            open_health: config.admin.open_health,
            tls: config.admin.tls,
        });
        let status_of = Arc::clone(&shared);
        let watchdog =
            service::Watchdog::start(Arc::clone(&liveness), move || status_line(&status_of))
                .map_err(StartError::Thread)?;
        control.block_on(async {
            tokio::spawn(Arc::clone(&liveness).heartbeat(control_slot));
            match TcpListener::from_std(admin) {
                Ok(l) => {
                    tokio::spawn(Arc::clone(&admin_state).serve(l, stop_rx.clone()));
                }
                Err(e) => tracing::error!(error = %e, "admin listener unusable"),
            }
            tokio::spawn(Arc::clone(&admin_state).sample_egress(stop_rx.clone()));
            tokio::spawn(watch_disks(
                Arc::clone(&shared),
                config.disk_check_interval,
                config.require_mount,
                stop_rx.clone(),
            ));
            tokio::spawn(watch_key_file(
                Reloader(Arc::clone(&shared)),
                stop_rx.clone(),
            ));
            if let Some(control) = config.control.clone() {
                let admin = Arc::clone(&admin_state);
                tokio::spawn(crate::control::run(
                    admin,
                    control,
                    bound,
                    drain_rx.clone(),
                    stop_rx.clone(),
                ));
            }
            let bgp_task = match (bgp, config.bgp.clone(), shared.bgp.clone()) {
                (Some((l, _)), Some(cfg), Some(learned)) => match TcpListener::from_std(l) {
                    Ok(l) => Some(tokio::spawn(crate::bgp::listener::run(
                        l,
                        cfg,
                        learned,
                        stop_rx.clone(),
                    ))),
                    Err(e) => {
                        tracing::error!(error = %e, "BGP listener unusable");
                        None
                    }
                },
                _ => None,
            };
            // Listeners are bound and the store is indexed (both in `bind`),
            // the loops run: ready.
            service::notify::ready(&status_line(&shared));
            shutdown.await;
            let active = shared.metrics.connections_active.get();
            tracing::info!(
                active,
                grace_secs = config.shutdown_grace.as_secs_f64(),
                "draining"
            );
            shared.draining.store(true, Ordering::Release);
            service::notify::stopping(&status_line(&shared));
            let _ = drain_tx.send(true);
            let deadline = tokio::time::Instant::now() + config.shutdown_grace;
            while shared.metrics.connections_active.get() > 0 {
                if tokio::time::timeout_at(deadline, shared.all_closed.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let left = shared.metrics.connections_active.get();
            if left > 0 {
                tracing::warn!(
                    connections = left,
                    "grace period over; closing remaining connections"
                );
            }
            let _ = stop_tx.send(true);
            // Let BGP sessions send their Cease before the runtime goes away.
            if let Some(t) = bgp_task
                && tokio::time::timeout(Duration::from_secs(2), t)
                    .await
                    .is_err()
            {
                tracing::warn!("BGP sessions did not close in time");
            }
        });
        for t in threads {
            let _ = t.join();
        }
        drop(watchdog);
        tracing::info!("stopped");
        Ok(())
    }
}

/// The one-line STATUS= for `systemctl status`.
fn status_line(shared: &Shared) -> String {
    let (objects, bytes) = shared.store.totals();
    let active = shared.metrics.connections_active.get();
    let state = if shared.draining.load(Ordering::Acquire) {
        "draining"
    } else {
        "serving"
    };
    format!(
        "{state}: {active} connections; {objects} objects ({:.1} GB) on {} disks",
        bytes as f64 / 1e9,
        shared.store.disks.len()
    )
}

/// Reloads what may change while serving. A reload that fails keeps what was in use.
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    /// Reload everything now (SIGHUP).
    pub fn reload(&self) {
        service::notify::reloading();
        self.reload_keys(true);
        self.reload_certificates();
        self.reload_admin_callers(true);
        service::notify::ready(&status_line(&self.0));
    }

    fn reload_certificates(&self) {
        if let Some(tls) = &self.0.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                Err(e) => {
                    self.0.metrics.reload_failures.inc();
                    tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
                }
            }
        }
    }

    fn reload_admin_callers(&self, force: bool) {
        let Some(f) = &self.0.admin_callers else {
            return;
        };
        match f.reload(force) {
            Ok(true) => {
                tracing::info!(callers = f.current().len(), "admin callers file loaded")
            }
            Ok(false) => {}
            Err(e) => {
                self.0.metrics.reload_failures.inc();
                tracing::error!(error = %e, "admin callers not reloaded; the previous ones stay in use")
            }
        }
    }

    fn reload_keys(&self, force: bool) {
        match self.0.access.reload(force) {
            Ok(true) => tracing::info!(keys = ?self.0.access.key_ids(), "token keys loaded"),
            Ok(false) => {}
            Err(e) => {
                self.0.metrics.reload_failures.inc();
                tracing::error!(error = %e, "token keys not reloaded; the previous keys stay in use")
            }
        }
    }
}

/// Pick up a rewritten key file without a signal (the control-plane client
/// will drop new keys into it).
async fn watch_key_file(reloader: Reloader, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                reloader.reload_keys(false);
                // A revoked admin token stops working within one tick.
                reloader.reload_admin_callers(false);
            }
            _ = crate::http::until_set(&mut stop) => return,
        }
    }
}

/// Check the disks every `every`, on the blocking pool (a check may walk a
/// disk that came back).
async fn watch_disks(
    shared: Arc<Shared>,
    every: Duration,
    require_mount: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || s.store.check_disks(require_mount)).await;
            }
            _ = crate::http::until_set(&mut stop) => return,
        }
    }
}

/// A worker's life: accept on its listeners until drain, then keep serving
/// in-flight connections until told to stop (dropping the runtime ends them).
async fn worker(
    listeners: Vec<(std::net::TcpListener, Scheme)>,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    for (l, scheme) in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => {
                tokio::spawn(accept_loop(l, scheme, Arc::clone(&shared), drain.clone()));
            }
            Err(e) => tracing::error!(error = %e, "listener unusable"),
        }
    }
    crate::http::until_set(&mut stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    scheme: Scheme,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    let conn_drain = drain.clone();
    loop {
        tokio::select! {
            biased;
            _ = crate::http::until_set(&mut drain) => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    shared.metrics.connections_accepted.inc();
                    match ConnGuard::admit(&shared) {
                        Some(guard) => {
                            // Disabled at the default level, so the span costs one check.
                            let span = tracing::debug_span!("conn", %peer);
                            let drain = conn_drain.clone();
                            match scheme {
                                Scheme::Http => {
                                    let transport = http::transport::Plain::new(stream, shared.cold.clone());
                                    tokio::spawn(http::conn::serve(transport, peer, guard, drain).instrument(span));
                                }
                                Scheme::Https => {
                                    tokio::spawn(serve_tls(stream, peer, guard, drain).instrument(span));
                                }
                            }
                        }
                        None => reject_at_cap(stream, &shared),
                    }
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

/// Whether TLS sessions can be handed to the kernel (feature `ktls` and a kernel
/// with the `tls` ULP).
fn kernel_tls_available() -> bool {
    #[cfg(feature = "ktls")]
    {
        crate::tls::ktls::supported()
    }
    #[cfg(not(feature = "ktls"))]
    {
        false
    }
}

/// Handshake, then the same HTTP loop as plaintext.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    drain: watch::Receiver<bool>,
) {
    let shared = Arc::clone(guard.shared());
    let Some(tls) = &shared.tls else { return };
    let config = tls.config();
    let cold = shared.cold.clone();
    let timeout = shared.settings.header_timeout;
    let mapped = shared.settings.tls_mapped_bodies;
    match TlsStream::accept(stream, config, timeout, cold, mapped).await {
        #[cfg(feature = "ktls")]
        Ok(s) if shared.kernel_tls => match s.into_parts() {
            Ok((stream, conn)) => match crate::tls::ktls::hand_over(&stream, conn) {
                Ok(()) => {
                    shared.metrics.tls_connections_kernel.inc();
                    http::conn::serve(
                        http::transport::Plain::new(stream, shared.cold.clone()),
                        peer,
                        guard,
                        drain,
                    )
                    .await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kernel TLS handoff failed; connection closed")
                }
            },
            Err(s) => {
                shared.metrics.tls_connections_userspace.inc();
                http::conn::serve(*s, peer, guard, drain).await;
            }
        },
        Ok(s) => {
            shared.metrics.tls_connections_userspace.inc();
            http::conn::serve(s, peer, guard, drain).await;
        }
        Err(e) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(error = %e, "TLS handshake failed");
        }
    }
}

/// At the connection cap a new client gets an immediate 503 with Retry-After and
/// the connection is closed, rather than waiting unserved in the backlog.
fn reject_at_cap(stream: tokio::net::TcpStream, shared: &Shared) {
    shared.metrics.connections_rejected.inc();
    shared.metrics.response(503);
    let mut out = Vec::with_capacity(256);
    let framing = http::response::Framing {
        keep_alive: false,
        minor: 1,
        now: std::time::SystemTime::now(),
    };
    http::response::simple(&mut out, 503, "connection limit reached", framing, false);
    let _ = stream.try_write(&out);
}

/// Completes on SIGTERM or SIGINT; SIGHUP reloads keys and certificates.
pub async fn shutdown_signal(reloader: Reloader) {
    let Ok(mut signals) = service::signals::Signals::install() else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    let name = signals
        .until_stop(|| {
            tracing::info!(signal = "SIGHUP", "reloading");
            reloader.reload();
        })
        .await;
    tracing::info!(signal = name, "shutdown requested");
}
