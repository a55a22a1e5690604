//! One behaviour, two backends: every case here runs against SQLite and
//! against a PostgreSQL server the test starts itself. Each case gets two
//! handles on one database, `a` and `b`, as two steering instances would
//! have (for SQLite: two opens of the file, as two processes would).

use std::sync::Arc;

use control_client::wire::{ApplianceInfo, EnrolRequest, KeyWire, RenditionHolding, Tier};

use super::{Postgres, Sqlite, Store};
use crate::catalog::{Object, Rendition as CatalogRendition, Sidecar, Title as CatalogTitle};
use crate::fleet::enrol::{Refusal, Verdict};
use crate::fleet::store::{EnrolmentRow, InventoryRow, KeyStep, LearnedRow, Placement, Revoked};
use crate::viewers::store::{StreamRow, UserRow};

type Case = fn(
    Arc<dyn Store>,
    Arc<dyn Store>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |a, b| Box::pin($name(a, b)))),*];
    };
}

cases!(
    registration_outlives_declaration,
    inventory_and_keys_persist,
    catalog_plays_and_plan_versions,
    stream_limit_counts_only_live_streams,
    stream_limit_holds_across_instances,
    a_due_key_is_created_once_across_instances,
    prune_drops_only_old_rows_in_batches,
    an_enrolment_token_enrols_once_across_instances,
    revocation_holds_until_a_new_credential,
    measured_paths_are_shared_newest_first,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a: Arc<dyn Store> = Arc::new(Sqlite::open(&path).unwrap());
        let b: Arc<dyn Store> = Arc::new(Sqlite::open(&path).unwrap());
        eprintln!("sqlite: {name}");
        case(a, b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let server = tokio::task::spawn_blocking(temp_postgres::Server::start)
        .await
        .unwrap()
        .expect("start PostgreSQL (scripts/test.sh installs it)");
    for (i, (name, case)) in CASES.iter().enumerate() {
        let db = format!("case{i}");
        server.create_database(&db).unwrap();
        let url = server.url(&db);
        let a: Arc<dyn Store> = Arc::new(Postgres::open(&url, 4).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(Postgres::open(&url, 4).await.unwrap());
        eprintln!("postgres: {name}");
        case(a, b).await;
    }
}

fn info() -> ApplianceInfo {
    ApplianceInfo {
        tier: Tier::Embedded,
        site: "s1".into(),
        region: "eu".into(),
        asn: 64500,
        http_url: Some("http://127.0.0.1:1".into()),
        https_url: None,
        admin_url: "http://127.0.0.1:2".into(),
        capacity_bps: 10_000_000_000,
        storage_bytes: 1 << 40,
        version: "0.1.0".into(),
    }
}

fn user(id: &str, region: &str) -> UserRow {
    UserRow {
        id: id.into(),
        plan: "basic".into(),
        subscription: "active".into(),
        country: "NL".into(),
        region: region.into(),
    }
}

fn stream(id: &str, user: &str, title: &str, at: u64) -> StreamRow {
    StreamRow {
        id: id.into(),
        user: user.into(),
        profile: "main".into(),
        title: title.into(),
        client: "127.0.0.1".into(),
        body: "{}".into(),
        expires: at + 3600,
        started: at,
        last_seen: at,
        ended: None,
    }
}

async fn registration_outlives_declaration(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let declared = info();
    let moved = ApplianceInfo {
        admin_url: "http://127.0.0.1:3".into(),
        ..info()
    };
    let edited = ApplianceInfo {
        site: "s2".into(),
        ..info()
    };
    // Until it registers, the config's declaration applies, edits too.
    a.declare_appliance("a1", &declared, "c1", 1).await.unwrap();
    a.declare_appliance("a1", &edited, "c1", 2).await.unwrap();
    assert_eq!(b.appliances().await.unwrap()[0].info, edited);
    // It registers (through the other instance) from a new address; a
    // restart declares it again.
    b.upsert_appliance("a1", &moved, "c1", 3).await.unwrap();
    a.declare_appliance("a1", &declared, "c2", 4).await.unwrap();
    let row = &a.appliances().await.unwrap()[0];
    assert_eq!(row.info, moved);
    assert_eq!(row.credential_sha256, "c2");
}

async fn inventory_and_keys_persist(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    a.upsert_appliance("a1", &info(), "abc", 1).await.unwrap();
    let r = |n: &str, o| RenditionHolding {
        rendition: n.into(),
        objects: o,
        bytes: o * 10,
    };
    for (version, names) in [(1, ["t/1", "t/2"]), (2, ["t/2", "t/3"])] {
        let inv = InventoryRow {
            version,
            digest: format!("d{version}"),
            renditions: names.iter().map(|n| r(n, 3)).collect(),
        };
        a.put_inventory("a1", &inv).await.unwrap();
    }
    let inv = b.inventory("a1").await.unwrap();
    assert_eq!((inv.version, inv.digest.as_str()), (2, "d2"));
    let names: Vec<_> = inv
        .renditions
        .iter()
        .map(|r| r.rendition.as_str())
        .collect();
    assert_eq!(names, ["t/2", "t/3"]);
    assert!(b.inventory("nobody").await.unwrap().renditions.is_empty());

    let key = |id: &str, not_after| KeyWire {
        id: id.into(),
        secret: "s".into(),
        not_before: Some(1),
        not_after: Some(not_after),
    };
    let held = a
        .step_keys(Box::new(move |held| {
            assert!(held.is_empty());
            KeyStep {
                create: Some((key("k1", 100), 1)),
                delete_retired_before: 0,
            }
        }))
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(b.keys().await.unwrap(), held);
    let held = b
        .step_keys(Box::new(move |_| KeyStep {
            create: Some((key("k2", 1000), 150)),
            delete_retired_before: 200,
        }))
        .await
        .unwrap();
    let ids: Vec<&str> = held.iter().map(|(k, _)| k.id.as_str()).collect();
    assert_eq!(ids, ["k2"], "k1 retired at 100, before 200");
    // Learned prefixes and the RIB.
    let learned = LearnedRow {
        appliance: "a1".into(),
        version: 3,
        prefixes: vec!["10.0.0.0/8".into(), "10.1.0.0/16".into()],
        attrs: [(
            "10.1.0.0/16".to_owned(),
            control_client::wire::RouteAttrs {
                communities: vec!["64500:100".into()],
                med: Some(7),
            },
        )]
        .into(),
    };
    a.put_learned_prefixes(&learned).await.unwrap();
    assert_eq!(b.learned_prefixes().await.unwrap(), [learned]);
    assert_eq!(a.rib_generation().await.unwrap(), 0);
    a.put_rib(&[("10.0.0.0/8".into(), 1), ("10.0.0.0/8".into(), 2)])
        .await
        .unwrap();
    a.put_rib(&[("192.168.0.0/16".into(), 64501)])
        .await
        .unwrap();
    assert_eq!(b.rib_generation().await.unwrap(), 2);
    assert_eq!(
        b.rib().await.unwrap(),
        [("192.168.0.0/16".to_owned(), 64501)]
    );
}

fn rendition(id: &str, keys: &[(&str, u64)]) -> CatalogRendition {
    CatalogRendition {
        id: id.into(),
        kind: "video".into(),
        codec: Some("avc1.4d401f".into()),
        width: Some(1280),
        height: Some(720),
        bandwidth: 1_000_000,
        container: "fmp4".into(),
        protocol: "hls".into(),
        segment_duration: 4.0,
        objects: keys
            .iter()
            .map(|(k, size)| Object {
                key: (*k).into(),
                size: *size,
                sha256: "ab".repeat(32),
            })
            .collect(),
    }
}

async fn catalog_plays_and_plan_versions(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let title = CatalogTitle {
        id: "t1".into(),
        sidecar: Sidecar {
            name: "One".into(),
            regions: vec!["eu".into(), "*".into()],
            release: Some(1234),
            audience: Some(0.25),
            artwork: vec!["poster.jpg".into()],
        },
        renditions: vec![
            rendition(
                "titles/t1/v2",
                &[
                    ("titles/t1/v2/index.m3u8", 1),
                    ("titles/t1/v2/init.mp4", 5),
                    ("titles/t1/v2/seg10.m4s", 7),
                ],
            ),
            rendition("titles/t1/v1", &[("titles/t1/v1/seg2.m4s", 3)]),
        ],
        manifests: vec![],
    };
    a.put_title(&title).await.unwrap();
    // Re-importing replaces, not duplicates.
    a.put_title(&title).await.unwrap();
    assert_eq!(b.catalog_counts().await.unwrap(), (1, 2, 4, 16));
    assert_eq!(
        b.rendition_totals("titles/t1/v2").await.unwrap(),
        Some((3, 13))
    );
    assert_eq!(b.rendition_totals("titles/t1/none").await.unwrap(), None);
    assert_eq!(b.catalog_totals().await.unwrap().len(), 2);
    let record = b.title("t1").await.unwrap().unwrap();
    assert_eq!(record.artwork, ["poster.jpg"]);
    assert_eq!((record.name.as_str(), record.release), ("One", Some(1234)));
    assert_eq!(
        record.renditions[1].playlist.as_deref(),
        Some("titles/t1/v2/index.m3u8")
    );
    assert!(b.title("t2").await.unwrap().is_none());
    let brief = b.titles_brief().await.unwrap();
    assert_eq!(brief.len(), 1);
    assert_eq!(
        (brief[0].id.as_str(), brief[0].name.as_str()),
        ("t1", "One")
    );
    assert_eq!(brief[0].regions, ["eu", "*"]);
    let catalog = b.fill_catalog().await.unwrap();
    assert_eq!(catalog.len(), 1);
    let t = &catalog[0];
    assert_eq!(
        (t.id.as_str(), t.regions.clone(), t.release),
        ("t1", vec!["eu".to_owned(), "*".to_owned()], Some(1234))
    );
    let ids: Vec<&str> = t.renditions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["titles/t1/v1", "titles/t1/v2"]);
    let keys: Vec<&str> = t.renditions[1]
        .objects
        .iter()
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "titles/t1/v2/index.m3u8",
            "titles/t1/v2/init.mp4",
            "titles/t1/v2/seg10.m4s"
        ],
        "import order, not key order"
    );
    assert_eq!(t.renditions[1].bytes(), 13);

    // Plays of every region, newest first, capped; started streams record them.
    for (i, (title, region, at)) in [("t1", "eu", 10), ("t1", "us", 20), ("t2", "eu", 5)]
        .into_iter()
        .enumerate()
    {
        let u = format!("u{i}");
        a.add_user(&user(&u, region), &[], 0).await.unwrap();
        let s = stream(&format!("s{i}"), &u, title, at);
        assert_eq!(a.start_stream(&s, region, 1, 0).await.unwrap(), Ok(()));
    }
    let plays = b.plays_all_since(6, 10).await.unwrap();
    let got: Vec<(&str, &str, u64)> = plays
        .iter()
        .map(|p| (p.title.as_str(), p.region.as_str(), p.at))
        .collect();
    assert_eq!(got, [("t1", "us", 20), ("t1", "eu", 10)]);
    assert_eq!(b.plays_all_since(0, 1).await.unwrap().len(), 1);
    assert_eq!(
        b.plays_since("eu", 0, 10).await.unwrap(),
        [("t1".to_owned(), 10), ("t2".to_owned(), 5)]
    );

    // Content keys: replaced whole per title; licences counted up to a limit.
    a.put_content_keys(
        "t1",
        &[("aa".into(), "s1".into()), ("bb".into(), "s2".into())],
        5,
    )
    .await
    .unwrap();
    assert_eq!(
        b.content_keys("t1").await.unwrap(),
        [
            ("aa".to_owned(), "s1".to_owned()),
            ("bb".to_owned(), "s2".to_owned())
        ]
    );
    a.put_content_keys("t1", &[("cc".into(), "s3".into())], 6)
        .await
        .unwrap();
    assert_eq!(
        b.content_keys("t1").await.unwrap(),
        [("cc".to_owned(), "s3".to_owned())]
    );
    a.put_content_keys("t1", &[], 7).await.unwrap();
    assert!(
        b.content_keys("t1").await.unwrap().is_empty(),
        "clear again"
    );
    assert_eq!(a.count_licence("p1", 2).await.unwrap(), Some(1));
    assert_eq!(b.count_licence("p1", 2).await.unwrap(), Some(2));
    assert_eq!(
        a.count_licence("p1", 2).await.unwrap(),
        None,
        "at the limit"
    );
    assert_eq!(b.count_licence("p2", 2).await.unwrap(), Some(1));

    // Demand counts in windows ending at `now`: at 20 every play is in the
    // last day and hour; at 86,410 those at 5 and 10 are a day back, the one
    // at 20 is not (86,390 s ago).
    let mut c = b.demand(20, 14).await.unwrap();
    c.daily.sort_by(|x, y| x.partial_cmp(y).unwrap());
    c.hourly.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(
        c.daily,
        [
            ("eu".to_owned(), "t1".to_owned(), 0, 1.0),
            ("eu".to_owned(), "t2".to_owned(), 0, 1.0),
            ("us".to_owned(), "t1".to_owned(), 0, 1.0)
        ]
    );
    assert_eq!(
        c.hourly,
        [("eu".to_owned(), 0, 2.0), ("us".to_owned(), 0, 1.0)]
    );
    let mut c = b.demand(86_410, 14).await.unwrap();
    c.daily.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(
        c.daily,
        [
            ("eu".to_owned(), "t1".to_owned(), 1, 1.0),
            ("eu".to_owned(), "t2".to_owned(), 1, 1.0),
            ("us".to_owned(), "t1".to_owned(), 0, 1.0)
        ]
    );
    assert!(
        b.demand(86_400 * 20, 14).await.unwrap().daily.is_empty(),
        "beyond 14 days"
    );

    // Versions: 1 for the first plan, unchanged for the same content, bumped for new.
    assert_eq!(a.fill_plan_version("a", "d1", 100).await.unwrap(), 1);
    assert_eq!(b.fill_plan_version("a", "d1", 200).await.unwrap(), 1);
    assert_eq!(a.fill_plan_version("b", "d1", 200).await.unwrap(), 1);
    assert_eq!(b.fill_plan_version("a", "d2", 300).await.unwrap(), 2);
    assert_eq!(a.fill_plan_version("a", "d1", 400).await.unwrap(), 3);
}

