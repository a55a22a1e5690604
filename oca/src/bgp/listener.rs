//! The BGP sockets: accept only from configured neighbours, one connection
//! per neighbour, each driving an `fsm::Session` with timers taken from its
//! `next_deadline`. Everything protocol-shaped happens in the session.
//!
//! A second connection from a neighbour: if its current session is
//! Established, the newcomer gets NOTIFICATION Cease / Connection Collision
//! Resolution (6/7) and is closed (RFC 4271 §6.8: an established session
//! wins). If the current one is still opening, the router has given up on it,
//! so it is closed with the same Cease and the newcomer proceeds; being
//! passive, we have no connection of our own to compare identifiers with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::Learned;
use super::codec::{self, MAX_MESSAGE_LEN, Message, Notification, code};
use super::fsm::{Action, Event, Reason, Session, Settings};
use crate::config::BgpConfig;

/// A peer that does not take our bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Cease subcodes (RFC 4486).
const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
const CONNECTION_COLLISION: u8 = 7;

/// The connection currently serving each neighbour, and how to close it.
type Current = Arc<Mutex<HashMap<IpAddr, (u64, Arc<Notify>)>>>;

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Set up the listening socket's protections before any router connects:
/// each neighbour's TCP MD5 key (the kernel then drops that neighbour's
/// segments without it, SYNs included), and with GTSM anywhere, TTL 255 on
/// what we send and the SYNs kept so `accept` can check their TTL. An error
/// names the neighbour: oca does not start unprotected when protection is
/// configured.
pub fn protect(listener: &std::net::TcpListener, cfg: &BgpConfig) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = listener.as_raw_fd();
    let v6 = cfg.listen.is_ipv6();
    for n in &cfg.neighbors {
        if let Some(key) = &n.password {
            crate::sys::set_tcp_md5_key(fd, v6, n.address.to_canonical(), key.expose().as_bytes())
                .map_err(|e| {
                    format!(
                        "bgp.neighbor {}: cannot set its TCP MD5 key: {e}{}",
                        n.address,
                        if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
                            " (a kernel without CONFIG_TCP_MD5SIG)"
                        } else {
                            ""
                        }
                    )
                })?;
        }
    }
    if cfg.neighbors.iter().any(|n| n.ttl_security) {
        let r = crate::sys::set_ttl_255(fd, false)
            .and_then(|()| {
                if v6 {
                    crate::sys::set_ttl_255(fd, true)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| crate::sys::save_syns(fd));
        r.map_err(|e| {
            format!(
                "bgp: cannot set up ttl_security (GTSM) on {}: {e}",
                cfg.listen
            )
        })?;
    }
    Ok(())
}

/// GTSM for one accepted connection from a neighbour with `ttl_security`:
/// its SYN must have arrived with TTL 255 (so it was sent by a directly
/// connected router), and from now on the kernel drops its segments that do
/// not. `Err` says why the connection is refused.
fn check_ttl(stream: &TcpStream, peer: IpAddr) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    match crate::sys::syn_ttl(fd) {
        Ok(Some(255)) => {}
        Ok(Some(ttl)) => {
            return Err(format!(
                "its SYN arrived with TTL {ttl}; ttl_security needs 255 (is the router's \
                 `ttl security` on, and is it directly connected?)"
            ));
        }
        Ok(None) => return Err("the kernel kept no SYN to check the TTL of".into()),
        Err(e) => return Err(format!("cannot read the SYN's TTL: {e}")),
    }
    // A v4 peer on an IPv6 listener is v4-mapped: its packets are IPv4.
    crate::sys::set_min_ttl(fd, peer.is_ipv6(), 255)
        .map_err(|e| format!("cannot set the minimum TTL: {e}"))
}

