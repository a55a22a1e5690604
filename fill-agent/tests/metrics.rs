//! The running agent's `/metrics` listener: OpenMetrics text with the right
//! content type, the agent's own metrics in it, 404 elsewhere, and a clean
//! exit on SIGTERM. The control plane and oca are unreachable: the agent
//! starts and reports anyway.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// The agent, killed on drop if it is still running.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the agent on `config` and read its banner (`fill-agent metrics=ADDR`).
fn start(config: &std::path::Path) -> (Agent, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fill-agent"))
        .args(["--config", config.to_str().unwrap()])
        .env("FILL_AGENT_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let agent = Agent(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let banner = rx.recv_timeout(DEADLINE).expect("a banner line");
    let addr = banner
        .trim()
        .strip_prefix("fill-agent metrics=")
        .unwrap_or_else(|| panic!("banner {banner:?}"))
        .to_owned();
    (agent, addr)
}

#[tokio::test]
async fn metrics_are_openmetrics_with_the_agents_own_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d0");
    std::fs::create_dir_all(root.join("objects")).unwrap();
    let status = dir.path().join("status.json");
    let config = dir.path().join("fill-agent.toml");
    // Port 1 on loopback refuses at once: no control plane, no oca.
    std::fs::write(
        &config,
        format!(
            r#"stores = ["{root}"]
metrics_listen = "127.0.0.1:0"
status_file = "{status}"
oca_admin = "http://127.0.0.1:1"
[control]
url = "http://127.0.0.1:1"
appliance_id = "a1"
credential = "0123456789abcdef"
cache_dir = "{cache}"
"#,
            root = root.display(),
            status = status.display(),
            cache = dir.path().join("cache").display(),
        ),
    )
    .unwrap();
    let (mut agent, addr) = start(&config);
    let http = control_client::http_client(Duration::from_secs(5), None).unwrap();

    let r = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("# TYPE fill_rate_bps gauge\n"), "{body}");
    assert!(
        body.lines().any(|l| l == "fill_received_bytes 0"),
        "nothing received yet: {body}"
    );
    // Counters carry OpenMetrics' `_total` suffix.
    assert!(
        body.contains("# TYPE fill_evicted_bytes counter\nfill_evicted_bytes_total 0\n"),
        "{body}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {body}"
    );

    let r = http
        .get(format!("http://{addr}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // With the control plane unreachable and nothing cached, the agent says so.
    wait_for("a no-plan status", || {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).ok()?).ok()?;
        (doc["state"] == "no-plan").then_some(())
    })
    .await;

    // SIGTERM: the listener and every loop stop, and the agent exits 0.
    let pid = rustix::process::Pid::from_raw(agent.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let code = wait_for("the exit after SIGTERM", || agent.0.try_wait().unwrap()).await;
    assert_eq!(code.code(), Some(0));
}

/// Polls `f` until it gives a value, for at most `DEADLINE`.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
