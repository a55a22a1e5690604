//! The daemons under a (fake) service manager: a unix datagram socket passed as
//! `NOTIFY_SOCKET`, as systemd does for `Type=notify`, with `WATCHDOG_USEC`.
//! Each must say READY=1 once it serves, keep pinging the watchdog, show a
//! STATUS= line, and say RELOADING=1 / STOPPING=1 around SIGHUP / SIGTERM.
//! Then the shipped units themselves, booted under a real systemd.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{DEADLINE, Proc, http};

/// The service manager's end: every datagram, split into its lines.
struct Manager {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send(line.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Manager {
            rx,
            seen: Vec::new(),
            path,
            _dir: dir,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            // A 1.5 s watchdog: pings every 0.5 s.
            ("WATCHDOG_USEC", "1500000".into()),
        ]
    }

    /// Wait (bounded) for a line matching `f`, after everything seen so far.
    fn expect(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} from the daemon; got {:?}", self.seen),
            }
        }
    }

    /// `n` watchdog pings from now on.
    fn pings(&mut self, n: usize) {
        for _ in 0..n {
            self.expect("WATCHDOG=1", |l| l == "WATCHDOG=1");
        }
    }
}

fn start(name: &str, args: &[&str], m: &Manager, log: (&str, &str)) -> Proc {
    let env = m.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(log);
    Proc::start(name, args, &env)
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn oca_is_ready_once_serving_pings_the_watchdog_and_reports_reload_and_drain() {
    let store = tempfile::tempdir().unwrap();
    let objects = store.path().join("objects/titles/t1");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(objects.join("seg.m4s"), vec![7u8; 1000]).unwrap();
    let mut m = Manager::new();
    let mut oca = start(
        "oca",
        &[
            "--store",
            store.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--access",
            "open",
            "--workers",
            "2",
        ],
        &m,
        ("OCA_LOG", "warn"),
    );
    m.expect("READY=1", |l| l == "READY=1");
    // Ready means serving: the object is there at once.
    let r = http(oca.addr("http="), "GET", "/titles/t1/seg.m4s", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let status = m.expect("STATUS=", |l| l.starts_with("STATUS="));
    assert!(
        status.starts_with("STATUS=serving: ") && status.contains("1 objects"),
        "{status}"
    );
    m.pings(3);

    signal(&oca, "-HUP");
    m.expect("RELOADING=1", |l| l == "RELOADING=1");
    m.expect("READY=1 after the reload", |l| l == "READY=1");
    m.pings(1);

    signal(&oca, "-TERM");
    m.expect("STOPPING=1", |l| l == "STOPPING=1");
    let drain = m.expect("STATUS= while draining", |l| l.starts_with("STATUS="));
    assert!(drain.starts_with("STATUS=draining"), "{drain}");
    let exited = e2e::wait_for("oca to exit", || oca.child.try_wait().unwrap());
    assert!(exited.success());
}

#[test]
fn steering_is_ready_pings_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("steering.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n",
            dir.path().join("steering.db").display()
        ),
    )
    .unwrap();
    let mut m = Manager::new();
    let steering = start(
        "steering",
        &["--config", cfg.to_str().unwrap()],
        &m,
        ("STEERING_LOG", "warn"),
    );
    m.expect("READY=1", |l| l == "READY=1");
    let r = http(steering.addr("http="), "GET", "/v1/appliances", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let status = m.expect("STATUS=", |l| l.starts_with("STATUS="));
    assert!(status.contains("0 of 0 appliances up"), "{status}");
    m.pings(3);
    signal(&steering, "-HUP");
    m.expect("RELOADING=1", |l| l == "RELOADING=1");
    m.expect("READY=1 after the reload", |l| l == "READY=1");
    signal(&steering, "-TERM");
    m.expect("STOPPING=1", |l| l == "STOPPING=1");
}

#[test]
fn fill_agent_is_ready_without_a_control_plane_and_pings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fill-agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "stores = [\"{disk}\"]\nstatus_file = \"{status}\"\nheadroom_percent = 0\n\
             [control]\nurl = \"http://127.0.0.1:9\"\nappliance_id = \"a\"\n\
             credential = \"0123456789abcdef0123\"\ncache_dir = \"{cache}\"\n",
            disk = dir.path().join("disk0").display(),
            status = dir.path().join("fill-status.json").display(),
            cache = dir.path().join("cache").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("disk0")).unwrap();
    let mut m = Manager::new();
    let agent = start(
        "fill-agent",
        &["--config", cfg.to_str().unwrap()],
        &m,
        ("FILL_AGENT_LOG", "error"),
    );
    m.expect("READY=1", |l| l == "READY=1");
    m.pings(3);
    // No control plane and no cached plan: it says so.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = m.expect("STATUS=", |l| l.starts_with("STATUS="));
        if s.starts_with("STATUS=no-plan") {
            break;
        }
        assert!(Instant::now() < until, "{s}");
    }
    signal(&agent, "-TERM");
    m.expect("STOPPING=1", |l| l == "STOPPING=1");
}

