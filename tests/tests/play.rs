//! Plays end to end: steering with accounts and several real oca appliances on
//! loopback, clients in different ISPs (distinct 127.x/16 source ranges).
//! Every URL a play hands out is fetched; ffprobe reads the manifests.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::stack::{self, Stack, fetch_all_hls, playlist_uris, resolve};
use e2e::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ISP_A: &str = "127.1.0.9";
const ISP_B: &str = "127.2.0.9";
const REGION_ONLY: &str = "127.3.0.9";
const NOWHERE: &str = "127.9.0.9";

/// Primary appliance id and reason of a play answer.
fn primary(play: &serde_json::Value) -> (String, String) {
    let a = &play["appliances"][0];
    (
        a["id"].as_str().unwrap().to_owned(),
        a["reason"].as_str().unwrap().to_owned(),
    )
}

fn ok_play(s: &Stack, client: &str, token: &str) -> serde_json::Value {
    let r = s.play(ip(client), token, "t1", "browser", "main");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn stop(s: &Stack, token: &str, play: &serde_json::Value) {
    let path = format!("/v1/plays/{}", play["play_id"].as_str().unwrap());
    let auth = format!("Bearer {token}");
    let r = http(s.addr, "DELETE", &path, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(r.status, 204);
}

fn ffprobe_streams(url: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn an_authorised_play_is_steered_and_every_url_works() {
    let s = stack::start(&stack::fleet(), "trusted_proxies = [\"127.5.0.0/16\"]");
    let alice = s.token("alice");

    // ISP A's client gets one of ISP A's appliances, with fallbacks on other
    // appliances and a different site.
    let play = ok_play(&s, ISP_A, &alice);
    let (first, reason) = primary(&play);
    assert!(first == "oca-a1" || first == "oca-a2", "{play}");
    assert_eq!(reason, "isp-embedded");
    let pathways = play["appliances"].as_array().unwrap();
    assert!(pathways.len() >= 3, "primary and two fallbacks: {play}");
    let ids: Vec<&str> = pathways.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "fallbacks on different appliances");
    assert_ne!(
        pathways[0]["site"], pathways[1]["site"],
        "different sites where possible"
    );
    assert_eq!(play["resume_position"], 0.0);
    assert!(play["degraded"].as_array().unwrap().is_empty());

    // Every URL of the HLS manifest works on the primary and on a fallback,
    // byte for byte.
    let client = ip(ISP_A);
    let hls = play["manifests"]["hls"].as_str().unwrap();
    let before = s.sent_bytes(&first).unwrap();
    let n = fetch_all_hls(&s, client, hls, &first);
    assert!(n >= 2 * 4, "playlists' objects fetched: {n}");
    assert!(
        s.sent_bytes(&first).unwrap() > before,
        "bytes came from the steered appliance"
    );
    fetch_all_hls(&s, client, hls, ids[1]);
    // The native form lists the same renditions with a URL per pathway.
    for r in play["native"].as_array().unwrap() {
        for url in r["playlists"].as_array().into_iter().flatten() {
            assert_eq!(
                get_url(Some(client), url.as_str().unwrap()).unwrap().status,
                200,
                "{url}"
            );
        }
    }
    // DASH: one BaseURL per pathway, primary first; segments resolve under it.
    let mpd_url = play["manifests"]["dash"].as_str().unwrap();
    let mpd = String::from_utf8(get_url(Some(client), mpd_url).unwrap().body).unwrap();
    assert!(mpd.contains("<ContentSteering"), "{mpd}");
    let first_base = mpd.find(&format!("serviceLocation=\"{first}\"")).unwrap();
    assert!(
        first_base
            < mpd
                .find(&format!("serviceLocation=\"{}\"", ids[1]))
                .unwrap()
    );
    // Content steering answers with live priority, primary first.
    let steer_url = play["content_steering"]["hls"].as_str().unwrap();
    let answer = get_url(Some(client), steer_url).unwrap().json();
    assert_eq!(answer["PATHWAY-PRIORITY"][0], first.as_str(), "{answer}");
    let dash_answer = get_url(
        Some(client),
        play["content_steering"]["dash"].as_str().unwrap(),
    )
    .unwrap()
    .json();
    // DASH (ETSI TS 103 998) answers with the same key, naming serviceLocations.
    assert_eq!(
        dash_answer["PATHWAY-PRIORITY"][0],
        first.as_str(),
        "{dash_answer}"
    );
    assert!(
        dash_answer["PATHWAY-PRIORITY"].as_array().unwrap().len() >= 3,
        "{dash_answer}"
    );
    // A token signed for this title does not open another title's objects.
    let base = pathways[0]["base_url"].as_str().unwrap();
    let lowest = &stack::ladder(&s.packaged, "t3")[0].dir;
    let r = get_url(
        Some(client),
        &format!("{base}titles/t3/{lowest}/index.m3u8"),
    )
    .unwrap();
    assert_eq!(r.status, 403);
    // The licence URL is signed and takes Clear Key requests (POST); t1 is
    // clear, so no key ID is its (tests/tests/drm.rs licenses an encrypted
    // title).
    let lic = play["drm_license_url"].as_str().unwrap();
    let path = &lic[lic.find("/v1/").unwrap()..];
    let ask = |path: &str| {
        http_from(
            Some(client),
            s.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            br#"{"kids": ["AAECAwQFBgcICQoLDA0ODw"], "type": "temporary"}"#,
        )
        .unwrap()
    };
    let r = ask(path);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("kid_not_in_title"))
    );
    assert_eq!(ask(&path.replace("token=", "token=x")).status, 403);
    assert_eq!(get_url(Some(client), lic).unwrap().status, 405);

    // ffprobe (a player nobody here wrote) opens both manifests and reads
    // video and audio through the appliances.
    for url in [hls, mpd_url] {
        let streams = ffprobe_streams(url);
        assert!(
            streams.contains("video") && streams.contains("audio"),
            "{url}: {streams}"
        );
    }
    stop(&s, &alice, &play);

    // ISP B's client gets ISP B's appliance; a client of a network in the
    // region without an embedded appliance gets the region's IXP; an unknown
    // network gets any appliance, IXP before other ISPs' boxes.
    // Behind a trusted proxy the client is the forwarded address; from
    // anyone else X-Forwarded-For is ignored.
    let body = br#"{"title":"t1","device":"browser","profile":"main"}"#;
    let auth = format!("Bearer {alice}");
    for (peer, want) in [("127.5.0.1", "oca-b1"), (ISP_A, "oca-a")] {
        let r = http_from(
            Some(ip(peer)),
            s.addr,
            "POST",
            "/v1/play",
            &[("Authorization", &auth), ("X-Forwarded-For", ISP_B)],
            body,
        )
        .unwrap();
        let p = r.json();
        assert!(primary(&p).0.starts_with(want), "via {peer}: {p}");
        stop(&s, &alice, &p);
    }
    for (client, want, why) in [
        (ISP_B, "oca-b1", "isp-embedded"),
        (REGION_ONLY, "oca-x1", "region-ixp"),
        (NOWHERE, "oca-x1", "any-appliance"),
    ] {
        let p = ok_play(&s, client, &alice);
        assert_eq!(
            primary(&p),
            (want.to_owned(), why.to_owned()),
            "{client}: {p}"
        );
        stop(&s, &alice, &p);
    }
}

