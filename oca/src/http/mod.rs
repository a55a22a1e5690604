//! The HTTP/1.1 serving path: head parsing, response heads, and the connection loop.

pub mod conn;
pub mod reader;
pub mod request;
pub mod response;
pub mod testing;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Settings the connection loop reads on every request, copied out of `Config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub limits: request::Limits,
    pub cache_control: Box<str>,
    pub open_file_cache: usize,
    pub open_file_cache_valid: Duration,
    pub max_connections: usize,
    /// HTTPS bodies encrypted straight from a mapping of the object.
    pub tls_mapped_bodies: bool,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            header_timeout: c.header_timeout,
            idle_timeout: c.idle_timeout,
            send_timeout: c.send_timeout,
            limits: request::Limits {
                max_request_line: c.max_request_line,
                max_header_bytes: c.max_header_bytes,
            },
            cache_control: c.cache_control.clone().into_boxed_str(),
            open_file_cache: c.open_file_cache,
            open_file_cache_valid: c.open_file_cache_valid,
            max_connections: c.max_connections,
            tls_mapped_bodies: c.tls_mapped_bodies,
        }
    }
}

/// State every worker and connection shares.
pub struct Shared {
    pub store: Store,
    /// Present when HTTPS listeners are configured.
    pub tls: Option<crate::tls::Tls>,
    /// TLS sessions are handed to the kernel after the handshake.
    pub kernel_tls: bool,
    pub access: crate::access::Access,
    pub metrics: Metrics,
    pub settings: Settings,
    /// Set once SIGTERM arrives; read by /health and by connection guards.
    pub draining: AtomicBool,
    /// Signalled when the last connection closes during a drain.
    pub all_closed: Notify,
    /// Prefixes learned over BGP, when `[bgp]` is configured.
    pub bgp: Option<Arc<crate::bgp::Learned>>,
    /// The cold-read loader every connection hands cold windows to.
    pub cold: crate::cold::ColdReads,
    /// Who may call the admin listener (`admin.callers_file`); `None`: anyone.
    pub admin_callers: Option<Arc<crate::admin_auth::CallersFile>>,
}

/// Counts a connection as active for as long as it lives.
pub struct ConnGuard(Arc<Shared>);

impl ConnGuard {
    /// Admit a new connection, or `None` if the connection cap is reached.
    pub fn admit(shared: &Arc<Shared>) -> Option<ConnGuard> {
        let prev = shared.metrics.connections_active.inc();
        if prev as usize >= shared.settings.max_connections {
            shared.metrics.connections_active.dec();
            return None;
        }
        Some(ConnGuard(Arc::clone(shared)))
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let prev = self.0.metrics.connections_active.dec();
        if prev == 1 && self.0.draining.load(Ordering::Acquire) {
            self.0.all_closed.notify_one();
        }
    }
}

/// Complete once `flag` is (or becomes) true; never, if its sender is gone first.
pub async fn until_set(flag: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
