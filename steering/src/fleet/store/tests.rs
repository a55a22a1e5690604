use super::*;
use crate::catalog::{Object, Rendition as CatalogRendition, Sidecar, Title as CatalogTitle};
use control_client::wire::Tier;

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

#[test]
fn a_registration_outlives_the_config_declaration_but_credentials_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
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
    s.declare_appliance("a1", &declared, "c1", 1).unwrap();
    s.declare_appliance("a1", &edited, "c1", 2).unwrap();
    assert_eq!(s.appliances().unwrap()[0].info, edited);
    // It registers from a new address; a restart declares it again.
    s.upsert_appliance("a1", &moved, "c1", 3).unwrap();
    s.declare_appliance("a1", &declared, "c2", 4).unwrap();
    let row = &s.appliances().unwrap()[0];
    assert_eq!(row.info, moved);
    assert_eq!(row.credential_sha256, "c2");
}

#[test]
fn survives_reopen_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = Sqlite::open(&path).unwrap();
        s.upsert_appliance("a1", &info(), "abc", 1).unwrap();
        let r = |n: &str, o| RenditionHolding {
            rendition: n.into(),
            objects: o,
            bytes: o * 10,
        };
        s.put_inventory(
            "a1",
            &InventoryRow {
                version: 1,
                digest: "d1".into(),
                renditions: vec![r("t/1", 3), r("t/2", 4)],
            },
        )
        .unwrap();
        s.put_inventory(
            "a1",
            &InventoryRow {
                version: 2,
                digest: "d2".into(),
                renditions: vec![r("t/2", 4), r("t/3", 5)],
            },
        )
        .unwrap();
        s.insert_key(
            &KeyWire {
                id: "k1".into(),
                secret: "s".into(),
                not_before: Some(1),
                not_after: Some(100),
            },
            1,
        )
        .unwrap();
    }
    let s = Sqlite::open(&path).unwrap();
    assert_eq!(s.appliances().unwrap()[0].info, info());
    let inv = s.inventory("a1").unwrap();
    assert_eq!((inv.version, inv.digest.as_str()), (2, "d2"));
    let names: Vec<_> = inv
        .renditions
        .iter()
        .map(|r| r.rendition.as_str())
        .collect();
    assert_eq!(names, ["t/2", "t/3"]);
    assert_eq!(s.keys().unwrap().len(), 1);
    assert_eq!(s.delete_keys_retired_before(200).unwrap(), 1);
    assert!(s.inventory("nobody").unwrap().renditions.is_empty());
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

#[test]
fn catalog_plays_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sqlite::open(&dir.path().join("s.db")).unwrap();
    s.put_title(&CatalogTitle {
        id: "t1".into(),
        sidecar: Sidecar {
            name: "One".into(),
            regions: vec!["eu".into(), "*".into()],
            release: Some(1234),
        },
        renditions: vec![
            rendition(
                "titles/t1/v2",
                &[("titles/t1/v2/init.mp4", 5), ("titles/t1/v2/seg10.m4s", 7)],
            ),
            rendition("titles/t1/v1", &[("titles/t1/v1/seg2.m4s", 3)]),
        ],
        manifests: vec![],
    })
    .unwrap();
    let catalog = s.fill_catalog().unwrap();
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
        ["titles/t1/v2/init.mp4", "titles/t1/v2/seg10.m4s"],
        "import order, not key order"
    );
    assert_eq!(t.renditions[1].bytes(), 12);

    // Plays of every region, newest first, capped.
    let conn = s.conn();
    for (title, region, at) in [("t1", "eu", 10), ("t1", "us", 20), ("t2", "eu", 5)] {
        conn.execute(
            "INSERT INTO plays (title, region, at) VALUES (?1, ?2, ?3)",
            params![title, region, at],
        )
        .unwrap();
    }
    drop(conn);
    let plays = s.plays_all_since(6, 10).unwrap();
    let got: Vec<(&str, &str, u64)> = plays
        .iter()
        .map(|p| (p.title.as_str(), p.region.as_str(), p.at))
        .collect();
    assert_eq!(got, [("t1", "us", 20), ("t1", "eu", 10)]);
    assert_eq!(s.plays_all_since(0, 1).unwrap().len(), 1);

    // Versions: 1 for the first plan, unchanged for the same content, bumped for new.
    assert_eq!(s.fill_plan_version("a", "d1", 100).unwrap(), 1);
    assert_eq!(s.fill_plan_version("a", "d1", 200).unwrap(), 1);
    assert_eq!(s.fill_plan_version("b", "d1", 200).unwrap(), 1);
    assert_eq!(s.fill_plan_version("a", "d2", 300).unwrap(), 2);
    assert_eq!(s.fill_plan_version("a", "d1", 400).unwrap(), 3);
}
