//! Home rows, browse and search end to end: steering with the recommendation
//! service (`steering recommender`) it reaches through `[recommendations]
//! url`, real plays as the history it learns from, and the service stopped
//! and killed under it.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::stack;
use e2e::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn get(s: &stack::Stack, token: &str, path: &str) -> Response {
    let auth = format!("Bearer {token}");
    http(s.addr, "GET", path, &[("Authorization", &auth)], b"").unwrap()
}

fn kinds(home: &serde_json::Value) -> Vec<String> {
    home["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn all_items(home: &serde_json::Value) -> Vec<String> {
    home["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["items"].as_array().unwrap().iter())
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn home_rows_learn_from_plays_and_survive_the_recommender_stopping_and_dying() {
    // The lab's home page, served by steering as the web player is.
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let pages = tempfile::tempdir().unwrap();
    std::fs::copy(browser.join("home.html"), pages.path().join("home.html")).unwrap();
    let mut s = stack::start(
        &stack::fleet(),
        &format!("player_dir = \"{}\"", pages.path().display()),
    );
    // A second US viewer, and the service that learns from both.
    s.add_user("frank", "standard", "US", "us-east");
    let mut cfg = std::fs::read_to_string(&s.config).unwrap();
    cfg += "\n[recommender]\nretrain_every = \"500ms\"\nper_row = 10\n";
    std::fs::write(&s.config, &cfg).unwrap();
    let mut recommender = Proc::start(
        "steering",
        &[
            "recommender",
            "--config",
            s.config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("STEERING_LOG", "info")],
    );
    let url = format!("http://{}/rows", recommender.addr("http="));
    cfg += &format!(
        "[recommendations]\nurl = \"{url}\"\ntimeout = \"300ms\"\nfailures = 2\ncool_down = \"1s\"\ncache_ttl = \"1s\"\n"
    );
    std::fs::write(&s.config, &cfg).unwrap();
    s.restart_steering();

    let (erin, frank, alice) = (s.token("erin"), s.token("frank"), s.token("alice"));
    for (token, title) in [
        (&frank, "t1"),
        (&frank, "long"),
        (&erin, "t1"),
        (&alice, "t1"),
    ] {
        let r = s.play(ip("127.3.0.9"), token, title, "browser", "main");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    // Erin watched t1; Frank, who also watched t1, went on to long.
    let home = wait_for("erin's rows from a model that saw the plays", || {
        let h = get(&s, &erin, "/v1/home?profile=main").json();
        kinds(&h)
            .contains(&"because-you-watched".to_owned())
            .then_some(h)
    });
    assert_eq!(home["fallback"], false, "{home}");
    assert_eq!(home["stale"], false, "{home}");
    assert!(
        home["model_version"].as_str().unwrap().starts_with('m'),
        "{home}"
    );
    let because = home["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "because-you-watched")
        .unwrap();
    assert_eq!(
        because["reason"], "Because you watched Test pattern t1",
        "{home}"
    );
    assert_eq!(because["items"][0]["id"], "long", "{home}");
    let picks = &home["rows"][0];
    assert_eq!(picks["kind"], "top-picks", "{home}");
    assert!(
        picks["reason"].as_str().unwrap().contains("model"),
        "{home}"
    );
    let items = all_items(&home);
    assert!(!items.contains(&"t2".to_owned()), "not released: {home}");
    assert!(
        !home["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] != "continue-watching")
            .flat_map(|r| r["items"].as_array().unwrap())
            .any(|i| i["id"] == "t1"),
        "nothing already watched is recommended: {home}"
    );

    // The same rows drawn by the home page in Chromium, reasons and links.
    let out = Command::new("timeout")
        .arg("90")
        .arg("node")
        .arg(browser.join("home.mjs"))
        .arg(format!(
            "http://{}/player/home.html?token={erin}&profile=main",
            s.addr
        ))
        .current_dir(&browser)
        .output()
        .unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("home.mjs: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(page["phase"], "shown", "{page}");
    let drawn = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "because-you-watched")
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(drawn["reason"], "Because you watched Test pattern t1");
    assert_eq!(drawn["items"][0], "long");
    assert!(page["links"].as_u64().unwrap() >= 2, "{page}");

    // Alice (eu-west) watched t1 too, but long (and t3) are US only: never hers.
    let alice_home = get(&s, &alice, "/v1/home?profile=main").json();
    let theirs = all_items(&alice_home);
    assert!(
        theirs.iter().all(|t| t == "t1"),
        "only what alice may play: {alice_home}"
    );

    // Browse and search see what the account may: US titles for Erin, the
    // coming title marked.
    let page = get(&s, &erin, "/v1/titles?limit=2").json();
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let page = get(&s, &alice, "/v1/titles").json();
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["t2", "t1"],
        "by name; US titles are not hers: {page}"
    );
    assert_eq!(page["items"][0]["coming"], true);
    let hits = get(&s, &erin, "/v1/search?q=patern%20lon").json();
    assert_eq!(
        hits["items"][0]["id"], "long",
        "a typo and a prefix: {hits}"
    );
    assert!(
        get(&s, &alice, "/v1/search?q=long").json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let t1 = get(&s, &erin, "/v1/titles/t1?device=browser").json();
    assert_eq!(t1["playable"], true, "{t1}");
    assert!(!t1["ladders"]["hls"].as_array().unwrap().is_empty(), "{t1}");
    let t2 = get(&s, &erin, "/v1/titles/t2").json();
    assert_eq!(
        (t2["playable"].clone(), t2["refusal"].clone()),
        (false.into(), "not_released".into())
    );
    assert_eq!(get(&s, &alice, "/v1/titles/t3").status, 404);
    assert_eq!(get(&s, &erin, "/v1/search?q=x&limit=0").status, 400);

    // The service stops answering (SIGSTOP): once the cached rows expire,
    // the last good ones are served, marked stale, without waiting long.
    let pid = recommender.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stale = wait_for("erin's last good rows, stale", || {
        let started = Instant::now();
        let h = get(&s, &erin, "/v1/home?profile=main").json();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a slow service must not hold the page"
        );
        (h["stale"] == true).then_some(h)
    });
    assert_eq!(all_items(&stale), items, "the same rows");
    assert!(
        stale["degraded"].to_string().contains("recommendations"),
        "{stale}"
    );
    // A profile never cached gets the regional fallback, not an error.
    let kids = get(&s, &alice, "/v1/home?profile=kids");
    assert_eq!(kids.status, 200);
    let kids = kids.json();
    assert_eq!(kids["fallback"], true, "{kids}");
    assert_eq!(kinds(&kids), ["popular"], "{kids}");

    // Killed outright: the same.
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    recommender.kill9();
    let h = get(&s, &erin, "/v1/home?profile=main").json();
    assert_eq!(
        (h["stale"].clone(), all_items(&h)),
        (true.into(), items),
        "{h}"
    );
    let metrics =
        String::from_utf8(http(s.addr, "GET", "/metrics", &[], b"").unwrap().body).unwrap();
    assert!(metric_in(&metrics, "steering_home_rows_total{reason=\"stale\"}") >= 2.0);
}

/// A title's artwork, imported from its `title.toml`, is handed out by
/// browse as a signed URL on the origin, which serves it.
#[test]
fn artwork_is_listed_with_a_signed_origin_url() {
    let packaged = tempfile::tempdir().unwrap();
    stack::copy_tree(&stack::content(), packaged.path());
    // oca-pack wrote a poster for every title and listed it in title.toml.
    let poster = std::fs::read(packaged.path().join("titles/t1/poster.jpg")).unwrap();
    assert!(poster.starts_with(b"\xff\xd8\xff"), "a JPEG");
    let (s, _origin) = stack::start_with_origin(&stack::fleet(), packaged.path());
    let alice = s.token("alice");
    let t = get(&s, &alice, "/v1/titles/t1").json();
    assert_eq!(t["artwork"][0]["name"], "poster.jpg", "{t}");
    let url = t["artwork"][0]["url"].as_str().unwrap();
    assert!(
        url.contains("/t/") && url.ends_with("/titles/t1/poster.jpg"),
        "{url}"
    );
    let got = get_url(None, url).unwrap();
    assert_eq!((got.status, got.body), (200, poster));
    // A title without artwork (the lab's "Coming soon", rewritten without
    // one by make-content) lists none.
    assert_eq!(
        get(&s, &alice, "/v1/titles/t2").json()["artwork"],
        serde_json::json!([])
    );
}