async fn stream_limit_counts_only_live_streams(s: Arc<dyn Store>, other: Arc<dyn Store>) {
    let u = user("u", "eu-west");
    s.add_user(&u, &[("main".into(), "Main".into())], 0)
        .await
        .unwrap();
    assert_eq!(
        other.profiles("u").await.unwrap(),
        [("main".to_owned(), "Main".to_owned())]
    );
    s.add_profile("u", "kids", "Kids").await.unwrap();
    assert_eq!(other.profiles("u").await.unwrap().len(), 2);
    assert!(
        s.add_user(&u, &[], 0).await.is_err(),
        "a user id is taken once"
    );
    let start = |id: &'static str, at: u64, since: u64| {
        let s = Arc::clone(&s);
        async move {
            s.start_stream(&stream(id, "u", "t1", at), "eu-west", 1, since)
                .await
                .unwrap()
        }
    };
    assert_eq!(start("a", 1000, 900).await, Ok(()));
    assert_eq!(
        start("b", 1010, 910).await,
        Err(1),
        "one live stream already"
    );
    // No heartbeat since 1000: once the window moves past it, it stops counting.
    assert_eq!(start("c", 1200, 1100).await, Ok(()));
    // A bookmark keeps a stream alive; ending one frees its slot.
    assert!(other.touch_stream("c", "u", 1300).await.unwrap());
    assert!(!other.touch_stream("c", "someone-else", 1300).await.unwrap());
    assert_eq!(start("d", 1350, 1250).await, Err(1));
    assert_eq!(other.stream("c").await.unwrap().unwrap().last_seen, 1300);
    assert!(other.end_stream("c", "u", 1360).await.unwrap());
    assert!(
        !s.touch_stream("c", "u", 1370).await.unwrap(),
        "ended streams stay ended"
    );
    assert_eq!(start("e", 1380, 1280).await, Ok(()));
    assert_eq!(
        other.stream("e").await.unwrap(),
        Some(stream("e", "u", "t1", 1380))
    );
    // Heartbeats' batched sightings: one transaction, the ids it did not
    // find active back (ended, someone else's, unknown); never backwards.
    let seen = |id: &str, user: &str, at: u64| (id.to_owned(), user.to_owned(), at);
    let gone = other
        .touch_streams(&[
            seen("e", "u", 1400),
            seen("c", "u", 1400),
            seen("e", "someone-else", 1400),
            seen("nope", "u", 1400),
        ])
        .await
        .unwrap();
    assert_eq!(gone, ["c", "e", "nope"]);
    assert_eq!(other.stream("e").await.unwrap().unwrap().last_seen, 1400);
    assert_eq!(
        s.touch_streams(&[seen("e", "u", 1390)]).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(other.stream("e").await.unwrap().unwrap().last_seen, 1400);
    // Ends their players reported, committed together: only the user's
    // live streams; the others come back.
    let missed = s
        .end_streams(&[
            seen("e", "someone-else", 1410),
            seen("e", "u", 1420),
            seen("nope", "u", 1430),
        ])
        .await
        .unwrap();
    assert_eq!(missed, ["e", "nope"]);
    assert_eq!(other.stream("e").await.unwrap().unwrap().ended, Some(1420));
    assert_eq!(other.stream("nope").await.unwrap(), None);
    // Every started play is recorded for popularity.
    assert_eq!(other.plays_since("eu-west", 0, 10).await.unwrap().len(), 3);
    assert!(
        other
            .plays_since("us-east", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Tokens resolve by hash and only until they expire.
    s.add_viewer_token("h", "u", 0, 100).await.unwrap();
    assert_eq!(other.user_by_token("h", 99).await.unwrap(), Some(u.clone()));
    assert_eq!(other.user_by_token("h", 100).await.unwrap(), None);
    // Users change and list.
    let moved = UserRow {
        region: "us-east".into(),
        ..u
    };
    assert!(s.update_user(&moved).await.unwrap());
    assert!(!s.update_user(&user("ghost", "eu")).await.unwrap());
    assert_eq!(other.user("u").await.unwrap(), Some(moved.clone()));
    assert_eq!(other.users().await.unwrap(), [moved]);
}

/// Plays for one account racing through two instances: the limit holds.
async fn stream_limit_holds_across_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    a.add_user(&user("u", "eu"), &[], 0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            s.start_stream(&stream(&format!("s{i}"), "u", "t", 100), "eu", 3, 0)
                .await
                .unwrap()
        }));
    }
    let mut started = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            started += 1;
        }
    }
    assert_eq!(started, 3, "exactly the plan's three streams start");
}

