//! The daemons under a (fake) service manager: a unix datagram socket passed as
//! `NOTIFY_SOCKET`, as systemd does for `Type=notify`, with `WATCHDOG_USEC`.
//! Each must say READY=1 once it serves, keep pinging the watchdog, show a
//! STATUS= line, and say RELOADING=1 / STOPPING=1 around SIGHUP / SIGTERM.

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
