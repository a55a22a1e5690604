//! `GET /v1/appliances/{id}/fill-plan` end to end, in process: steering served
//! on loopback, two appliances registering and reporting inventory through the
//! real control-client, and the plan's version following its content.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use control_client::wire::{
    ApplianceInfo, FillPlan, HealthSummary, Heartbeat, Inventory, RegisterRequest,
    RenditionHolding, Tier, inventory_digest,
};
use control_client::{ClientError, ControlClient, RetryPolicy};
use steering::catalog::{Object, Rendition, Sidecar, Title};
use steering::config::{ApplianceConfig, Config};

const GIB: u64 = 1 << 30;

fn appliance(id: &str, window: Option<&str>, offset: &str) -> ApplianceConfig {
    ApplianceConfig {
        id: id.into(),
        credential: format!("{id}-credential-0123456789"),
        tier: Tier::Embedded,
        site: "isp-a".into(),
        region: "eu".into(),
        asn: 64500,
        http_url: Some(format!("http://{id}.example:8080")),
        https_url: None,
        // Nothing listens there: polls fail, but far too rarely to mark anyone down.
        admin_url: "http://127.0.0.1:9".into(),
        capacity_bps: 10_000_000_000,
        serves: vec![],
        location: None,
        fill_window: window.map(str::to_owned),
        utc_offset: offset.into(),
    }
}

fn title(id: &str, regions: &[&str], renditions: &[(&str, &[u64])]) -> Title {
    Title {
        id: id.into(),
        sidecar: Sidecar {
            name: id.to_uppercase(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            release: None,
            audience: None,
            artwork: Vec::new(),
        },
        renditions: renditions
            .iter()
            .map(|(name, sizes)| Rendition {
                id: format!("titles/{id}/{name}"),
                kind: "video".into(),
                codec: Some("avc1.4d401f".into()),
                width: Some(1280),
                height: Some(720),
                bandwidth: 2_000_000,
                container: "fmp4".into(),
                protocol: "hls".into(),
                segment_duration: 4.0,
                objects: sizes
                    .iter()
                    .enumerate()
                    .map(|(i, size)| Object {
                        key: format!("titles/{id}/{name}/seg{i}.m4s"),
                        size: *size,
                        sha256: format!("{i:064x}"),
                    })
                    .collect(),
            })
            .collect(),
        manifests: vec![],
    }
}

fn client(base: &str, a: &ApplianceConfig, cache: &Path) -> ControlClient {
    let policy = RetryPolicy {
        attempts: 1,
        base: Duration::from_millis(1),
        max: Duration::from_millis(2),
        timeout: Duration::from_secs(10),
    };
    ControlClient::new(
        &[base.to_owned()],
        &a.id,
        &a.credential,
        cache,
        None,
        policy,
    )
    .unwrap()
}

fn info(a: &ApplianceConfig, storage_bytes: u64) -> RegisterRequest {
    RegisterRequest {
        info: ApplianceInfo {
            storage_bytes,
            version: "test".into(),
            ..a.info()
        },
    }
}

fn heartbeat(status: &str, version: u64, held: &[(&str, u64, u64)]) -> Heartbeat {
    let renditions: Vec<RenditionHolding> = held
        .iter()
        .map(|(r, objects, bytes)| RenditionHolding {
            rendition: (*r).into(),
            objects: *objects,
            bytes: *bytes,
        })
        .collect();
    Heartbeat {
        prefixes: None,
        health: HealthSummary {
            status: status.into(),
            egress_bps: 0,
            capacity_bps: 10_000_000_000,
            connections: 0,
        },
        inventory: Some(Inventory::Full {
            version,
            digest: inventory_digest(&renditions),
            renditions,
        }),
    }
}

/// `(rendition, [source ids])` of every item.
fn sources(p: &FillPlan) -> Vec<(String, Vec<String>)> {
    p.items
        .iter()
        .map(|i| {
            (
                i.rendition.clone(),
                i.sources.iter().map(|s| s.id.clone()).collect(),
            )
        })
        .collect()
}

fn owned(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(r, s)| (r.to_string(), s.iter().map(|x| x.to_string()).collect()))
        .collect()
}

