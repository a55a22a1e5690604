//! Several steering instances on one PostgreSQL, in two regions: any
//! instance answers any request. Appliances talk to instance A; instance B
//! learns the fleet through the store, continues A's plays, signs with the
//! same keys, shares the health polling, and takes all of it over when A is
//! killed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use e2e::stack::{self, fetch_all_hls};
use e2e::*;

const ISP_A: &str = "127.1.0.9";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn appliances(addr: std::net::SocketAddr) -> Option<Vec<serde_json::Value>> {
    let r = http(addr, "GET", "/v1/appliances", &[], b"")?;
    (r.status == 200).then(|| r.json().as_array().cloned())?
}

/// The stack on a new PostgreSQL as instance A (eu-west), and instance B
/// (us-east) on the same database, with B's address.
fn two_instances() -> (
    temp_postgres::Server,
    stack::Stack,
    Proc,
    std::net::SocketAddr,
) {
    let pg = temp_postgres::Server::start().expect("PostgreSQL (scripts/test.sh installs it)");
    pg.create_database("steering").unwrap();
    let url = pg.url("steering");
    let s = stack::start_on(
        &stack::fleet(),
        stack::INSTANCE_A,
        &stack::content(),
        Some(&url),
    );
    let b = s.start_instance("steer-b", "us-east");
    let b_addr = b.addr("http=");
    (pg, s, b, b_addr)
}