/// Instances applying the key schedule at the same moment make one key.
async fn a_due_key_is_created_once_across_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            s.step_keys(Box::new(move |held| KeyStep {
                create: held.is_empty().then(|| {
                    let key = KeyWire {
                        id: format!("k-by-{i}"),
                        secret: "s".into(),
                        not_before: None,
                        not_after: None,
                    };
                    (key, 1)
                }),
                delete_retired_before: 0,
            }))
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 1);
    }
    assert_eq!(a.keys().await.unwrap().len(), 1);
}

async fn prune_drops_only_old_rows_in_batches(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    for i in 0..30u64 {
        let u = format!("u{i}");
        a.add_user(&user(&u, "eu"), &[], 0).await.unwrap();
        let at = if i < 25 { 100 + i } else { 10_000 + i };
        let s = stream(&format!("s{i}"), &u, "t", at);
        assert_eq!(a.start_stream(&s, "eu", 1, 0).await.unwrap(), Ok(()));
    }
    let mut rounds = 0;
    let mut removed = 0;
    loop {
        let n = b.prune(5_000, 5_000, 10).await.unwrap();
        removed += n;
        rounds += 1;
        if n < 10 {
            break;
        }
    }
    assert_eq!(
        (removed, rounds),
        (25, 3),
        "25 old rows of each, 10 at a time"
    );
    assert!(a.stream("s0").await.unwrap().is_none());
    assert!(a.stream("s29").await.unwrap().is_some());
    assert_eq!(a.plays_all_since(0, 100).await.unwrap().len(), 5);
}