#[test]
fn refusals_name_their_reason_and_plans_cap() {
    let s = stack::start(&stack::fleet(), "");
    let (alice, bob, carol) = (s.token("alice"), s.token("bob"), s.token("carol"));
    let client = ip(ISP_A);
    let cases: Vec<(&str, &str, &str, &str, u16, &str)> = vec![
        ("", "t1", "browser", "main", 401, "unauthenticated"),
        ("vt_forged", "t1", "browser", "main", 401, "bad_token"),
        (
            &carol,
            "t1",
            "browser",
            "main",
            403,
            "subscription_inactive",
        ),
        (
            &alice,
            "t3",
            "browser",
            "main",
            403,
            "not_available_in_region",
        ),
        (&alice, "t2", "browser", "main", 403, "not_released"),
        (&alice, "t1", "browser", "nobody", 403, "unknown_profile"),
        (&alice, "t1", "fridge", "main", 422, "unknown_device"),
        (
            &alice,
            "t1",
            "audio-box",
            "main",
            422,
            "no_compatible_rendition",
        ),
        (&alice, "nope", "browser", "main", 404, "unknown_title"),
    ];
    for (token, title, device, profile, status, code) in cases {
        let r = s.play(client, token, title, device, profile);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (status, Some(code)),
            "{code}"
        );
    }
    let auth = format!("Bearer {alice}");
    let r = http_from(
        Some(client),
        s.addr,
        "POST",
        "/v1/play",
        &[("Authorization", &auth)],
        b"{",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("bad_json"))
    );

    // Bob's basic plan: at most 540p, one stream at a time.
    let p = ok_play(&s, ISP_A, &bob);
    let heights: Vec<u64> = p["native"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["height"].as_u64())
        .collect();
    assert!(
        !heights.is_empty() && heights.iter().all(|&h| h <= 540),
        "{heights:?}"
    );
    let master = String::from_utf8(
        get_url(Some(client), p["manifests"]["hls"].as_str().unwrap())
            .unwrap()
            .body,
    )
    .unwrap();
    // The content has rungs above 540p (stack::content checks): none is here.
    assert!(
        master
            .lines()
            .filter_map(|l| l.split("RESOLUTION=").nth(1))
            .filter_map(|r| r.split([',', 'x']).nth(1)?.parse::<u32>().ok())
            .all(|h| h <= 540),
        "no variant above 540p for basic: {master}"
    );
    let r = s.play(client, &bob, "t1", "browser", "main");
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("stream_limit"))
    );
    stop(&s, &bob, &p);
    let p2 = ok_play(&s, ISP_A, &bob);
    // Alice's standard plan: the top rung (above 540p) included, two streams.
    let top = stack::ladder(&s.packaged, "t1").last().unwrap().height;
    let a1 = ok_play(&s, ISP_A, &alice);
    assert!(
        a1["native"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["height"] == top)
    );
    let _a2 = ok_play(&s, ISP_A, &alice);
    let r = s.play(client, &alice, "t1", "browser", "kids");
    assert_eq!(r.json()["code"], "stream_limit");
    stop(&s, &bob, &p2);
}