/// Plays an instance answered with 200, from its metrics.
fn plays_ok(addr: std::net::SocketAddr) -> Option<u64> {
    let r = http(addr, "GET", "/metrics", &[], b"")?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("steering_plays_total{reason=\"ok\"}"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn two_instances_share_the_fleet_plays_keys_and_polling() {
    let (_pg, mut s, b, b_addr) = two_instances();
    // Appliances know both instances, their own region's first.
    for spec in stack::fleet() {
        let cfg = s.root(spec.id).join("oca.toml");
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("url = \"http://{}\"", s.addr),
            &format!("url = [\"http://{}\", \"http://{b_addr}\"]", s.addr),
        );
        assert!(text.contains(&b_addr.to_string()));
        std::fs::write(&cfg, text).unwrap();
        s.restart_appliance_in_place(spec.id);
    }

    // B knows every appliance that registered with A, up, with the
    // inventory A was told in heartbeats.
    let fleet = stack::fleet();
    for spec in &fleet {
        wait_for(&format!("B sees {} up with what it holds", spec.id), || {
            let list = appliances(b_addr)?;
            let v = list.iter().find(|x| x["id"] == spec.id)?;
            (v["eligible"] == true
                && v["renditions_complete"].as_u64()? >= spec.complete(&stack::content()))
            .then_some(())
        });
    }
    // The polling is shared: each appliance has one poller, both agree on
    // it, and an eu-west appliance is polled from the eu-west instance.
    let pollers = |addr| -> Vec<(String, String, String)> {
        appliances(addr)
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["info"]["region"].as_str().unwrap().to_owned(),
                    v["polled_by"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let seen_by_a = wait_for("both instances alive and agreeing on pollers", || {
        let (pa, pb) = (pollers(s.addr), pollers(b_addr));
        let both = pa.iter().any(|p| p.2 == "steer-b") || pa.iter().all(|p| p.1 == "eu-west");
        (pa == pb && both && pa.iter().all(|p| !p.2.is_empty())).then_some(pa)
    });
    for (id, region, poller) in &seen_by_a {
        match region.as_str() {
            "eu-west" => assert_eq!(poller, "steer-a", "{id}"),
            "us-east" => assert_eq!(poller, "steer-b", "{id}"),
            _ => {}
        }
    }

    // A play started on A continues through B: manifests and content
    // steering answered by B, every object fetched from the appliances.
    let alice = s.token("alice");
    let play = s.play(ip(ISP_A), &alice, "t1", "browser", "main");
    assert_eq!(play.status, 200, "{}", String::from_utf8_lossy(&play.body));
    let play = play.json();
    let a_addr = s.addr.to_string();
    let on_b = |u: &str| u.replace(&a_addr, &b_addr.to_string());
    let master = on_b(play["manifests"]["hls"].as_str().unwrap());
    let primary = play["appliances"][0]["id"].as_str().unwrap();
    assert!(fetch_all_hls(&s, ip(ISP_A), &master, primary) > 0);
    let steering = get_url(
        Some(ip(ISP_A)),
        &on_b(play["content_steering"]["hls"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(steering.status, 200);
    assert!(steering.json()["PATHWAY-PRIORITY"].is_array());

    // A bookmark through B resumes the next play through A.
    let play_id = play["play_id"].as_str().unwrap();
    let auth = format!("Bearer {alice}");
    let body = serde_json::json!({"play_id": play_id, "position": 42.5}).to_string();
    let r = http(
        b_addr,
        "POST",
        "/v1/bookmarks",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Ended through B, so the next play is not over the stream limit.
    let r = http(
        b_addr,
        "DELETE",
        &format!("/v1/plays/{play_id}"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 204);

    // B signs with the keys the appliances got from A: a play started on B
    // plays from the appliances.
    let r = stack::play_at(b_addr, ip(ISP_A), &alice, "t1", "browser", "main");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let play_b = r.json();
    assert_eq!(play_b["resume_position"], 42.5, "{play_b}");
    let primary = play_b["appliances"][0]["id"].as_str().unwrap();
    let master = play_b["manifests"]["hls"].as_str().unwrap().to_owned();
    assert!(fetch_all_hls(&s, ip(ISP_A), &master, primary) > 0);

    // A dies (kill -9). Nothing it committed is lost: the play it started is
    // still served through B, and so are the registrations.
    s.steering.kill9();
    let master = get_url(
        Some(ip(ISP_A)),
        &on_b(play["manifests"]["hls"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(master.status, 200);
    assert_eq!(appliances(b_addr).unwrap().len(), fleet.len());
    // Its share of the polling moves to B: an appliance A used to poll is
    // killed, and B takes it out of rotation.
    let victim = seen_by_a
        .iter()
        .find(|p| p.2 == "steer-a")
        .map(|p| p.0.clone())
        .expect("A polled something");
    let killed_at = Instant::now();
    s.appliances
        .get_mut(victim.as_str())
        .expect("a stack appliance")
        .0
        .kill9();
    wait_for(&format!("B marks {victim} down"), || {
        let list = appliances(b_addr)?;
        let v = list.iter().find(|x| x["id"] == victim.as_str())?;
        (v["up"] == false && v["polled_by"] == "steer-b").then_some(())
    });
    let handover = killed_at.elapsed();
    // Three beats to see A dead, then three failed polls (down_after).
    assert!(
        handover < Duration::from_secs(5),
        "took {handover:?} to notice"
    );
    // The appliances' heartbeats now reach B: an object removed from a
    // live appliance's disk shows in B's view of its inventory.
    let witness = "oca-b1";
    assert_ne!(witness, victim);
    let complete = |addr| -> Option<u64> {
        appliances(addr)?.iter().find(|x| x["id"] == witness)?["renditions_complete"].as_u64()
    };
    let before = complete(b_addr).unwrap();
    let rung = &stack::ladder(&stack::content(), "t1")[0];
    let key = format!("titles/t1/{}/seg-00000.m4s", rung.dir);
    std::fs::remove_file(s.root(witness).join("disk0/objects").join(&key)).unwrap();
    // (A is gone: ask B where the witness's admin listener is.)
    let admin: std::net::SocketAddr = appliances(b_addr)
        .unwrap()
        .iter()
        .find(|x| x["id"] == witness)
        .unwrap()["info"]["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let r = http(admin, "POST", &format!("/store/refresh/{key}"), &[], b"").unwrap();
    assert_eq!(r.status, 200);
    wait_for("B hears the witness's new inventory", || {
        (complete(b_addr)? == before - 1).then_some(())
    });
    // New plays through B steer around it.
    let r = stack::play_at(b_addr, ip(ISP_A), &alice, "t1", "browser", "kids");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ids: Vec<String> = r.json()["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.contains(&victim), "{ids:?} still has {victim}");
    drop(b);
}

/// steering is given both PostgreSQL hosts with `target_session_attrs =
/// read-write`; the primary dies, the standby is promoted, and the same
/// steering process goes on: new plays succeed, and what was committed before
/// (replication is synchronous here) is still there.
#[test]
fn a_promoted_standby_takes_over_without_restarting_steering() {
    let mut primary = temp_postgres::Server::start().expect("PostgreSQL");
    primary.create_database("steering").unwrap();
    // Synchronous: a commit is acknowledged once the standby has it, so a
    // failover loses nothing that steering was told is committed.
    let standby = primary
        .synchronous_standby()
        .expect("a synchronous streaming standby");
    let url = format!(
        "postgres://postgres@{},{}/steering?target_session_attrs=read-write",
        primary.host_port(),
        standby.host_port()
    );
    let fleet = &stack::fleet()[..1];
    let mut s = stack::start_on(fleet, "", &stack::content(), Some(&url));
    let alice = s.token("alice");
    let first = s.play(ip(ISP_A), &alice, "t1", "browser", "main");
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let first = first.json();

    primary.kill().unwrap();
    let failed_at = Instant::now();
    standby.promote().unwrap();
    let r = wait_for("a play through the promoted standby", || {
        let r = s.play(ip(ISP_A), &alice, "t1", "browser", "kids");
        (r.status == 200).then_some(r)
    });
    eprintln!(
        "new plays succeed {:?} after the primary died",
        failed_at.elapsed()
    );
    assert!(r.json()["degraded"].as_array().unwrap().is_empty());
    // The play committed before the failover is still served.
    let master = get_url(Some(ip(ISP_A)), first["manifests"]["hls"].as_str().unwrap()).unwrap();
    assert_eq!(master.status, 200);
    // The same process all along.
    assert!(s.steering.alive(), "steering was not restarted");
}

/// PostgreSQL goes away and comes back: accounts seen recently play on from
/// memory, marked degraded; others and writes that cannot wait get a clear
/// 503; `/health` says degraded (every instance shares the outage); once the
/// database is back, the streams started meanwhile are written and
/// everything is normal again without a restart.
#[test]
fn with_postgres_down_recent_accounts_play_degraded_and_all_recovers() {
    let mut pg = temp_postgres::Server::start().expect("PostgreSQL");
    pg.create_database("steering").unwrap();
    let url = pg.url("steering");
    let s = stack::start_on(&stack::fleet()[..2], "", &stack::content(), Some(&url));
    let alice = s.token("alice");
    let bob = s.token("bob");
    let first = s.play(ip(ISP_A), &alice, "t1", "browser", "main");
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );

    pg.kill().unwrap();
    let during = s.play(ip(ISP_A), &alice, "t1", "browser", "kids");
    assert_eq!(
        during.status,
        200,
        "{}",
        String::from_utf8_lossy(&during.body)
    );
    let during = during.json();
    // (The bookmarks live in the same database: gone too.)
    assert_eq!(
        during["degraded"],
        serde_json::json!(["store", "bookmarks"]),
        "{during}"
    );
    // Its manifest is served (from this instance's memory).
    let master = get_url(
        Some(ip(ISP_A)),
        during["manifests"]["hls"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(master.status, 200);
    // An account not seen recently is not let in blind.
    let r = s.play(ip(ISP_A), &bob, "t1", "browser", "main");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "store_unavailable", "{}", r.json());
    // A write that cannot wait is refused clearly.
    let auth = format!("Bearer {alice}");
    let body = serde_json::json!({"play_id": during["play_id"], "position": 5.0}).to_string();
    let r = http(
        s.addr,
        "POST",
        "/v1/bookmarks",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let health = http(s.addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "degraded", "{}", health.json());

    pg.restart().unwrap();
    // The stream started during the outage is written: alice (two streams
    // on her plan) is now at her limit.
    wait_for("the outage's stream saved and counted", || {
        let r = s.play(ip(ISP_A), &alice, "t1", "browser", "main");
        (r.status == 403 && r.json()["code"] == "stream_limit").then_some(())
    });
    let r = s.play(ip(ISP_A), &bob, "t1", "browser", "main");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["degraded"].as_array().unwrap().is_empty());
    wait_for("health ok again", || {
        let h = http(s.addr, "GET", "/health", &[], b"")?;
        (h.json()["status"] == "ok").then_some(())
    });
}

/// Viewers given both instances (`oca-bench players --steering A,B`, their
/// own region's first) go on when A is killed in the middle of their plays:
/// the requests A would have answered (new plays, the manifests and
/// content-steering URLs A issued, bookmarks, deletes) go to B, and no play
/// fails or stalls.
#[test]
fn viewers_move_to_the_other_instance_when_theirs_dies() {
    let (_pg, mut s, b, b_addr) = two_instances();
    wait_for("B sees ISP A's appliances eligible", || {
        let list = appliances(b_addr)?;
        let eligible = |id: &str| list.iter().any(|x| x["id"] == id && x["eligible"] == true);
        (eligible("oca-a1") && eligible("oca-a2")).then_some(())
    });
    let alice = s.token("alice");
    let steering = format!("http://{},http://{b_addr}", s.addr);
    let a_addr = s.addr;
    let viewers = std::thread::spawn(move || {
        oca_bench(
            &[
                "players",
                "--steering",
                &steering,
                "--token",
                &alice,
                "--title",
                "t1",
                "--viewers",
                "2",
                "--duration",
                "16s",
                "--watch",
                "4s",
                "--report-every",
                "1s",
                "--timeout",
                "2s",
                "--source-ip",
                ISP_A,
                "--json",
                "--quiet",
            ],
            Duration::from_secs(60),
        )
    });
    wait_for("A answers the viewers' first plays", || {
        (plays_ok(a_addr)? >= 2).then_some(())
    });
    s.steering.kill9();
    let (code, stdout, stderr) = viewers.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    // Both viewers moved to B, and B started plays after the kill.
    assert!(r["steering_failovers"].as_u64().unwrap() >= 2, "{r}");
    assert!(plays_ok(b_addr).unwrap() >= 2, "{r}");
    let plays = &r["plays"];
    assert_eq!(plays["failed"], 0, "no play was refused or unanswered: {r}");
    assert!(plays["errors"].as_object().unwrap().is_empty(), "{r}");
    assert!(plays["started"].as_u64().unwrap() >= 4, "{r}");
    // Heartbeats (the last ending each play) went to B too.
    assert_eq!(r["heartbeats"]["failed"], 0, "{r}");
    assert!(r["rebuffer_ratio"].as_f64().unwrap() < 0.05, "{r}");
    drop(b);
}

/// `steering appliances …` against the stack's store; stdout, or the
/// failure's stderr.
fn appliances_cmd(s: &stack::Stack, args: &[&str]) -> Result<String, String> {
    let out = s.steering_cmd(&[&["appliances"], args].concat());
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// A new appliance joins with a one-time token and no config change:
/// enrolled through instance A, it is known, polled and eligible on both;
/// the token cannot be used again, nor for another place; and once revoked
/// it is refused and dropped by both instances at once.
#[test]
fn an_appliance_enrols_once_and_revocation_reaches_every_instance() {
    let (_pg, s, _b, b_addr) = two_instances();
    let token = appliances_cmd(
        &s,
        &[
            "enroll",
            "--site",
            "ixp-fra",
            "--tier",
            "ixp",
            "--region",
            "eu-west",
            "--location",
            "50.11,8.68",
        ],
    )
    .unwrap();
    assert!(token.starts_with("enrol-"), "{token}");
    // The new appliance: nothing about it in steering's config; it holds t1's HLS.
    let root = s.dir.path().join("oca-new");
    let t1 = stack::content().join("titles/t1");
    for r in stack::ladder(&stack::content(), "t1") {
        stack::copy_tree(
            &t1.join(&r.dir),
            &root.join("disk0/objects/titles/t1").join(&r.dir),
        );
    }
    let cache = root.join("control-cache");
    let ocfg = root.join("oca.toml");
    std::fs::write(
        &ocfg,
        format!(
            r#"
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["{store}"]
workers = 1
[control]
url = ["http://{a}", "http://{b_addr}"]
appliance_id = "oca-new"
enrolment_token = "{token}"
cache_dir = "{cache}"
tier = "ixp"
site = "ixp-fra"
region = "eu-west"
"#,
            store = root.join("disk0").display(),
            a = s.addr,
            cache = cache.display(),
        ),
    )
    .unwrap();
    let mut oca = Proc::start(
        "oca",
        &["--config", ocfg.to_str().unwrap()],
        &[("OCA_LOG", "info")],
    );
    let holds = stack::ladder(&stack::content(), "t1").len() as u64;
    for (name, addr) in [("A", s.addr), ("B", b_addr)] {
        wait_for(
            &format!("{name} knows the enrolled appliance, eligible"),
            || {
                let list = appliances(addr)?;
                let v = list.iter().find(|x| x["id"] == "oca-new")?;
                (v["eligible"] == true && v["renditions_complete"].as_u64()? >= holds).then_some(())
            },
        );
    }
    // It chose its credential and keeps it privately; the pending file is gone.
    let cred_file = cache.join("credential");
    let mode = std::fs::metadata(&cred_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(!cache.join("enrolment-credential").exists());
    let credential = std::fs::read_to_string(&cred_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        oca.log().contains("enrolled with the control plane"),
        "{}",
        oca.log()
    );

    // The token again, from anyone else, at either instance: refused.
    let enrol = |addr, token: &str, id: &str, site: &str| {
        let body = serde_json::json!({
            "id": id,
            "credential_sha256": "ab".repeat(32),
            "info": {
                "tier": "ixp", "site": site, "region": "eu-west", "asn": 0,
                "http_url": "http://127.0.0.1:1", "https_url": null,
                "admin_url": "http://127.0.0.1:2", "capacity_bps": 1000000000,
            },
        });
        let auth = format!("Bearer {token}");
        let r = http(
            addr,
            "POST",
            "/v1/appliances/enroll",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap();
        (r.status, r.json()["code"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(
        enrol(b_addr, &token, "oca-thief", "ixp-fra"),
        (409, "enrolment_token_used".into())
    );
    assert_eq!(
        enrol(s.addr, &token, "oca-new", "ixp-fra"),
        (409, "enrolment_token_used".into()),
        "the same id with another credential is someone else"
    );
    assert_eq!(
        enrol(s.addr, "enrol-not-a-token", "oca-x", "ixp-fra"),
        (401, "bad_enrolment_token".into())
    );
    let other = appliances_cmd(&s, &["enroll", "--site", "ixp-fra", "--tier", "ixp"]).unwrap();
    assert_eq!(
        enrol(b_addr, &other, "oca-else", "ixp-ams"),
        (422, "placement_mismatch".into())
    );
    assert_eq!(
        enrol(b_addr, &other, "oca-new", "ixp-fra"),
        (409, "id_taken".into())
    );
    let listed = appliances_cmd(&s, &["list"]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("appliance\toca-new\tactive\tenrolled")),
        "{listed}"
    );
    assert!(listed.contains("used-by=oca-new"), "{listed}");

    // Revoked: both instances refuse its credential and stop steering to
    // it within a few sync intervals (100 ms here).
    let revoked_at = Instant::now();
    assert!(
        appliances_cmd(&s, &["revoke", "oca-new"])
            .unwrap()
            .contains("revoked")
    );
    let bearer = format!("Bearer oca-new:{credential}");
    for (name, addr) in [("A", s.addr), ("B", b_addr)] {
        wait_for(&format!("{name} refuses and drops oca-new"), || {
            let r = http(addr, "GET", "/v1/keys", &[("authorization", &bearer)], b"")?;
            let gone = appliances(addr)?.iter().all(|x| x["id"] != "oca-new");
            (r.status == 401 && r.json()["code"] == "revoked" && gone).then_some(())
        });
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");
    eprintln!("revocation effective on both instances after {took:?}");
    assert!(
        appliances_cmd(&s, &["revoke", "nobody"])
            .unwrap_err()
            .contains("no appliance")
    );
    oca.kill9();
}

/// What players measured through one instance steers on the other: ISP A's
/// players report oca-a1 slow through A; B shows the estimate (within a
/// sync interval) and sends ISP A's new plays to oca-a2.
#[test]
fn paths_measured_through_one_instance_steer_on_the_other() {
    let (_pg, s, _b, b_addr) = two_instances();
    let tokens = [s.token("alice"), s.token("bob"), s.token("alice")];
    // Every play starts before any reports: once two have, oca-a1 is slow
    // for ISP A and a later play would not be steered there at all.
    let paths: Vec<String> = tokens
        .iter()
        .map(|token| {
            let r = stack::play_at(s.addr, ip(ISP_A), token, "t1", "browser", "main");
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let url = r.json()["heartbeat_url"].as_str().unwrap().to_owned();
            url[url.find("/v1/").unwrap()..].to_owned()
        })
        .collect();
    for path in &paths {
        // 1 MB in 8 s from oca-a1: 1 Mbit/s; twice, a play's most weight.
        for _ in 0..2 {
            let body = serde_json::json!({"position": 5.0, "state": "playing", "samples": [
                {"pathway": "oca-a1", "bytes": 1_000_000, "ttfb_ms": 900.0, "download_ms": 8000.0}]});
            let r = http(s.addr, "POST", path, &[], body.to_string().as_bytes()).unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    let t0 = Instant::now();
    let seen = wait_for("B to show what A's players measured", || {
        let list = appliances(b_addr)?;
        let a1 = list.iter().find(|a| a["id"] == "oca-a1")?;
        let m = a1["measured"].as_array()?.first()?.clone();
        (m["confidence"].as_f64()? >= 0.5).then_some(m)
    });
    eprintln!("B had A's measurements after {:?}: {seen}", t0.elapsed());
    assert_eq!(seen["network"], "127.1.0.0/16");
    assert!(seen["throughput_mbps"].as_f64().unwrap() < 1.5, "{seen}");
    let erin = s.token("erin");
    wait_for("B's new plays from ISP A off oca-a1", || {
        let r = stack::play_at(b_addr, ip(ISP_A), &erin, "t1", "browser", "main");
        let p = r.json();
        let id = p["play_id"].as_str()?.to_owned();
        let auth = format!("Bearer {erin}");
        http(
            b_addr,
            "DELETE",
            &format!("/v1/plays/{id}"),
            &[("Authorization", &auth)],
            b"",
        )?;
        (p["appliances"][0]["id"] == "oca-a2").then_some(())
    });
}
