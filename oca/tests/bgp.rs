//! oca's BGP listener end to end: an in-process server with `[bgp]` on
//! loopback and a scripted router written here with a TcpStream and the codec.
//! Waits are polls of /health with a deadline, never sleeps.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use oca::bgp::Family;
use oca::bgp::codec::{self, Message, Notification, Open, Update};
use oca::config::{BgpConfig, BgpNeighbor};
use support::*;

const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// A configured neighbour whose OPEN names the wrong AS.
const MISCONFIGURED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const GRACE: Duration = Duration::from_millis(1000);

fn bgp_config(root: &std::path::Path) -> oca::Config {
    let mut c = config(&[root]);
    c.bgp = Some(BgpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        local_asn: 4_200_000_001,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        hold_time: 90,
        grace: GRACE,
        neighbors: vec![
            BgpNeighbor {
                address: ROUTER,
                asn: 64512,
                password: None,
                ttl_security: false,
            },
            BgpNeighbor {
                address: MISCONFIGURED,
                asn: 64513,
                password: None,
                ttl_security: false,
            },
        ],
    });
    c
}

/// A scripted router connected from `local`.
struct Router {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Router {
    fn connect(local: IpAddr, to: SocketAddr) -> Router {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(local, 0).into()).unwrap();
        s.connect(&to.into()).unwrap();
        let stream: TcpStream = s.into();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Router {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, m: &Message) {
        self.stream.write_all(&codec::encode(m).unwrap()).unwrap();
    }