fn enrolment(token_sha256: &str, appliance: Option<&str>, created: u64) -> EnrolmentRow {
    EnrolmentRow {
        token_sha256: token_sha256.into(),
        appliance: appliance.map(str::to_owned),
        placement: Placement {
            tier: Tier::Embedded,
            site: "s1".into(),
            region: None,
            location: Some([52.37, 4.9]),
            fill_window: Some("01:00-05:00".into()),
            utc_offset: Some("+01:00".into()),
        },
        created,
        expires: created + 3600,
        used: None,
    }
}

fn enrol_request(id: &str, credential_sha256: &str) -> EnrolRequest {
    EnrolRequest {
        id: id.into(),
        credential_sha256: credential_sha256.into(),
        info: info(),
    }
}

/// The same token presented at both instances at once, by eight would-be
/// appliances: one enrols, the rest are refused; its retry is answered again.
async fn an_enrolment_token_enrols_once_across_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    a.add_enrolment(&enrolment("t1", None, 1000)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let req = enrol_request(&format!("e{i}"), &format!("c{i}"));
            (i, s.enrol("t1", &req, 1001).await.unwrap())
        }));
    }
    let mut enrolled = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Verdict::Enrol { id, bound }) => {
                assert_eq!(id, format!("e{i}"));
                assert_eq!(
                    bound.region.as_deref(),
                    Some("eu"),
                    "bound to what it stated"
                );
                enrolled.push(i);
            }
            (_, Verdict::Refused(Refusal::Used { .. })) => {}
            (i, other) => panic!("{i}: {other:?}"),
        }
    }
    assert_eq!(enrolled.len(), 1, "{enrolled:?}");
    let i = enrolled[0];
    let id = format!("e{i}");
    let again = b
        .enrol("t1", &enrol_request(&id, &format!("c{i}")), 9999)
        .await
        .unwrap();
    assert_eq!(again, Verdict::Again { id: id.clone() });
    let row = a.appliance(&id).await.unwrap().expect("enrolled");
    assert_eq!(row.credential_sha256, format!("c{i}"));
    assert!(!row.revoked);
    assert_eq!(row.bound.unwrap().location, Some([52.37, 4.9]));
    let tokens = b.enrolments().await.unwrap();
    assert_eq!(tokens[0].used.as_ref().unwrap().by, id);
    assert_eq!(
        a.enrol("nope", &enrol_request("x", "c"), 1001)
            .await
            .unwrap(),
        Verdict::Refused(Refusal::UnknownToken)
    );
    // A second token cannot take the id while it is in use.
    a.add_enrolment(&enrolment("t2", None, 1000)).await.unwrap();
    assert_eq!(
        a.enrol("t2", &enrol_request(&id, "other"), 1001)
            .await
            .unwrap(),
        Verdict::Refused(Refusal::IdTaken { id: id.clone() })
    );
    assert!(
        b.enrolments()
            .await
            .unwrap()
            .iter()
            .any(|e| e.token_sha256 == "t2" && e.used.is_none()),
        "a refusal leaves the token unused"
    );
}

