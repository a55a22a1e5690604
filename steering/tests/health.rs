//! `GET /health` on loopback, in process: ready while every check passes,
//! still 200 (degraded) with a dependency's breaker open, and 503 naming the
//! store once the database is gone from under it.

use std::time::Duration;

use serde_json::Value;
use steering::config::Config;
use steering::viewers::store::UserRow;

async fn health(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = client.get(format!("{base}/health")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn state<'a>(body: &'a Value, check: &str) -> &'a str {
    body["checks"][check]["state"].as_str().unwrap_or("missing")
}

#[tokio::test]
async fn health_reports_each_check_and_fails_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut cfg = Config {
        database: data.join("steering.db").display().to_string(),
        ..Config::default()
    };
    cfg.bookmarks.database = Some(dir.path().join("bookmarks.db").display().to_string());
    // A backend nobody listens on; one failure opens its breaker.
    cfg.recommendations.url = Some("http://127.0.0.1:9/rows".into());
    cfg.recommendations.failures = 1;
    cfg.recommendations.cool_down = Duration::from_secs(3600);
    cfg.validate().unwrap();
    let app = steering::load_state(cfg).await.unwrap();
    let user = UserRow {
        id: "alice".into(),
        plan: "basic".into(),
        subscription: "active".into(),
        country: "NL".into(),
        region: "eu-west".into(),
    };
    app.store
        .add_user(&user, &[("main".into(), "Main".into())], 0)
        .await
        .unwrap();
    let (token, hash) = steering::viewers::accounts::new_token();
    app.store
        .add_viewer_token(&hash, "alice", 0, u64::MAX >> 1)
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(steering::run(app, listener, async move {
        let _ = stopped.await;
    }));
    let client = control_client::http_client(Duration::from_secs(10), None).unwrap();

    let (status, body) = health(&client, &base).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    for check in [
        "store",
        "snapshot",
        "poller",
        "keys",
        "bookmarks",
        "recommendations",
    ] {
        assert_eq!(state(&body, check), "ok", "{check}: {body}");
    }

    // The home page falls back without the backend, whose breaker opens:
    // degraded, still ready.
    let home = client
        .get(format!("{base}/v1/home?profile=main"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status().as_u16(), 200);
    let home: Value = home.json().await.unwrap();
    assert_eq!(home["degraded"][0], "recommendations", "{home}");
    let (status, body) = health(&client, &base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(state(&body, "recommendations"), "degraded", "{body}");

    // The database directory is removed (a volume unmounted, a cleanup gone
    // wrong): steering must not take traffic it would write nowhere.
    std::fs::remove_dir_all(&data).unwrap();
    let (status, body) = health(&client, &base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(state(&body, "store"), "failed", "{body}");
    assert_eq!(state(&body, "keys"), "ok", "only the store failed: {body}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("steering stops")
        .unwrap()
        .unwrap();
}

/// The router served without the fleet's background loops (as if the health
/// poller and the snapshot rebuilds had stopped): `/health` turns 503 and
/// names them, once their limits pass.
#[tokio::test]
async fn a_stopped_poller_and_a_stale_snapshot_fail_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        database: dir.path().join("steering.db").display().to_string(),
        ..Config::default()
    };
    cfg.bookmarks.database = Some(dir.path().join("bookmarks.db").display().to_string());
    cfg.health.interval = Duration::from_millis(50);
    cfg.health.timeout = Duration::from_millis(50);
    cfg.steer.snapshot_refresh = Duration::from_millis(50);
    cfg.validate().unwrap();
    let app = steering::load_state(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, steering::router(app)).await.unwrap();
    });
    let client = control_client::http_client(Duration::from_secs(10), None).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = health(&client, &base).await;
        if status == 503 && state(&body, "snapshot") == "failed" {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state(&body, "poller"), "failed", "{body}");
    assert_eq!(state(&body, "store"), "ok", "{body}");
    assert_eq!(state(&body, "keys"), "ok", "{body}");
    server.abort();
}