#[test]
fn a_killed_appliance_leaves_steering_and_fallbacks_keep_working() {
    let mut s = stack::start(&stack::fleet(), "");
    let alice = s.token("alice");
    let client = ip(ISP_A);
    let play = ok_play(&s, ISP_A, &alice);
    let (first, _) = primary(&play);
    let steer_url = play["content_steering"]["hls"].as_str().unwrap().to_owned();
    let killed_at = Instant::now();
    s.appliances.get_mut(first.as_str()).unwrap().0.kill9();
    // Health: 200 ms interval, down after 2 failures, so well within a second
    // or two the appliance is down and gone from content-steering answers.
    let answer = wait_for("content steering drops the killed appliance", || {
        let a = get_url(Some(client), &steer_url)?.json();
        let list = a["PATHWAY-PRIORITY"].as_array()?.clone();
        (!list.iter().any(|p| p == first.as_str())).then_some(a)
    });
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(s.appliance(&first).unwrap()["up"], false);
    assert_ne!(answer["PATHWAY-PRIORITY"][0], first.as_str());
    // The play's fallback URLs still work.
    let fallback = answer["PATHWAY-PRIORITY"][0].as_str().unwrap().to_owned();
    assert!(
        fetch_all_hls(
            &s,
            client,
            play["manifests"]["hls"].as_str().unwrap(),
            &fallback
        ) > 0
    );
    // New plays avoid it.
    for _ in 0..5 {
        let p = ok_play(&s, ISP_A, &alice);
        let ids: Vec<&str> = p["appliances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert!(!ids.contains(&first.as_str()), "{ids:?}");
        stop(&s, &alice, &p);
    }
}

#[test]
fn a_saturated_isp_appliance_overflows_to_the_ixp() {
    let mut fleet = stack::fleet();
    // ISP B's box has 1 Mbit/s: a few segments saturate it.
    fleet[2].capacity_mbps = 1;
    let s = stack::start(&fleet, "");
    let alice = s.token("alice");
    let client = ip(ISP_B);
    let p = ok_play(&s, ISP_B, &alice);
    assert_eq!(primary(&p).0, "oca-b1");
    let hls = p["manifests"]["hls"].as_str().unwrap().to_owned();
    stop(&s, &alice, &p);
    let overflowed = wait_for("ISP B's appliance saturates and plays overflow", || {
        fetch_all_hls(&s, client, &hls, "oca-b1");
        let p = ok_play(&s, ISP_B, &alice);
        stop(&s, &alice, &p);
        (primary(&p).1 == "region-ixp").then_some(p)
    });
    assert_eq!(primary(&overflowed).0, "oca-x1");
    let saturated = overflowed["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "oca-b1");
    // When it appears at all, it is a last resort.
    if let Some(b) = saturated {
        assert_eq!(b["reason"], "saturated", "{overflowed}");
    }
}

/// A stand-in recommendation backend: answers rows, or hangs.
struct Reco {
    addr: std::net::SocketAddr,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn reco() -> Reco {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = hang.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            if h.load(Ordering::SeqCst) {
                held.push(conn); // never answered: the caller must time out
                continue;
            }
            let mut conn = conn;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = r#"{"rows":[{"title":"Because you watched patterns","items":["t1","t3","missing"]}]}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Reco { addr, hang }
}

#[test]
fn home_falls_back_and_bookmarks_resume_even_after_an_outage() {
    let backend = reco();
    let bm_dir = tempfile::tempdir().unwrap();
    let bm_db = bm_dir.path().join("not-yet/bookmarks.db");
    let s = stack::start(
        &stack::fleet(),
        &format!(
            // Rows are not kept: this is the page of a profile without last
            // good rows (home.rs has the stale ones).
            "[recommendations]\nurl = \"http://{}/rows\"\ntimeout = \"300ms\"\nfailures = 1\ncool_down = \"500ms\"\n\
             cache_ttl = \"1ms\"\nstale_for = \"1ms\"\n\
             [bookmarks]\ndatabase = \"{}\"\ntimeout = \"300ms\"\nfailures = 1\ncool_down = \"500ms\"\n",
            backend.addr,
            bm_db.display()
        ),
    );
    let alice = s.token("alice");
    let auth = format!("Bearer {alice}");
    let home = |profile: &str| {
        http(
            s.addr,
            "GET",
            &format!("/v1/home?profile={profile}"),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap()
        .json()
    };
    // Personalised rows, filtered to what the viewer's region may play.
    let h = home("main");
    assert_eq!(h["fallback"], false, "{h}");
    let row = h["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "personalised")
        .unwrap();
    assert_eq!(row["items"].as_array().unwrap().len(), 1, "{row}");

    // The bookmark store is unreachable: plays go ahead without a resume
    // position, and say so.
    let play = ok_play(&s, ISP_A, &alice);
    assert_eq!(play["resume_position"], 0.0);
    assert_eq!(play["degraded"][0], "bookmarks");
    let mark = |position: f64| {
        let body = serde_json::json!({"play_id": play["play_id"], "position": position});
        http(
            s.addr,
            "POST",
            "/v1/bookmarks",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .unwrap()
    };
    let r = mark(10.0);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("bookmarks_unavailable"))
    );
    let metrics =
        String::from_utf8(http(s.addr, "GET", "/metrics", &[], b"").unwrap().body).unwrap();
    assert!(
        metrics.contains("steering_dependency_breaker_state{dependency=\"bookmarks\"} 1"),
        "{metrics}"
    );
    // steering stays ready for its load balancer, saying what it misses.
    let health = || http(s.addr, "GET", "/health", &[], b"").unwrap();
    let h = health();
    let body = h.json();
    assert_eq!(
        (h.status, &body["status"]),
        (200, &"degraded".into()),
        "{body}"
    );
    assert_eq!(body["checks"]["bookmarks"]["state"], "degraded", "{body}");
    assert_eq!(body["checks"]["store"]["state"], "ok", "{body}");

    // It comes back: after the breaker's cool-down a trial call reopens it.
    std::fs::create_dir_all(bm_db.parent().unwrap()).unwrap();
    wait_for("bookmarks accepted again", || {
        (mark(42.5).status == 200).then_some(())
    });
    let h = health();
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    stop(&s, &alice, &play);
    let again = ok_play(&s, ISP_A, &alice);
    assert_eq!(again["resume_position"], 42.5);
    assert!(again["degraded"].as_array().unwrap().is_empty());
    let r = http(
        s.addr,
        "POST",
        "/v1/bookmarks",
        &[("Authorization", &auth)],
        br#"{"play_id":"nope","position":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = http(
        s.addr,
        "POST",
        "/v1/bookmarks",
        &[("Authorization", &auth)],
        br#"{"play_id":"x","position":-1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 400);

    // The recommendation backend hangs: home answers within the timeout with
    // popular-in-region and continue-watching rows, marked as fallback.
    backend
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let h = home("main");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h["fallback"], true, "{h}");
    assert_eq!(h["degraded"][0], "recommendations");
    let kinds: Vec<&str> = h["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["continue-watching", "popular"], "{h}");
    assert_eq!(h["rows"][0]["items"][0]["resume_position"], 42.5);
    assert_eq!(
        h["rows"][1]["items"][0]["id"], "t1",
        "the most played title leads: {h}"
    );
    // While the breaker is open, answers do not even wait for the timeout.
    let started = Instant::now();
    assert_eq!(home("main")["fallback"], true);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn with_steering_down_issued_manifests_keep_playing_and_restarted_appliances_use_cached_keys() {
    let mut s = stack::start(&stack::fleet(), "");
    let alice = s.token("alice");
    let client = ip(ISP_A);
    let play = ok_play(&s, ISP_A, &alice);
    let (first, _) = primary(&play);
    // The master playlist comes from steering: the player has it before the outage.
    let master = String::from_utf8(
        get_url(Some(client), play["manifests"]["hls"].as_str().unwrap())
            .unwrap()
            .body,
    )
    .unwrap();
    s.steering.kill9();
    let variant = master
        .lines()
        .skip_while(|l| !l.contains(&format!("PATHWAY-ID=\"{first}\"")))
        .nth(1)
        .unwrap()
        .to_owned();
    let fetch_variant = |variant: &str| {
        let media = get_url(Some(client), variant).unwrap();
        assert_eq!(media.status, 200, "{variant}");
        for uri in playlist_uris(&String::from_utf8(media.body).unwrap()) {
            let r = get_url(Some(client), &resolve(variant, &uri)).unwrap();
            assert_eq!(r.status, 200, "{uri}");
        }
    };
    // Steering is gone; the appliance serves the issued URLs (tokens verify
    // with keys it already holds).
    fetch_variant(&variant);
    // An appliance restarted while steering is down still serves: it starts
    // from the keys it cached on disk.
    let (proc, _) = s.appliances.get_mut(first.as_str()).unwrap();
    let args: Vec<String> = std::fs::read_to_string(format!("/proc/{}/cmdline", proc.child.id()))
        .unwrap()
        .split('\0')
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(str::to_owned)
        .collect();
    proc.kill9();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = Proc::start("oca", &args, &[("OCA_LOG", "warn")]);
    let new_http = restarted.addr("http=");
    let old_base = play["appliances"][0]["base_url"].as_str().unwrap();
    let old_host = old_base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    fetch_variant(&variant.replace(old_host, &new_http.to_string()));
}

/// Admission control: beyond steering's concurrency limit a play gets 503
/// `overloaded` with a jittered `Retry-After`, one address over its rate and
/// one account over its rate get 429 with theirs, and meanwhile everything
/// appliances call is answered (it never passes through admission).
#[test]
fn plays_beyond_the_limits_are_refused_with_retry_after_while_appliances_are_served() {
    let s = stack::start(
        &stack::fleet(),
        "[admission]\nmax_concurrent = 1\nmin_concurrent = 1\nretry_after = \"2s\"\n\
         client_plays_per_min = 60\nclient_burst = 4\n\
         account_plays_per_min = 6\naccount_burst = 2\n",
    );
    let (alice, bob) = (s.token("alice"), s.token("bob"));
    let plan = || {
        let auth = format!("Bearer oca-a1:{}", stack::credential_of("oca-a1"));
        http(
            s.addr,
            "GET",
            "/v1/appliances/oca-a1/fill-plan",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap()
        .status
    };

    // Concurrency: plays at once from many addresses (each well under its
    // rate) until one finds the single slot taken.
    let mut next = 0u32;
    let overloaded = wait_for("a play refused as overloaded", || {
        let batch: Vec<_> = (0..16)
            .map(|_| {
                next += 1;
                let client = ip(&format!("127.5.{}.{}", next / 250, next % 250 + 1));
                let token = alice.clone();
                let addr = s.addr;
                std::thread::spawn(move || {
                    stack::play_at(addr, client, &token, "t1", "browser", "main")
                })
            })
            .collect();
        let answers: Vec<Response> = batch.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(plan(), 200, "the fill plan is served throughout");
        answers.into_iter().find(|r| r.status == 503)
    });
    assert_eq!(overloaded.json()["code"], "overloaded");
    let secs: u64 = overloaded.header("retry-after").unwrap().parse().unwrap();
    assert!((2..4).contains(&secs), "Retry-After {secs}");

    // One address: its burst of 4, then 429 (even before the token is read).
    let from = ip("127.6.0.1");
    for _ in 0..4 {
        let r = stack::play_at(s.addr, from, "vt_forged", "t1", "browser", "main");
        assert_eq!(r.status, 401);
    }
    let r = stack::play_at(s.addr, from, &bob, "t1", "browser", "main");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], "client_rate_limited");
    assert!(r.header("retry-after").is_some());

    // One account (bob): its burst of 2 from different addresses, then 429,
    // with a Retry-After no sooner than its next play is allowed (10 s at 6
    // a minute).
    for n in 0..2 {
        let r = stack::play_at(
            s.addr,
            ip(&format!("127.7.0.{}", n + 1)),
            &bob,
            "t1",
            "browser",
            "main",
        );
        assert_ne!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = stack::play_at(s.addr, ip("127.7.0.9"), &bob, "t1", "browser", "main");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], "account_rate_limited");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(secs >= 9, "Retry-After {secs}");
    assert_eq!(plan(), 200);
    // Refusals are counted by reason.
    let m = http(s.addr, "GET", "/metrics", &[], b"").unwrap();
    let text = String::from_utf8_lossy(&m.body);
    for reason in ["overloaded", "client_rate_limited", "account_rate_limited"] {
        assert!(
            text.contains(&format!("reason=\"{reason}\"")),
            "{reason} counted"
        );
    }
    assert!(text.contains("steering_admission_limit 1\n"), "{text}");
    assert!(text.contains("steering_admission_inflight 0\n"), "{text}");
}

/// `oca-bench plays --appliances`: simulated embedded appliances in two ISPs
/// register and heartbeat the load the plays put on them; plays from both
/// ISPs' addresses (X-Forwarded-For) land on their own ISP's appliances,
/// every admitted play is one stream on its primary, and steering sees the
/// load the appliances report.
#[test]
fn simulated_appliances_carry_the_streams_steering_sends_them() {
    let mut extra = String::from("trusted_proxies = [\"127.0.0.1/32\"]\n");
    for i in 0..8 {
        extra += &format!(
            "[[appliance]]\nid = \"sim-{i}\"\ncredential = \"sim-{i}-sim-credential\"\n\
             tier = \"embedded\"\nsite = \"sim-site-{}\"\nregion = \"eu-west\"\n\
             admin_url = \"http://127.0.0.1:1\"\ncapacity_bps = 1000000000\n\
             serves = [\"10.{}.0.0/16\"]\n",
            i / 4,
            i / 4
        );
    }
    let s = stack::start(&stack::fleet(), &extra);
    let tokens = s.dir.path().join("tokens");
    let out = s.steering_cmd(&[
        "users",
        "seed",
        "--count",
        "200",
        "--prefix",
        "load",
        "--plan",
        "standard",
        "--region",
        "eu-west",
        "--tokens",
        tokens.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every rendition of t1, HLS and DASH: a play needs all of its ladder.
    let renditions: Vec<String> = stack::ladder(&stack::content(), "t1")
        .iter()
        .map(|r| r.dir.clone())
        .chain(stack::dash_dirs(&stack::content(), "t1"))
        .map(|d| format!("titles/t1/{d}"))
        .collect();
    let steering = format!("http://{}", s.addr);
    let (code, stdout, stderr) = oca_bench(
        &[
            "plays",
            "--steering",
            &steering,
            "--tokens",
            tokens.to_str().unwrap(),
            "--rate",
            "40",
            "--duration",
            "3s",
            "--window",
            "1s",
            "--connections",
            "4",
            "--appliances",
            "8",
            "--appliance-renditions",
            &renditions.join(","),
            "--appliance-objects",
            "1000",
            "--appliance-gbps",
            "1",
            "--stream-mbps",
            "20",
            "--heartbeat-every",
            "200ms",
            "--clients",
            "10.0.0.0/15",
            "--play-heartbeats",
            "500ms",
            "--watch",
            "1s",
            "--json",
        ],
        Duration::from_secs(150),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ok = r["ok"].as_u64().unwrap();
    assert!(ok >= 60, "{r}");
    let fleet = &r["fleet"];
    assert_eq!(fleet["heartbeats"]["registered"], 8, "{fleet}");
    assert!(
        fleet["heartbeats"]["heartbeats_ok"].as_u64().unwrap() >= 8 * 10,
        "{fleet}"
    );
    assert_eq!(fleet["heartbeats"]["heartbeats_failed"], 0, "{fleet}");
    // Every admitted play heartbeated (twice in its second of watching, the
    // second saying ended), each answered.
    let beats = &r["play_heartbeats"];
    assert_eq!(beats["plays"].as_u64().unwrap(), ok, "{beats}");
    assert!(beats["ok"].as_u64().unwrap() >= ok, "{beats}");
    assert!(beats["ended"].as_u64().unwrap() >= ok / 2, "{beats}");
    assert_eq!(beats["errors"], 0, "{beats}");
    assert_eq!(beats["refused"], serde_json::json!({}), "{beats}");
    assert_eq!(
        fleet["streams_elsewhere"], 0,
        "every play went to its ISP's appliances: {r}"
    );
    let last = fleet["samples"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last["streams"].as_u64().unwrap(),
        ok,
        "one stream per admitted play"
    );
    // Spread over the ISPs' appliances, and reported to steering.
    assert!(last["max_utilisation"].as_f64().unwrap() < 1.0, "{last}");
    wait_for("steering to see the simulated load", || {
        let list = http(s.addr, "GET", "/v1/appliances", &[], b"")?.json();
        let loaded = list
            .as_array()?
            .iter()
            .filter(|a| {
                a["id"].as_str().is_some_and(|id| id.starts_with("sim-"))
                    && a["utilisation"].as_f64().is_some_and(|u| u > 0.0)
            })
            .count();
        (loaded >= 6).then_some(())
    });
    // And what the plays' heartbeats measured, per client network.
    let list = http(s.addr, "GET", "/v1/appliances", &[], b"")
        .unwrap()
        .json();
    let measured = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["measured"].as_array().is_some_and(|m| !m.is_empty()))
        .count();
    assert!(measured >= 6, "{list}");
}

/// Playback heartbeats: the position becomes the bookmark (resume works
/// without a bookmark post), the samples become steering's estimate of the
/// appliance from the player's network, `ended` ends the stream, and bad
/// heartbeats get a clear 4xx.
#[test]
fn heartbeats_save_the_position_measure_the_path_and_end_the_play() {
    let s = stack::start(&stack::fleet(), "");
    let (alice, erin) = (s.token("alice"), s.token("erin"));
    let play = ok_play(&s, ISP_A, &alice);
    let id = play["play_id"].as_str().unwrap();
    let (appliance, _) = primary(&play);
    let beat = |token: &str, play_id: &str, body: serde_json::Value| {
        let auth = format!("Bearer {token}");
        http(
            s.addr,
            "POST",
            &format!("/v1/plays/{play_id}/heartbeat"),
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .unwrap()
    };
    let samples: Vec<serde_json::Value> = (0..3)
        .map(|k| {
            serde_json::json!({"pathway": appliance, "bytes": 2_000_000,
                "ttfb_ms": 4.0 + k as f64, "download_ms": 160.0})
        })
        .collect();
    let r = beat(
        &alice,
        id,
        serde_json::json!({"position": 30.5, "state": "playing", "samples": samples}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["samples"], 3);

    // The estimate: 2 MB in 160 ms is 100 Mbit/s, from ISP A's network.
    let a = s.appliance(&appliance).unwrap();
    let m = &a["measured"][0];
    assert_eq!(m["network"], "127.1.0.0/16", "{a}");
    assert!(
        (m["throughput_mbps"].as_f64().unwrap() - 100.0).abs() < 0.01,
        "{m}"
    );
    assert_eq!(m["ttfb_ms"], 5.0, "{m}");

    // Bad heartbeats, each with its reason.
    for (token, play_id, body, status, code) in [
        (
            &alice,
            "nope",
            serde_json::json!({"state": "playing"}),
            404,
            "unknown_play",
        ),
        (
            &erin,
            id,
            serde_json::json!({"state": "playing"}),
            404,
            "unknown_play",
        ),
        (
            &alice,
            id,
            serde_json::json!({"state": "dancing"}),
            400,
            "bad_json",
        ),
        (
            &alice,
            id,
            serde_json::json!({"state": "playing", "samples": [{"pathway": appliance,
                "bytes": 1, "ttfb_ms": 900.0, "download_ms": 10.0}]}),
            422,
            "bad_heartbeat",
        ),
        (
            &alice,
            id,
            serde_json::json!({"state": "playing", "samples": [{"pathway": "oca-elsewhere",
                "bytes": 1, "ttfb_ms": 1.0, "download_ms": 10.0}]}),
            422,
            "bad_heartbeat",
        ),
    ] {
        let r = beat(token, play_id, body);
        assert_eq!(
            (r.status, r.json()["code"].as_str().unwrap().to_owned()),
            (status, code.to_owned())
        );
    }

    // Ended: the stream stops counting, and resume starts where it was.
    let r = beat(
        &alice,
        id,
        serde_json::json!({"position": 42.0, "state": "ended"}),
    );
    assert_eq!(r.json()["ended"], true);
    assert_eq!(
        beat(&alice, id, serde_json::json!({"state": "playing"})).status,
        404
    );
    let again = ok_play(&s, ISP_A, &alice);
    assert_eq!(again["resume_position"], 42.0);

    // The play's signed heartbeat URL needs no viewer token; the signature
    // is the play's own, and a play ended by it is written within a flush.
    let url = again["heartbeat_url"].as_str().unwrap();
    let post = |url: &str, body: serde_json::Value| {
        let rest = url.strip_prefix("http://").unwrap();
        let path = &rest[rest.find('/').unwrap()..];
        http(s.addr, "POST", path, &[], body.to_string().as_bytes()).unwrap()
    };
    let r = post(
        url,
        serde_json::json!({"position": 3.0, "state": "playing"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let forged = url.replace("token=", "token=x");
    let other = url.replace(again["play_id"].as_str().unwrap(), id);
    for bad in [forged, other] {
        let r = post(&bad, serde_json::json!({"state": "playing"}));
        assert_eq!(r.status, 403, "{bad}: {}", String::from_utf8_lossy(&r.body));
    }
    let r = post(url, serde_json::json!({"position": 8.0, "state": "ended"}));
    assert_eq!(r.json()["ended"], true);
    // Bob may stream once at a time: a play ended by its heartbeat frees
    // the stream for his next play at once.
    let bob = s.token("bob");
    for _ in 0..3 {
        let p = ok_play(&s, ISP_A, &bob);
        let r = post(
            p["heartbeat_url"].as_str().unwrap(),
            serde_json::json!({"position": 1.0, "state": "ended"}),
        );
        assert_eq!(r.status, 200);
    }
    let metrics =
        String::from_utf8(http(s.addr, "GET", "/metrics", &[], b"").unwrap().body).unwrap();
    assert!(metric_in(&metrics, "steering_play_heartbeats_total") >= 2.0);
}

/// Players in ISP A report one of their ISP's two appliances slow: new
/// plays from ISP A go to the other, and content steering moves a play
/// already on it, while the appliance stays up and healthy.
#[test]
fn a_path_players_measure_as_slow_loses_their_networks_viewers() {
    let s = stack::start(&stack::fleet(), "");
    let (alice, bob) = (s.token("alice"), s.token("bob"));
    // A play that starts on oca-a1 (the two are equals until measured).
    let on_a1 = (0..40)
        .find_map(|_| {
            let p = ok_play(&s, ISP_A, &alice);
            if primary(&p).0 == "oca-a1" {
                Some(p)
            } else {
                stop(&s, &alice, &p);
                None
            }
        })
        .expect("a play on oca-a1");
    let plays = [
        (alice.clone(), on_a1.clone()),
        (alice.clone(), ok_play(&s, ISP_A, &alice)),
        (bob.clone(), ok_play(&s, ISP_A, &bob)),
    ];
    // Both of ISP A's appliances are among every play's pathways.
    for (_, p) in &plays {
        let ids: Vec<&str> = p["appliances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&"oca-a1") && ids.contains(&"oca-a2"),
            "{ids:?}"
        );
    }
    let steer_url = on_a1["content_steering"]["hls"]
        .as_str()
        .unwrap()
        .to_owned();
    let first =
        || get_url(Some(ip(ISP_A)), &steer_url).unwrap().json()["PATHWAY-PRIORITY"][0].clone();
    assert_eq!(first(), "oca-a1", "before any measurement");
    // 1 MB in 8 s from oca-a1: 1 Mbit/s, twice per play (confidence 6/8).
    for (token, p) in &plays {
        for _ in 0..2 {
            let body = serde_json::json!({"position": 5.0, "state": "playing", "samples": [
                {"pathway": "oca-a1", "bytes": 1_000_000, "ttfb_ms": 900.0, "download_ms": 8000.0}]});
            let auth = format!("Bearer {token}");
            let r = http(
                s.addr,
                "POST",
                &format!("/v1/plays/{}/heartbeat", p["play_id"].as_str().unwrap()),
                &[("Authorization", &auth)],
                body.to_string().as_bytes(),
            )
            .unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    // The play on oca-a1 is steered to oca-a2 (its sticky first moves).
    wait_for("content steering off the slow path", || {
        (first() == "oca-a2").then_some(())
    });
    // New plays from ISP A start on oca-a2, every one.
    stop(&s, &alice, &plays[1].1);
    for _ in 0..10 {
        let p = ok_play(&s, ISP_A, &alice);
        assert_eq!(primary(&p).0, "oca-a2", "{p}");
        stop(&s, &alice, &p);
    }
    let a1 = s.appliance("oca-a1").unwrap();
    assert_eq!(a1["eligible"], true, "{a1}");
    assert!(
        a1["measured"][0]["throughput_mbps"].as_f64().unwrap() < 1.5,
        "{a1}"
    );
}
