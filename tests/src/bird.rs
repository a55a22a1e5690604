//! BIRD 2 (Debian `bird2`) as an ISP's router on loopback, for interop tests:
//! it connects to an appliance's passive BGP listener and announces client
//! prefixes from static protocols, one protocol per prefix so a test can
//! withdraw one with `birdc disable`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::wait_for;

pub struct Bird {
    child: Option<Child>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.stop();
    }
}

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

/// Start BIRD as AS `asn` with router id `router_id`, peering with `peer`
/// (whose AS is `peer_asn`), announcing each of `prefixes` (IPv4 and IPv6).
pub fn start(
    asn: u32,
    router_id: &str,
    peer: SocketAddr,
    peer_asn: u32,
    prefixes: &[&str],
) -> Bird {
    ensure_installed();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut conf = format!("router id {router_id};\nlog stderr all;\nprotocol device {{}}\n");
    for (i, p) in prefixes.iter().enumerate() {
        let family = if p.contains(':') { "ipv6" } else { "ipv4" };
        conf += &format!("protocol static s{i} {{ {family}; route {p} blackhole; }}\n");
    }
    // IPv6 routes travel over the IPv4 session (MP-BGP); their next hop is
    // an address BIRD is told to use, since the session has none of that family.
    conf += &format!(
        r#"protocol bgp oca {{
    local {local} as {asn};
    neighbor {ip} port {port} as {peer_asn};
    hold time 9;
    keepalive time 3;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 {{ import none; export all; }};
    ipv6 {{ import none; export all; next hop address ::1; }};
}}
"#,
        local = peer.ip(),
        ip = peer.ip(),
        port = peer.port(),
    );
    std::fs::write(d.join("bird.conf"), &conf).unwrap();
    let socket = d.join("bird.ctl");
    let child = Command::new("bird")
        .arg("-f")
        .arg("-c")
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
        _dir: dir,
    };
    wait_for("birdc to answer", || {
        b.cli("show status").contains("ready").then_some(())
    });
    b
}

impl Bird {
    /// Run a `birdc` command, returning its output.
    pub fn cli(&self, cmd: &str) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(cmd.split_whitespace())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Stop BIRD (the session drops without a NOTIFICATION if killed).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn config_dir(&self) -> &Path {
        self._dir.path()
    }
}