/// Accept sessions until `stop`, then end each with Cease / Administrative
/// Shutdown and return once they are closed.
pub async fn run(
    listener: TcpListener,
    cfg: BgpConfig,
    learned: Arc<Learned>,
    mut stop: watch::Receiver<bool>,
) {
    let neighbors: HashMap<IpAddr, (u32, bool)> = cfg
        .neighbors
        .iter()
        .map(|n| (n.address.to_canonical(), (n.asn, n.ttl_security)))
        .collect();
    let current: Current = Arc::default();
    let mut next_id = 0u64;
    let mut tasks = JoinSet::new();
    // The kernel drops segments with a wrong MD5 signature or a low TTL
    // before any socket sees them; its counters are the only trace, so they
    // are watched and the neighbours they may concern named in the log.
    let protected: Vec<(IpAddr, bool, bool)> = cfg
        .neighbors
        .iter()
        .filter(|n| n.password.is_some() || n.ttl_security)
        .map(|n| {
            (
                n.address.to_canonical(),
                n.password.is_some(),
                n.ttl_security,
            )
        })
        .collect();
    let mut drops_seen = super::KernelDrops::read();
    let mut watch = tokio::time::interval(DROPS_EVERY);
    loop {
        let (stream, peer) = tokio::select! {
            _ = watch.tick(), if !protected.is_empty() => {
                drops_seen = report_drops(drops_seen, &protected, &learned);
                continue;
            }
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "BGP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = crate::http::until_set(&mut stop) => break,
        };
        // Decided on the address alone, before reading a byte.
        let addr = peer.ip().to_canonical();
        let Some(&(peer_asn, ttl_security)) = neighbors.get(&addr) else {
            learned
                .counters
                .connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%peer, "BGP connection from an address that is not a configured neighbor; closed");
            drop(stream);
            continue;
        };
        let span = tracing::info_span!("bgp", neighbor = %addr);
        if ttl_security && let Err(why) = check_ttl(&stream, addr) {
            learned
                .counters
                .ttl_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(parent: &span, "BGP connection refused by ttl_security (GTSM): {why}");
            drop(stream);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let kick = Arc::new(Notify::new());
        {
            let mut map = current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, older)) = map.get(&addr) {
                if learned.is_established(addr) {
                    learned.notification_sent(code::CEASE);
                    tasks.spawn(refuse(stream).instrument(span));
                    continue;
                }
                tracing::info!(parent: &span, "new connection replaces one still opening");
                older.notify_one();
            }
            map.insert(addr, (id, Arc::clone(&kick)));
        }
        learned.attach(addr, id, now());
        let settings = Settings {
            local_asn: cfg.local_asn,
            router_id: cfg.router_id,
            hold_time: cfg.hold_time,
            peer_asn,
        };
        let conn = Conn {
            addr,
            id,
            learned: Arc::clone(&learned),
        };
        let (current, stop) = (Arc::clone(&current), stop.clone());
        tasks.spawn(
            async move {
                conn.serve(stream, settings, kick, stop).await;
                let mut map = current.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(&addr).is_some_and(|(owner, _)| *owner == id) {
                    map.remove(&addr);
                }
            }
            .instrument(span),
        );
    }
    // Every session saw the same stop and is sending its Cease.
    while tasks.join_next().await.is_some() {}
}

/// How often the kernel's drop counters are compared.
const DROPS_EVERY: Duration = Duration::from_secs(5);

/// Say in the log when the kernel dropped MD5 or TTL-failing segments since
/// `seen` while a neighbour protected that way is not established (then the
/// drops are most likely its); the counters now.
fn report_drops(
    seen: super::KernelDrops,
    protected: &[(IpAddr, bool, bool)],
    learned: &Learned,
) -> super::KernelDrops {
    let now = super::KernelDrops::read();
    let down = |md5: bool| -> Vec<String> {
        protected
            .iter()
            .filter(|&&(addr, password, ttl)| {
                (if md5 { password } else { ttl }) && !learned.is_established(addr)
            })
            .map(|(addr, ..)| addr.to_string())
            .collect()
    };
    let md5 = now.md5().saturating_sub(seen.md5());
    if md5 > 0 {
        let waiting = down(true);
        if !waiting.is_empty() {
            tracing::warn!(
                dropped = md5,
                missing = now.md5_missing.saturating_sub(seen.md5_missing),
                wrong = now.md5_wrong.saturating_sub(seen.md5_wrong),
                unexpected = now.md5_unexpected.saturating_sub(seen.md5_unexpected),
                neighbors = %waiting.join(","),
                "the kernel dropped TCP segments for a missing or wrong MD5 signature while these \
                 neighbors with a password are not established: does the router's password match?"
            );
        }
    }
    let ttl = now.min_ttl.saturating_sub(seen.min_ttl);
    if ttl > 0 {
        let waiting = down(false);
        if !waiting.is_empty() {
            tracing::warn!(
                dropped = ttl,
                neighbors = %waiting.join(","),
                "the kernel dropped TCP segments under the minimum TTL while these ttl_security \
                 neighbors are not established: is the router's `ttl security` on?"
            );
        }
    }
    now
}