#[tokio::test]
async fn fill_plan_versions_follow_content_and_urls_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2) = (
        appliance("a1", Some("01:00-05:00"), "+02:00"),
        appliance("a2", None, "+00:00"),
    );
    let mut cfg = Config {
        database: dir.path().join("steering.db").display().to_string(),
        origin_url: Some("http://origin.example/".into()),
        appliances: vec![a1.clone(), a2.clone()],
        ..Config::default()
    };
    cfg.bookmarks.database = Some(dir.path().join("bookmarks.db").display().to_string());
    cfg.health.interval = Duration::from_secs(3600);
    cfg.health.down_after = 100;
    // Each appliance planned on its own (the forecast planner would put the
    // whole tail of their shared site on a2, whose disk has no limit): this is
    // about what every plan shares, versions, sources, windows and tokens.
    // tests/tests/placement.rs covers the forecast planner.
    cfg.fill.planner = steering::config::FillPlanner::Popularity;
    cfg.validate().unwrap();
    let state = steering::load_state(cfg).await.unwrap();
    for t in [
        title("t1", &["eu"], &[("v1", &[100, 200]), ("v2", &[50])]),
        title("t2", &["us"], &[("v1", &[10])]),
        title("t3", &["*"], &[("v1", &[30])]),
    ] {
        state.store.put_title(&t).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(steering::run(state, listener, async move {
        let _ = stopped.await;
    }));

    let c1 = client(&base, &a1, &dir.path().join("cache-a1"));
    let c2 = client(&base, &a2, &dir.path().join("cache-a2"));
    c1.register(&info(&a1, GIB)).await.unwrap();
    c2.register(&info(&a2, 0)).await.unwrap();
    c2.heartbeat(&heartbeat("ok", 1, &[("titles/t1/v1", 2, 300)]))
        .await
        .unwrap();

    // The first plan: eu titles only, by id (no plays yet), a2 as a peer for
    // what it holds, the origin for everything, a1's own window.
    let p1 = c1.fill_plan().await.unwrap();
    assert_eq!((p1.appliance.as_str(), p1.version), ("a1", 1));
    assert_eq!(
        (
            p1.window.start.as_str(),
            p1.window.end.as_str(),
            p1.window.utc_offset_minutes
        ),
        ("01:00", "05:00", 120)
    );
    assert_eq!(p1.budget_bytes, (GIB as f64 * 0.9) as u64);
    assert_eq!(
        sources(&p1),
        owned(&[
            ("titles/t1/v1", &["a2", "origin"]),
            ("titles/t1/v2", &["origin"]),
            ("titles/t3/v1", &["origin"]),
        ])
    );
    let item = &p1.items[0];
    assert_eq!(
        (item.bytes, item.objects.len(), item.urgent),
        (300, 2, false)
    );
    assert_eq!(item.sources[0].kind, "peer");
    assert_eq!(item.sources[1].kind, "origin");
    assert!(p1.expires >= p1.generated_at + 23 * 3600);

    // Source URLs carry a token the appliances' keys accept for any title.
    let keys = c1.keys().await.unwrap().to_keyset().unwrap();
    for s in &item.sources {
        let rest = s
            .base_url
            .strip_prefix(if s.id == "a2" {
                "http://a2.example:8080/t/"
            } else {
                "http://origin.example/t/"
            })
            .unwrap_or_else(|| panic!("unexpected URL {}", s.base_url));
        let token = rest.strip_suffix('/').unwrap();
        for path in ["/titles/t1/v1/seg0.m4s", "/titles/t3/v1/seg0.m4s"] {
            urlsign::verify(
                &keys,
                token,
                path,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                p1.generated_at,
                0,
            )
            .unwrap();
        }
    }

    // Asking again changes nothing: same version.
    let again = c1.fill_plan().await.unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(sources(&again), sources(&p1));

    // a2 now holds t1 completely: the sources change, so does the version.
    c2.heartbeat(&heartbeat(
        "ok",
        2,
        &[("titles/t1/v1", 2, 300), ("titles/t1/v2", 1, 50)],
    ))
    .await
    .unwrap();
    let p2 = c1.fill_plan().await.unwrap();
    assert_eq!(p2.version, 2);
    assert_eq!(
        sources(&p2),
        owned(&[
            ("titles/t1/v1", &["a2", "origin"]),
            ("titles/t1/v2", &["a2", "origin"]),
            ("titles/t3/v1", &["origin"]),
        ])
    );

    // A draining peer is no source.
    c2.heartbeat(&Heartbeat {
        prefixes: None,
        inventory: None,
        ..heartbeat("draining", 2, &[])
    })
    .await
    .unwrap();
    let p3 = c1.fill_plan().await.unwrap();
    assert_eq!(p3.version, 3);
    assert!(
        p3.items
            .iter()
            .all(|i| i.sources.iter().all(|s| s.id == "origin"))
    );
    assert_eq!(c1.cached_fill_plan(), Some(p3));

    // a2 has no storage size: no budget, its own plan, the default window in UTC.
    let other = c2.fill_plan().await.unwrap();
    assert_eq!((other.version, other.budget_bytes), (1, 0));
    assert_eq!(
        (other.window.start.as_str(), other.window.utc_offset_minutes),
        ("02:00", 0)
    );

    // Refusals: another appliance's plan, an unknown appliance.
    let http = control_client::http_client(Duration::from_secs(10), None).unwrap();
    let resp = http
        .get(format!("{base}/v1/appliances/a2/fill-plan"))
        .bearer_auth(format!("a1:{}", a1.credential))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "wrong_appliance");
    let nobody = client(
        &base,
        &appliance("nobody", None, "+00:00"),
        &dir.path().join("cache-nobody"),
    );
    match nobody.fill_plan().await {
        Err(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "unknown_appliance"))
        }
        other => panic!("expected unknown_appliance, got {other:?}"),
    }

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("steering_fill_plans_served_total 5"),
        "{metrics}"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
