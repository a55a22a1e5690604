//! BIRD 2 (Debian `bird2`) as an ISP's router, for interop tests. BIRD refuses
//! loopback peers and 127/8 routes ("bogus"), so it runs in a network namespace
//! of the test's own, joined to the host by a veth pair with a private /30
//! (100.127.N.0/30); it announces client prefixes from static protocols, one per
//! prefix, so a test can withdraw one with `birdc disable sN`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::wait_for;

/// Install BIRD if missing (the test command does this too).
pub fn ensure_installed() {
    if Command::new("bird").arg("--version").output().is_ok() {
        return;
    }
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "bird2"])
        .status();
    assert!(
        Command::new("bird").arg("--version").output().is_ok(),
        "bird2 is not installed and could not be installed"
    );
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {}: network namespaces need root", args.join(" "));
}

/// A namespace for the router and the link to it; removed on drop.
pub struct Link {
    pub ns: String,
    /// Our end (the appliance's BGP listener binds here).
    pub host: IpAddr,
    /// The router's end.
    pub router: IpAddr,
}

impl Link {
    pub fn new() -> Link {
        // Several links in one test process get addresses and names of their own.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() + k * 37) % 250 + 1;
        let ns = format!("oca-bgp-{}-{k}", std::process::id());
        let (vh, vn) = (
            format!("vh{n}x{}", (std::process::id() + k) % 10_000),
            format!("vn{n}"),
        );
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &vh, "type", "veth", "peer", "name", &vn, "netns", &ns,
        ]);
        let host = format!("100.127.{n}.1");
        let router = format!("100.127.{n}.2");
        ip(&["addr", "add", &format!("{host}/30"), "dev", &vh]);
        ip(&["link", "set", &vh, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{router}/30"),
            "dev",
            &vn,
        ]);
        ip(&["-n", &ns, "link", "set", &vn, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Link {
            ns,
            host: host.parse().unwrap(),
            router: router.parse().unwrap(),
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so both.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

pub struct Bird {
    child: Option<Child>,
    socket: PathBuf,
    dir: tempfile::TempDir,
    /// The configuration up to the IPv4 channel's export filter.
    statics: String,
    /// The IPv4 channel's export filter.
    export: String,
    /// What follows it, up to the session's extra options.
    rest: &'static str,
    session: String,
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start BIRD in `link`'s namespace as AS `asn`, peering with the listener at
/// `peer` (AS `peer_asn`), announcing each of `prefixes` (IPv4 and IPv6),
/// with `session` (e.g. `password "x"; ttl security on;`, or nothing) added
/// to the BGP protocol's options.
pub fn start(
    link: &Link,
    asn: u32,
    router_id: &str,
    peer: SocketAddr,
    peer_asn: u32,
    prefixes: &[&str],
    session: &str,
) -> Bird {
    start_exporting(
        link, asn, router_id, peer, peer_asn, prefixes, session, "all",
    )
}

/// As `start`, with `export` as the IPv4 channel's export (`all`, or
/// `filter { … }` setting communities and MED as an ISP's router would).
#[allow(clippy::too_many_arguments)]
pub fn start_exporting(
    link: &Link,
    asn: u32,
    router_id: &str,
    peer: SocketAddr,
    peer_asn: u32,
    prefixes: &[&str],
    session: &str,
    export: &str,
) -> Bird {
    ensure_installed();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut conf = format!("router id {router_id};\nlog stderr all;\nprotocol device {{}}\n");
    for (i, p) in prefixes.iter().enumerate() {
        let family = if p.contains(':') { "ipv6" } else { "ipv4" };
        conf += &format!("protocol static s{i} {{ {family}; route {p} blackhole; }}\n");
    }
    // IPv6 routes travel over the IPv4 session (MP-BGP): their next hop is an
    // address BIRD is given, since the session has none of that family.
    conf += &format!(
        r#"protocol bgp oca {{
    local {local} as {asn};
    neighbor {ip} port {port} as {peer_asn};
    hold time 9;
    keepalive time 3;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 {{ import none; export "#,
        local = link.router,
        ip = peer.ip(),
        port = peer.port(),
    );
    let rest = "; };\n    ipv6 { import none; export all; next hop address 2001:db8::1; };\n";
    std::fs::write(
        d.join("bird.conf"),
        format!("{conf}{export}{rest}{session}\n}}\n"),
    )
    .unwrap();
    let socket = d.join("bird.ctl");
    let child = Command::new("ip")
        .args(["netns", "exec", &link.ns, "bird", "-f", "-c"])
        .arg(d.join("bird.conf"))
        .arg("-s")
        .arg(&socket)
        .arg("-P")
        .arg(d.join("bird.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bird");
    let b = Bird {
        child: Some(child),
        socket,
        dir,
        statics: conf,
        export: export.to_owned(),
        rest,
        session: session.to_owned(),
    };
    wait_for("birdc to answer", || {
        b.cli("show status").contains("ready").then_some(())
    });
    b
}

impl Bird {
    /// Run a `birdc` command, returning its output.
    pub fn cli(&self, cmd: &str) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(cmd.split_whitespace())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Change the BGP session's extra options and have BIRD load them
    /// (`birdc configure`; a changed password or TTL setting restarts the
    /// session).
    pub fn reconfigure(&mut self, session: &str) {
        self.session = session.to_owned();
        self.load();
    }

    /// Change the IPv4 export filter and have BIRD load it: routes are
    /// announced again through the new filter.
    pub fn reexport(&mut self, export: &str) {
        self.export = export.to_owned();
        self.load();
    }

    fn load(&self) {
        std::fs::write(
            self.dir.path().join("bird.conf"),
            format!(
                "{}{}{}{}\n}}\n",
                self.statics, self.export, self.rest, self.session
            ),
        )
        .unwrap();
        let out = self.cli("configure");
        assert!(out.contains("Reconfigur"), "birdc configure: {out}");
    }

    /// Stop BIRD abruptly (the session drops without a NOTIFICATION).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