/// The package's units, users and example configs under a real systemd (PID 1
/// of private namespaces; see tests/systemd/boot-test.sh): sandboxed services
/// start, serve, register, reload, get restarted by the watchdog when wedged,
/// and drain on stop.
#[test]
fn the_shipped_units_boot_serve_and_recover_under_a_real_systemd() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/boot-test.sh");
    let oca = e2e::binary("oca");
    let out = Command::new("timeout")
        .args(["50"])
        .arg(&script)
        .arg(oca.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("boot-test: all passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Debian package: binaries, units, sysusers, docs, and the example configs
/// as conffiles (an operator's edits survive upgrades).
#[test]
fn the_deb_carries_binaries_units_configs_and_user_setup() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = tempfile::tempdir().unwrap();
    let oca = e2e::binary("oca");
    let out = Command::new(repo.join("scripts/package-deb.sh"))
        .arg("--bin-dir")
        .arg(oca.parent().unwrap())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(deb.ends_with(".deb"), "{deb}");
    let run = |args: &[&str]| {
        let o = Command::new("dpkg-deb").args(args).output().unwrap();
        assert!(o.status.success(), "dpkg-deb {args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(run(&["--field", &deb, "Package"]).trim(), "oca-stack");
    let contents = run(&["--contents", &deb]);
    for path in [
        "./usr/bin/oca",
        "./usr/bin/fill-agent",
        "./usr/bin/steering",
        "./lib/systemd/system/oca.service",
        "./lib/systemd/system/fill-agent.service",
        "./lib/systemd/system/steering.service",
        "./usr/lib/sysusers.d/oca-stack.conf",
        "./usr/lib/oca-stack/setup",
        "./etc/oca/oca.toml",
        "./etc/oca/fill-agent.toml",
        "./etc/steering/steering.toml",
        "./usr/share/doc/oca-stack/OPERATIONS.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    let control = out_dir.path().join("control");
    run(&["--control", &deb, control.to_str().unwrap()]);
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    for c in [
        "/etc/oca/oca.toml",
        "/etc/oca/fill-agent.toml",
        "/etc/steering/steering.toml",
    ] {
        assert!(conffiles.lines().any(|l| l == c), "{conffiles}");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("/usr/lib/oca-stack/setup"), "{postinst}");
    // The example configs it ships are valid as they stand, and the setup
    // postinst runs creates the users.
    let staged = out_dir.path().join("x");
    run(&["-x", &deb, staged.to_str().unwrap()]);
    let setup = std::fs::read_to_string(staged.join("usr/lib/oca-stack/setup")).unwrap();
    assert!(setup.contains("systemd-sysusers"), "{setup}");
    for (bin, cfg) in [
        ("oca", "etc/oca/oca.toml"),
        ("fill-agent", "etc/oca/fill-agent.toml"),
        ("steering", "etc/steering/steering.toml"),
    ] {
        let o = Command::new(staged.join("usr/bin").join(bin))
            .args(["check-config", "--config"])
            .arg(staged.join(cfg))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{bin} check-config {cfg}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