/// Close a colliding connection with Cease / Connection Collision Resolution.
async fn refuse(mut stream: TcpStream) {
    tracing::warn!("second connection while the session is established; refused");
    let n = Message::Notification(Notification::new(code::CEASE, CONNECTION_COLLISION));
    if let Ok(bytes) = codec::encode(&n) {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await;
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

/// One accepted connection from a configured neighbour.
struct Conn {
    addr: IpAddr,
    id: u64,
    learned: Arc<Learned>,
}

impl Conn {
    async fn serve(
        &self,
        mut stream: TcpStream,
        settings: Settings,
        kick: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Keepalives are tiny and timed; do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let mut session = Session::new(settings);
        let mut buf = Vec::with_capacity(2 * MAX_MESSAGE_LEN);
        let mut chunk = vec![0u8; MAX_MESSAGE_LEN];
        let mut actions = session.handle(Event::Connected { now: now() });
        loop {
            match self.carry_out(&mut stream, actions).await {
                Flow::Open => {}
                Flow::Closed => return,
                Flow::WriteFailed => {
                    let lost = session.handle(Event::Closed { now: now() });
                    self.carry_out(&mut stream, lost).await;
                    return;
                }
            }
            self.learned
                .set_state(self.addr, self.id, session.state(), session.peer());
            let deadline = session.next_deadline();
            actions = tokio::select! {
                r = stream.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => session.handle(Event::Closed { now: now() }),
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        session.on_bytes(&mut buf, now())
                    }
                },
                () = sleep_until(deadline) => session.handle(Event::Tick { now: now() }),
                () = kick.notified() => session.handle(Event::Stop {
                    notification: Notification::new(code::CEASE, CONNECTION_COLLISION),
                    now: now(),
                }),
                () = crate::http::until_set(&mut stop) => session.handle(Event::Stop {
                    notification: Notification::new(code::CEASE, ADMINISTRATIVE_SHUTDOWN),
                    now: now(),
                }),
            };
        }
    }

    /// Do what the session asked, in order. Once a write fails no more are
    /// tried, but the table is still told what happened.
    async fn carry_out(&self, stream: &mut TcpStream, actions: Vec<Action>) -> Flow {
        let (addr, id, learned) = (self.addr, self.id, &self.learned);
        let mut write_failed = false;
        for action in actions {
            match action {
                Action::Send(msg) => {
                    if write_failed {
                        continue;
                    }
                    match codec::encode(&msg) {
                        Ok(bytes) => {
                            let w = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes));
                            write_failed = !matches!(w.await, Ok(Ok(())));
                        }
                        // Only our own messages are encoded; this would be a bug.
                        Err(e) => tracing::error!(error = %e, "BGP message not sent"),
                    }
                }
                Action::Close(reason) => {
                    learned.down(addr, id, &reason, now());
                    match &reason {
                        Reason::Sent(n) if n.code == code::CEASE => {
                            tracing::info!(reason = %reason, "BGP session closed")
                        }
                        _ => tracing::warn!(reason = %reason, "BGP session closed"),
                    }
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
                    return Flow::Closed;
                }
                Action::Established(peer) => {
                    tracing::info!(
                        peer_asn = peer.asn,
                        router_id = %peer.router_id,
                        hold_time = peer.hold_time,
                        "BGP session established"
                    );
                    learned.up(addr, id, peer, now());
                }
                Action::Learned {
                    announced,
                    withdrawn,
                    attrs,
                } => {
                    tracing::debug!(
                        announced = announced.len(),
                        withdrawn = withdrawn.len(),
                        "BGP update"
                    );
                    learned.update(addr, id, &attrs, &announced, &withdrawn, now());
                }
                Action::EndOfRib(family) => {
                    tracing::info!(family = family.as_str(), "BGP End-of-RIB");
                    learned.end_of_rib(addr, id, family, now());
                }
            }
        }
        if write_failed {
            Flow::WriteFailed
        } else {
            Flow::Open
        }
    }
}

enum Flow {
    Open,
    Closed,
    WriteFailed,
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