    fn send_update(&mut self, u: &Update) {
        let bytes = codec::encode_update(u, 64512, true).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    /// The next message, or None at EOF.
    fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(n) = codec::frame(&self.buf).unwrap() {
                let m = codec::decode(&self.buf[..n], true).unwrap();
                self.buf.drain(..n);
                return Some(m);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Read our OPEN, answer with `asn`'s, and finish the handshake.
    fn establish(local: IpAddr, to: SocketAddr) -> Router {
        let mut r = Router::connect(local, to);
        let Some(Message::Open(ours)) = r.recv() else {
            panic!("no OPEN from oca")
        };
        assert_eq!(ours.version, 4);
        assert_eq!(ours.asn, 4_200_000_001);
        assert!(ours.four_octet_as);
        assert_eq!(ours.families, [Family::Ipv4, Family::Ipv6]);
        r.send(&Message::Open(open(64512)));
        assert_eq!(r.recv(), Some(Message::Keepalive));
        r.send(&Message::Keepalive);
        r
    }
}

fn open(asn: u32) -> Open {
    Open {
        version: 4,
        asn,
        hold_time: 90,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        four_octet_as: true,
        families: vec![Family::Ipv4, Family::Ipv6],
    }
}

fn health_bgp(admin: SocketAddr) -> serde_json::Value {
    let r = get(admin, "/health");
    assert_eq!(r.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    h["bgp"].clone()
}

fn prefixes(bgp: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = bgp["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn router_session(bgp: &serde_json::Value) -> serde_json::Value {
    bgp["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["neighbor"] == "127.0.0.1")
        .unwrap()
        .clone()
}

/// Poll /health's `bgp` until `pred` holds.
fn wait_bgp(admin: SocketAddr, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    wait_for(what, || pred(&health_bgp(admin)).then_some(()));
}

fn nets(s: &[&str]) -> Vec<ipnet::IpNet> {
    s.iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn learns_withdraws_and_keeps_prefixes_through_the_grace_period() {
    let root = store().build();
    let server = serve(bgp_config(root.path()));
    let bgp = server.bgp.expect("bgp address");
    assert_ne!(bgp.port(), 0);
    let admin = server.admin;

    let mut router = Router::establish(ROUTER, bgp);
    wait_bgp(admin, "established", |b| {
        router_session(b)["state"] == "established" && b["sessions_established"] == 1
    });
    router.send_update(&Update {
        announced: nets(&["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]),
        ..Update::default()
    });
    router.send_update(&Update {
        end_of_rib: Some(Family::Ipv4),
        ..Update::default()
    });
    wait_bgp(admin, "three prefixes", |b| prefixes(b).len() == 3);
    let b = health_bgp(admin);
    assert_eq!(
        prefixes(&b),
        ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]
    );
    let s = router_session(&b);
    assert_eq!(
        (s["prefixes_ipv4"].as_u64(), s["prefixes_ipv6"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(s["asn"], 64512);
    assert_eq!(s["router_id"], "198.51.100.1");
    assert_eq!(s["hold_time"], 90);
    assert!(s["last_update_secs"].is_u64() && s["uptime_secs"].is_u64());
    assert_eq!(
        (b["prefixes_ipv4"].as_u64(), b["prefixes_ipv6"].as_u64()),
        (Some(2), Some(1))
    );

    let metrics = String::from_utf8(get(admin, "/metrics").body).unwrap();
    for line in [
        "oca_bgp_sessions_established 1",
        "oca_bgp_prefixes{family=\"ipv4\"} 2",
        "oca_bgp_prefixes{family=\"ipv6\"} 1",
        "oca_bgp_updates_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    let version = b["version"].as_u64().unwrap();
    router.send_update(&Update {
        withdrawn: nets(&["192.168.1.0/24"]),
        ..Update::default()
    });
    wait_bgp(admin, "withdrawal", |b| prefixes(b).len() == 2);
    let b = health_bgp(admin);
    assert_eq!(prefixes(&b), ["10.0.0.0/8", "2001:db8::/32"]);
    assert!(b["version"].as_u64().unwrap() > version);

    // A second connection while established loses the collision.
    let mut second = Router::connect(ROUTER, bgp);
    assert_eq!(
        second.recv(),
        Some(Message::Notification(Notification::new(6, 7)))
    );
    assert_eq!(second.recv(), None);
    assert_eq!(router_session(&health_bgp(admin))["state"], "established");

    // The router goes away: its prefixes stay for the grace period, then go.
    drop(router);
    let lost = Instant::now();
    wait_bgp(admin, "session down", |b| {
        router_session(b)["state"] == "idle"
    });
    let b = health_bgp(admin);
    if lost.elapsed() < GRACE {
        assert_eq!(prefixes(&b), ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(router_session(&b)["prefixes_stale"], 2);
    }
    assert_eq!(router_session(&b)["last_error"], "connection lost");
    wait_bgp(admin, "grace period over", |b| prefixes(b).is_empty());
    assert!(lost.elapsed() >= GRACE - Duration::from_millis(50));
    let metrics = String::from_utf8(get(admin, "/metrics").body).unwrap();
    assert!(
        metrics.contains("oca_bgp_sessions_established 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oca_bgp_prefixes{family=\"ipv4\"} 0"),
        "{metrics}"
    );

    // A new session; on shutdown oca ends it with Cease / Administrative Shutdown.
    let mut router = Router::establish(ROUTER, bgp);
    wait_bgp(admin, "re-established", |b| {
        router_session(b)["state"] == "established"
    });
    server.stop();
    assert_eq!(
        router.recv(),
        Some(Message::Notification(Notification::new(6, 2)))
    );
    assert_eq!(router.recv(), None);
}

#[test]
fn strangers_are_closed_unread_and_a_wrong_as_gets_bad_peer_as() {
    let root = store().build();
    let server = serve(bgp_config(root.path()));
    let bgp = server.bgp.unwrap();

    // Not a neighbour: closed without an OPEN from us.
    let mut stranger = Router::connect(STRANGER, bgp);
    assert_eq!(stranger.recv(), None);
    assert!(stranger.buf.is_empty());
    let metrics = String::from_utf8(get(server.admin, "/metrics").body).unwrap();
    assert!(
        metrics.contains("oca_bgp_connections_refused_total 1"),
        "{metrics}"
    );

    // A neighbour opening with the wrong AS: OPEN Message Error / Bad Peer AS.
    let mut r = Router::connect(MISCONFIGURED, bgp);
    assert!(matches!(r.recv(), Some(Message::Open(_))));
    r.send(&Message::Open(open(64999)));
    assert_eq!(
        r.recv(),
        Some(Message::Notification(Notification::new(2, 2)))
    );
    assert_eq!(r.recv(), None);
    let metrics = String::from_utf8(get(server.admin, "/metrics").body).unwrap();
    assert!(
        metrics.contains("oca_bgp_notifications_sent_total{code=\"open\"} 1"),
        "{metrics}"
    );
    let b = health_bgp(server.admin);
    let s = b["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["neighbor"] == "127.0.0.3")
        .unwrap()
        .clone();
    assert_eq!(s["state"], "idle");
    assert!(s["last_error"].as_str().unwrap().contains("2/2"), "{s}");

    // Garbage from a neighbour: Message Header Error, then closed.
    let mut r = Router::connect(ROUTER, bgp);
    assert!(matches!(r.recv(), Some(Message::Open(_))));
    r.stream.write_all(&[0u8; 19]).unwrap();
    assert_eq!(
        r.recv(),
        Some(Message::Notification(Notification::new(1, 1)))
    );
    assert_eq!(r.recv(), None);
}

#[test]
fn the_daemon_prints_the_bound_bgp_address() {
    let root = store().build();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oca.toml");
    std::fs::write(
        &cfg,
        format!(
            "stores = [{:?}]\n[bgp]\nlisten = \"127.0.0.1:0\"\nlocal_asn = 64500\nrouter_id = \"198.51.100.10\"\n\
             [[bgp.neighbor]]\naddress = \"127.0.0.1\"\nasn = 64512\n",
            root.path()
        ),
    )
    .unwrap();
    let d = daemon(&["--config", cfg.to_str().unwrap()]);
    let bgp = d.bgp.expect("bgp= in the startup line");
    assert_ne!(bgp.port(), 0);
    let mut r = Router::connect(ROUTER, bgp);
    let Some(Message::Open(o)) = r.recv() else {
        panic!("no OPEN")
    };
    assert_eq!(o.asn, 64500);
}
