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

/// The embedded appliance's `[bgp]` table for a session with BIRD across
/// `link` (AS 64512 here, 64500 the router's), with `more` keys for `[bgp]`
/// and `neighbor` keys for the router's `[[bgp.neighbor]]`.
fn oca_bgp(link: &e2e::bird::Link, more: &str, neighbor: &str) -> &'static str {
    Box::leak(
        format!(
            "[bgp]\nlisten = \"{}:0\"\nlocal_asn = 64512\nrouter_id = \"10.255.0.1\"\n\
             hold_time = 9\n{more}[[bgp.neighbor]]\naddress = \"{}\"\nasn = 64500\n{neighbor}",
            link.host, link.router
        )
        .into_boxed_str(),
    )
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

/// BIRD 2 as ISP A's router, peering with the embedded appliance's passive
/// listener: what it announces steers ISP A's viewers to that appliance, a
/// withdrawal takes a prefix away, and when BIRD stops the prefixes last for
/// the grace period, then go. (BIRD will not announce 127/8, so ISP A's
/// viewers here are 100.65.0.0/16, reaching steering through a trusted proxy.)
#[test]
fn bird_announces_isp_prefixes_that_steer_viewers_to_the_appliance() {
    let link = e2e::bird::Link::new();
    let oca_bgp = oca_bgp(&link, "grace = \"3s\"\n", "");
    let fleet = vec![
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a-ams",
            // Nothing configured: everything it serves comes from BGP.
            serves: &[],
            oca_extra: oca_bgp,
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-x1",
            tier: "ixp",
            site: "ixp-ams",
            ..ApplianceSpec::default()
        },
    ];
    let s = stack::start(
        &fleet,
        "trusted_proxies = [\"127.0.0.1/32\"]\n[[asn]]\nnumber = 65020\nregion = \"eu-west\"\n",
    );
    let bgp_addr = s.appliances["oca-a1"].0.addr("bgp=");
    let alice = s.token("alice");
    let auth = format!("Bearer {alice}");
    let play = |client: &str| {
        let body = br#"{"title":"t1","device":"browser","profile":"main"}"#;
        let r = http_from(
            Some(ip("127.0.0.1")),
            s.addr,
            "POST",
            "/v1/play",
            &[("Authorization", &auth), ("X-Forwarded-For", client)],
            body,
        )
        .unwrap();
        let p = r.json();
        http(
            s.addr,
            "DELETE",
            &format!("/v1/plays/{}", p["play_id"].as_str().unwrap()),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        (
            p["appliances"][0]["id"].as_str().unwrap().to_owned(),
            p["appliances"][0]["reason"].as_str().unwrap().to_owned(),
        )
    };
    let embedded = || ("oca-a1".to_owned(), "isp-embedded".to_owned());
    assert_ne!(play("100.65.0.9"), embedded(), "nothing learned yet");

    let mut bird = e2e::bird::start(
        &link,
        64500,
        "10.255.0.2",
        bgp_addr,
        64512,
        &["100.65.0.0/16", "100.66.0.0/16", "2001:db8:1::/48"],
        "",
    );
    let admin = s.admin("oca-a1").unwrap();
    let health = || http(admin, "GET", "/health", &[], b"").unwrap().json();
    let h = wait_for("the BGP session with BIRD and its three prefixes", || {
        let h = health();
        (h["bgp"]["sessions"][0]["state"] == "established"
            && h["bgp"]["sessions"][0]["prefixes_ipv4"] == 2
            && h["bgp"]["sessions"][0]["prefixes_ipv6"] == 1)
            .then_some(h)
    });
    assert!(h["bgp"].to_string().contains("2001:db8:1::/48"), "{h}");
    // Reported to steering: ISP A's viewers go to their ISP's appliance.
    wait_for("steering to hold the three prefixes", || {
        (s.appliance("oca-a1")?["bgp_prefixes"] == 3).then_some(())
    });
    wait_for("steering to use the learned prefixes", || {
        (play("100.65.0.9") == embedded()).then_some(())
    });
    assert_eq!(play("100.66.0.9"), embedded());

    // BIRD withdraws one prefix: its viewers are no longer steered here.
    assert!(bird.cli("disable s1").contains("disabled"), "birdc disable");
    wait_for("the withdrawal to reach steering", || {
        (play("100.66.0.9") != embedded()).then_some(())
    });
    assert_eq!(play("100.65.0.9"), embedded());

    // The router goes away: its prefixes are kept for the grace period (a
    // router restart must not empty steering), then withdrawn.
    bird.stop();
    let stopped = std::time::Instant::now();
    wait_for("the session to drop", || {
        (health()["bgp"]["sessions"][0]["state"] != "established").then_some(())
    });
    if stopped.elapsed() < std::time::Duration::from_secs(2) {
        assert_eq!(
            play("100.65.0.9"),
            embedded(),
            "kept during the grace period"
        );
    }
    wait_for("the grace period to end", || {
        (play("100.65.0.9") != embedded()).then_some(())
    });
    assert!(
        stopped.elapsed() >= std::time::Duration::from_secs(3),
        "not before the grace period"
    );

    // Outside every announced prefix, the RIB maps the client by origin AS to
    // its region's IXP appliance.
    let dir = tempfile::tempdir().unwrap();
    let rib = dir.path().join("rib.mrt");
    e2e::mrt::write_rib(
        &rib,
        &[("100.67.0.0/16", &[1299, 65020])],
        &[("10.0.0.1", 64496)],
    );
    let (code, _, err) = steering(&s, &["bgp", "import-rib", rib.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    wait_for("the RIB in use", || {
        (play("100.67.0.9") == ("oca-x1".to_owned(), "region-ixp".to_owned())).then_some(())
    });
}

/// The value of the metric line starting with `name` (labels included) in
/// oca's /metrics, or 0.
fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let r = http(admin, "GET", "/metrics", &[], b"").unwrap();
    metric_in(&String::from_utf8_lossy(&r.body), name)
}

/// A session protected with a TCP MD5 password (RFC 2385) and GTSM (RFC
/// 5082) against BIRD's `password` and `ttl security`: a wrong password
/// never establishes (the kernel drops every segment; oca's metrics count
/// the drops and its log names the neighbour), a router without `ttl
/// security` (BIRD then sends eBGP with TTL 1) is refused and said so, and
/// with both right the session establishes and the prefixes arrive.
#[test]
fn bird_with_a_wrong_password_or_without_ttl_security_never_establishes() {
    let link = e2e::bird::Link::new();
    let oca_bgp = oca_bgp(
        &link,
        "",
        "password = \"oca-and-isp-a\"\nttl_security = true\n",
    );
    let fleet = vec![ApplianceSpec {
        id: "oca-a1",
        tier: "embedded",
        site: "isp-a-ams",
        serves: &[],
        oca_extra: oca_bgp,
        ..ApplianceSpec::default()
    }];
    let s = stack::start(&fleet, "");
    let oca = &s.appliances["oca-a1"].0;
    let bgp_addr = oca.addr("bgp=");
    let admin = s.admin("oca-a1").unwrap();
    let state = || {
        http(admin, "GET", "/health", &[], b"").unwrap().json()["bgp"]["sessions"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let wrong_md5 = || metric(admin, "oca_bgp_kernel_drops_total{reason=\"md5_wrong\"}");

    // A wrong password: BIRD keeps trying, the kernel drops each signed SYN.
    let before = wrong_md5();
    let mut bird = e2e::bird::start(
        &link,
        64500,
        "10.255.0.2",
        bgp_addr,
        64512,
        &["100.65.0.0/16"],
        "password \"not-the-password\"; ttl security on;",
    );
    wait_for(
        "the kernel to drop three of BIRD's wrongly signed attempts",
        || (wrong_md5() >= before + 3.0).then_some(()),
    );
    assert_eq!(state(), "idle", "a wrong password must not establish");
    wait_for("oca's log to name the neighbour", || {
        oca.log()
            .lines()
            .find(|l| l.contains("MD5 signature") && l.contains(&link.router.to_string()))
            .map(|_| ())
    });
    assert!(
        !oca.log().contains("oca-and-isp-a"),
        "the password is never logged"
    );

    // The right password but no GTSM on the router: refused by its TTL.
    bird.reconfigure("password \"oca-and-isp-a\";");
    wait_for(
        "a refusal by ttl_security in the metrics and the log",
        || {
            (metric(admin, "oca_bgp_ttl_refused_total") >= 1.0
                && oca.log().contains("refused by ttl_security"))
            .then_some(())
        },
    );
    assert_eq!(state(), "idle", "a router without GTSM must not establish");
    assert!(
        oca.log().contains("arrived with TTL 1;"),
        "the log says what arrived: {}",
        oca.log()
    );

    // Both right: established, and the prefix is learned.
    bird.reconfigure("password \"oca-and-isp-a\"; ttl security on;");
    wait_for("the protected session to establish with its prefix", || {
        let h = http(admin, "GET", "/health", &[], b"").unwrap().json();
        (h["bgp"]["sessions"][0]["state"] == "established"
            && h["bgp"]["sessions"][0]["prefixes_ipv4"] == 1)
            .then_some(())
    });
}

/// An ISP with two embedded appliances says, with BGP communities and MED on
/// what its router announces to each, which should serve which of its
/// prefixes: a prefix marked with the fallback community on one appliance
/// goes to the other first; of two MEDs, the lower wins. Removing the
/// community on the router makes both equal again.
#[test]
fn bird_communities_and_med_rank_the_isps_appliances() {
    let (ams, rtm) = (e2e::bird::Link::new(), e2e::bird::Link::new());
    let fleet = vec![
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a-ams",
            serves: &[],
            oca_extra: oca_bgp(&ams, "", ""),
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-a2",
            tier: "embedded",
            site: "isp-a-rtm",
            serves: &[],
            oca_extra: oca_bgp(&rtm, "", ""),
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-x1",
            tier: "ixp",
            site: "ixp-ams",
            ..ApplianceSpec::default()
        },
    ];
    let s = stack::start(
        &fleet,
        "trusted_proxies = [\"127.0.0.1/32\"]\nsteer.fallback_communities = [\"64500:100\"]\n",
    );
    // The routers' export filters, as the ISP's engineer would write them.
    let marked = "filter { if net = 100.65.0.0/16 then bgp_community.add((64500, 100)); \
                  if net = 100.66.0.0/16 then bgp_med = 10; accept; }";
    let plain = "filter { if net = 100.66.0.0/16 then bgp_med = 10; accept; }";
    let to_rtm = "filter { if net = 100.66.0.0/16 then bgp_med = 50; accept; }";
    let prefixes = ["100.65.0.0/16", "100.66.0.0/16"];
    let session = |link: &e2e::bird::Link, id: &str, export: &str| {
        e2e::bird::start_exporting(
            link,
            64500,
            "10.255.0.2",
            s.appliances[id].0.addr("bgp="),
            64512,
            &prefixes,
            "",
            export,
        )
    };
    let mut to_ams = session(&ams, "oca-a1", marked);
    let _to_rtm = session(&rtm, "oca-a2", to_rtm);
    wait_for(
        "both appliances' routes, with their attributes, in steering",
        || {
            let (a1, a2) = (s.appliance("oca-a1")?, s.appliance("oca-a2")?);
            (a1["bgp_prefixes"] == 2
                && a1["bgp_prefixes_with_attributes"] == 2
                && a2["bgp_prefixes"] == 2
                && a2["bgp_prefixes_with_attributes"] == 1)
                .then_some(())
        },
    );
    // What oca learned, as its /health shows it.
    let admin = s.admin("oca-a1").unwrap();
    let h = http(admin, "GET", "/health", &[], b"").unwrap().json();
    let attrs = &h["bgp"]["attributes"];
    assert_eq!(attrs["100.65.0.0/16"]["communities"][0], "64500:100", "{h}");
    assert_eq!(attrs["100.66.0.0/16"]["med"], 10, "{h}");

    let alice = s.token("alice");
    let auth = format!("Bearer {alice}");
    let picks = |client: &str| -> Vec<(String, String)> {
        let body = br#"{"title":"t1","device":"browser","profile":"main"}"#;
        let r = http_from(
            Some(ip("127.0.0.1")),
            s.addr,
            "POST",
            "/v1/play",
            &[("Authorization", &auth), ("X-Forwarded-For", client)],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let p = r.json();
        http(
            s.addr,
            "DELETE",
            &format!("/v1/plays/{}", p["play_id"].as_str().unwrap()),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        p["appliances"]
            .as_array()
            .unwrap()
            .iter()
            .take(2)
            .map(|a| {
                (
                    a["id"].as_str().unwrap().to_owned(),
                    a["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pick = |id: &str, reason: &str| (id.to_owned(), reason.to_owned());
    wait_for(
        "the fallback community to steer 100.65/16 to Rotterdam",
        || {
            (picks("100.65.0.9")
                == [
                    pick("oca-a2", "isp-embedded"),
                    pick("oca-a1", "isp-fallback"),
                ])
            .then_some(())
        },
    );
    for _ in 0..5 {
        assert_eq!(
            picks("100.66.0.9"),
            [
                pick("oca-a1", "isp-embedded"),
                pick("oca-a2", "isp-fallback")
            ],
            "MED 10 in Amsterdam beats MED 50 in Rotterdam"
        );
    }

    // The ISP lifts the mark: both serve 100.65/16 alike again.
    to_ams.reexport(plain);
    wait_for("the community's removal to reach steering", || {
        (s.appliance("oca-a1")?["bgp_prefixes_with_attributes"] == 1).then_some(())
    });
    wait_for("100.65/16 served by either appliance alike", || {
        let got = picks("100.65.0.9");
        (got.iter().all(|(_, r)| r == "isp-embedded") && got.len() == 2).then_some(())
    });
}