async fn revocation_holds_until_a_new_credential(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    a.declare_appliance("d1", &info(), "c1", 1).await.unwrap();
    assert_eq!(b.revoke_appliance("d1", 2).await.unwrap(), Revoked::Now);
    assert_eq!(a.revoke_appliance("d1", 3).await.unwrap(), Revoked::Already);
    assert_eq!(
        a.revoke_appliance("zz", 3).await.unwrap(),
        Revoked::NoSuchAppliance
    );
    let revoked =
        |s: Arc<dyn Store>| async move { s.appliance("d1").await.unwrap().unwrap().revoked };
    assert!(revoked(Arc::clone(&a)).await);
    // A restart declaring it with the same credential keeps it revoked...
    a.declare_appliance("d1", &info(), "c1", 4).await.unwrap();
    assert!(revoked(Arc::clone(&b)).await);
    // ...a new credential brings it back.
    a.declare_appliance("d1", &info(), "c2", 5).await.unwrap();
    assert!(!revoked(Arc::clone(&b)).await);
    // An enrolled appliance, revoked, is re-enrolled only by a token naming it.
    a.add_enrolment(&enrolment("t1", None, 10)).await.unwrap();
    assert!(matches!(
        a.enrol("t1", &enrol_request("e1", "k1"), 11).await.unwrap(),
        Verdict::Enrol { .. }
    ));
    b.revoke_appliance("e1", 12).await.unwrap();
    a.add_enrolment(&enrolment("t2", None, 13)).await.unwrap();
    assert_eq!(
        a.enrol("t2", &enrol_request("e1", "k2"), 14).await.unwrap(),
        Verdict::Refused(Refusal::IdTaken { id: "e1".into() })
    );
    a.add_enrolment(&enrolment("t3", Some("e1"), 13))
        .await
        .unwrap();
    assert!(matches!(
        b.enrol("t3", &enrol_request("e1", "k3"), 14).await.unwrap(),
        Verdict::Enrol { .. }
    ));
    let row = a.appliance("e1").await.unwrap().unwrap();
    assert!(!row.revoked);
    assert_eq!(row.credential_sha256, "k3");
    // Each write is in the change log the other instances follow.
    let logged = a.changes_since(0).await.unwrap();
    assert!(
        logged.iter().filter(|c| c.appliance == "e1").count() >= 3,
        "{logged:?}"
    );
}

