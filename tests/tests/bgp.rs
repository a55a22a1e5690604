//! BGP at the control plane: a prefix → origin-ASN table imported from an MRT
//! RIB dump maps clients outside every embedded appliance's prefixes to their
//! region's IXP appliances.

use std::net::IpAddr;
use std::process::Command;

use e2e::stack::{self, ApplianceSpec};
use e2e::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn steering(s: &stack::Stack, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("steering"))
        .args(args)
        .args(["--config", s.config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn clients_are_mapped_by_origin_asn_from_an_imported_rib() {
    let fleet = vec![
        ApplianceSpec {
            id: "oca-eu",
            tier: "ixp",
            site: "ixp-ams",
            region: "eu-west",
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-us",
            tier: "ixp",
            site: "ixp-nyc",
            region: "us-east",
            ..ApplianceSpec::default()
        },
    ];
    // us-east viewers are entitled to t1 too (regions = eu-west, us-east); the
    // account's home region decides entitlement, the client's address steering.
    let s = stack::start(
        &fleet,
        "[[asn]]\nnumber = 65010\nregion = \"us-east\"\n[[asn]]\nnumber = 65020\nregion = \"eu-west\"\n",
    );
    let alice = s.token("alice");
    let play = |client: &str| {
        let p = s.play(ip(client), &alice, "t1", "browser", "main").json();
        let id = p["appliances"][0]["id"].as_str().unwrap().to_owned();
        let reason = p["appliances"][0]["reason"].as_str().unwrap().to_owned();
        let auth = format!("Bearer {alice}");
        http(
            s.addr,
            "DELETE",
            &format!("/v1/plays/{}", p["play_id"].as_str().unwrap()),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        (id, reason)
    };
    // Before any import, 127.4/16 is an unknown network.
    assert_eq!(play("127.4.0.9").1, "any-appliance");

    let dir = tempfile::tempdir().unwrap();
    let rib = dir.path().join("rib.mrt");
    e2e::mrt::write_rib(
        &rib,
        &[
            ("127.4.0.0/16", &[3356, 65010]),
            ("127.5.0.0/16", &[1299, 65020]),
            ("127.6.0.0/16", &[174, 65099]),
            ("2001:db8:4::/48", &[3356, 65010]),
        ],
        &[("10.0.0.1", 64496), ("10.0.0.2", 64497)],
    );
    let (code, out, err) = steering(&s, &["bgp", "import-rib", rib.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("4 prefixes (IPv4 3, IPv6 1) from 3 origin ASNs; 3 in a configured region"),
        "{out}"
    );

    // A running steering notices the import within a snapshot refresh.
    wait_for("the RIB in use", || {
        (play("127.4.0.9") == ("oca-us".into(), "region-ixp".into())).then_some(())
    });
    assert_eq!(play("127.5.0.9"), ("oca-eu".into(), "region-ixp".into()));
    assert_eq!(
        play("127.6.0.9").1,
        "any-appliance",
        "origin AS without a region"
    );

    // Not a RIB: refused with the reason, the imported table kept.
    let junk = dir.path().join("junk.mrt");
    std::fs::write(
        &junk,
        b"this is not MRT at all, just some text to trip the parser",
    )
    .unwrap();
    let (code, _, err) = steering(&s, &["bgp", "import-rib", junk.to_str().unwrap()]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let (code, _, err) = steering(&s, &["bgp", "import-rib", "/nonexistent.mrt"]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(play("127.4.0.9").0, "oca-us");
}
