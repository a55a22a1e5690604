//! A network of the test's own: the test runs again inside a fresh network
//! namespace (`unshare --net`), where loopback is private, so it may shape
//! traffic with tc (a slow path between one appliance and one client
//! network) and choose the default source address of loopback connections
//! (a browser that cannot bind one appears to be in an ISP) without
//! touching the machine's network or the tests running beside it.
//!
//! Only the kernel's own tools: `unshare`, `ip` and `tc` (htb and u32, both
//! in this kernel; netem and policing are not).

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

/// Set in the re-run test: it is already in its namespace.
const INSIDE: &str = "E2E_OWN_NETWORK";

/// Call first in a test that needs its own network: in the test as nextest
/// or cargo started it, re-runs this test inside a new network namespace,
/// waits for it and returns false (the test is then done: the inner run
/// passed, or this panics with its status); inside, brings loopback up and
/// returns true (go on).
///
/// Needs root (CAP_SYS_ADMIN), which the test machines have.
pub fn own_network() -> bool {
    if std::env::var_os(INSIDE).is_some() {
        run("ip", &["link", "set", "lo", "up"]);
        return true;
    }
    // libtest names each test's thread after the test.
    let name = std::thread::current()
        .name()
        .expect("a test thread has the test's name")
        .to_owned();
    let exe = std::env::current_exe().expect("test executable");
    // The inner run inherits this process group, which nextest kills on a
    // timeout, so it cannot outlive the test.
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args([
            name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(INSIDE, "1")
        .status()
        .expect("unshare (util-linux) runs");
    assert!(
        status.success(),
        "{name}, run again in its own network namespace, failed ({status}; its output is above)"
    );
    false
}

/// Loopback connections that do not bind an address come from `source`
/// (any 127.x.y.z), as if this machine sat in the network it belongs to.
pub fn default_source(source: IpAddr) {
    let src = source.to_string();
    for dst in ["127.0.0.0/8", "127.0.0.1"] {
        run(
            "ip",
            &[
                "route", "change", "table", "local", "local", dst, "dev", "lo", "src", &src,
            ],
        );
    }
}

/// Rate caps on loopback: each caps what one server address sends to one
/// client network (htb classes selected by u32 on source address and port
/// and destination prefix); everything else is not shaped.
pub struct Shaper {
    next_class: u32,
}

impl Shaper {
    /// Installs the root qdisc. Only inside [`own_network`].
    pub fn new() -> Shaper {
        assert!(
            std::env::var_os(INSIDE).is_some(),
            "shaping loopback outside a namespace of the test's own would slow the whole machine"
        );
        // `default 0`: unclassified packets bypass shaping.
        run(
            "tc",
            &[
                "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0",
            ],
        );
        Shaper { next_class: 10 }
    }

    /// What `server` sends to addresses in `clients` (a prefix such as
    /// 127.1.0.0/16) goes at most `rate` (tc's units: `4mbit`).
    pub fn cap(&mut self, server: SocketAddr, clients: &str, rate: &str) {
        let class = format!("1:{}", self.next_class);
        self.next_class += 1;
        run(
            "tc",
            &[
                "class", "add", "dev", "lo", "parent", "1:", "classid", &class, "htb", "rate",
                rate, "ceil", rate,
            ],
        );
        let src = format!("{}/32", server.ip());
        let port = server.port().to_string();
        run(
            "tc",
            &[
                "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "src", &src, "match", "ip", "sport", &port, "0xffff", "match", "ip",
                "dst", clients, "flowid", &class,
            ],
        );
    }
}

impl Default for Shaper {
    fn default() -> Self {
        Shaper::new()
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