/// Instances share what players measured: each writes its own sums, reads
/// the others' (not its own) updated since a time, an older write does not
/// replace a newer one, and old rows go.
async fn measured_paths_are_shared_newest_first(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use crate::fleet::measure::Sums;
    use crate::fleet::store::PathRow;
    let row = |instance: &str, net: &str, w: f64, at: u64| PathRow {
        instance: instance.into(),
        network: net.into(),
        appliance: "oca-a1".into(),
        sums: Sums {
            w,
            tput: w * 4e6,
            ttfb: w * 30.0,
            err: 0.0,
            at,
        },
    };
    let day = 86_400_000;
    a.put_paths(
        "A",
        &[
            row("A", "10.1.0.0/16", 4.0, 1000),
            row("A", "10.2.0.0/16", 1.0, 1000),
        ],
        day,
    )
    .await
    .unwrap();
    b.put_paths("B", &[row("B", "10.1.0.0/16", 2.0, 1000)], day)
        .await
        .unwrap();
    let mut seen_by_b = b.paths_since(0, "B").await.unwrap();
    seen_by_b.sort_by(|x, y| x.network.cmp(&y.network));
    assert_eq!(
        seen_by_b,
        [
            row("A", "10.1.0.0/16", 4.0, 1000),
            row("A", "10.2.0.0/16", 1.0, 1000)
        ]
    );
    assert_eq!(
        a.paths_since(0, "A").await.unwrap(),
        [row("B", "10.1.0.0/16", 2.0, 1000)]
    );
    // A later share replaces the row; an older one (a slow writer) does not.
    a.put_paths("A", &[row("A", "10.1.0.0/16", 6.0, 1010)], day)
        .await
        .unwrap();
    a.put_paths("A", &[row("A", "10.1.0.0/16", 5.0, 1005)], day)
        .await
        .unwrap();
    let got = b.paths_since(0, "B").await.unwrap();
    assert!(got.contains(&row("A", "10.1.0.0/16", 6.0, 1010)), "{got:?}");
    // Nothing updated after a time later than every write.
    let far = u64::MAX / 4;
    assert!(b.paths_since(far, "B").await.unwrap().is_empty());
    // Rows not updated within `keep` go (here: everything, keep 0 after a pause).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    b.put_paths("B", &[], 1).await.unwrap();
    assert!(a.paths_since(0, "A").await.unwrap().is_empty());
}
