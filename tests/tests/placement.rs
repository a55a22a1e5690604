//! Fill plans by the demand forecast, end to end: steering with a site of two
//! embedded appliances and a region's IXP, real plays through the play API,
//! the plans as appliances fetch them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use e2e::stack::{self, ApplianceSpec, Holds, Stack};
use e2e::*;

/// Two embedded appliances of one site (ISP A) and the region's IXP.
fn site_fleet() -> Vec<ApplianceSpec> {
    let embedded = |id| ApplianceSpec {
        id,
        tier: "embedded",
        site: "isp-a-ams",
        serves: &["127.1.0.0/16"],
        holds: Holds::Nothing,
        ..ApplianceSpec::default()
    };
    vec![embedded("oca-a1"), embedded("oca-a2"), stack::ixp()]
}

fn plan(s: &Stack, id: &str) -> serde_json::Value {
    let auth = format!("Bearer {id}:{}", stack::credential_of(id));
    let path = format!("/v1/appliances/{id}/fill-plan");
    let r = http(s.addr, "GET", &path, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The titles a plan holds, in fetch order.
fn titles(plan: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in plan["items"].as_array().unwrap() {
        let t = item["title"].as_str().unwrap().to_owned();
        if out.last() != Some(&t) {
            out.push(t);
        }
    }
    out
}

/// `not_before` of each item of `title`.
fn starts(plan: &serde_json::Value, title: &str) -> Vec<Option<u64>> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"] == title)
        .map(|i| i["not_before"].as_u64())
        .collect()
}

/// A copy of the packaged titles plus two copies of t1: t5, released in ten
/// hours with a tenth of the audience of the region's biggest title, and t6,
/// out everywhere (the tail: nobody has watched it).
fn with_launch(dir: &Path) -> (std::path::PathBuf, u64) {
    let packaged = dir.join("packaged");
    stack::copy_tree(&stack::content(), &packaged);
    stack::copy_title(&packaged, "t1", "t5");
    stack::copy_title(&packaged, "t1", "t6");
    std::fs::write(
        packaged.join("titles/t6/title.toml"),
        "name = \"Tail\"\nregions = [\"*\"]\n",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        packaged.join("titles/t5/title.toml"),
        format!(
            "name = \"Launch\"\nregions = [\"*\"]\nrelease = {}\naudience = 0.1\n",
            now + 10 * 3600
        ),
    )
    .unwrap();
    (packaged, now)
}

const VIEWER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 1, 0, 9));

#[test]
fn a_site_holds_the_head_on_each_appliance_splits_the_tail_and_staggers_launches() {
    let work = tempfile::tempdir().unwrap();
    let (packaged, now) = with_launch(work.path());
    let s = stack::start_with(&site_fleet(), "", &packaged);
    // t1 is what the region watches; t6 nobody has yet.
    for user in ["alice", "bob"] {
        let token = s.token(user);
        assert_eq!(s.play(VIEWER, &token, "t1", "browser", "main").status, 200);
    }
    let (a1, a2, x1) = (plan(&s, "oca-a1"), plan(&s, "oca-a2"), plan(&s, "oca-x1"));
    let (t1, t2) = (titles(&a1), titles(&a2));
    // The launch first, then the head: on both appliances of the site.
    assert_eq!(t1[..2], ["t5", "t1"], "{t1:?}");
    assert_eq!(t2[..2], ["t5", "t1"], "{t2:?}");
    // The tail on one of them only.
    let tail = [&t1, &t2]
        .iter()
        .filter(|t| t.contains(&"t6".to_owned()))
        .count();
    assert_eq!(tail, 1, "{t1:?} {t2:?}");
    // Embedded appliances start the launch at staggered times within
    // fill.launch_stagger (2 h by default); the IXP, their parent, at once.
    for p in [&a1, &a2] {
        let at = starts(p, "t5");
        assert!(!at.is_empty());
        assert!(
            at.iter().all(|a| *a == at[0]),
            "one start per title: {at:?}"
        );
        if let Some(at) = at[0] {
            assert!(at > now && at <= now + 2 * 3600 + 60, "{at} vs {now}");
        }
        assert!(p["items"][0]["urgent"] == true);
    }
    assert!(titles(&x1).contains(&"t5".to_owned()));
    assert!(starts(&x1, "t5").iter().all(Option::is_none));
    // Scores follow the forecast: the watched title above the unwatched.
    let score = |p: &serde_json::Value, t: &str| {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["title"] == t)
            .and_then(|i| i["score"].as_f64())
    };
    assert!(score(&a1, "t1").unwrap() > 0.0);
    let tail_score = score(&a1, "t6").or_else(|| score(&a2, "t6")).unwrap();
    assert_eq!(tail_score, 0.0);
}

#[test]
fn the_popularity_planner_stays_selectable() {
    let work = tempfile::tempdir().unwrap();
    let (packaged, _) = with_launch(work.path());
    let s = stack::start_with(
        &site_fleet(),
        "[fill]\nplanner = \"popularity\"\n",
        &packaged,
    );
    let (a1, a2) = (plan(&s, "oca-a1"), plan(&s, "oca-a2"));
    // Each appliance on its own: the same list, every title, nothing staggered.
    assert_eq!(titles(&a1), titles(&a2));
    assert_eq!(titles(&a1)[0], "t5");
    assert!(titles(&a1).contains(&"t6".to_owned()));
    assert!(starts(&a1, "t5").iter().all(Option::is_none));
}

#[test]
fn a_bad_audience_in_title_toml_is_refused_at_import() {
    let work = tempfile::tempdir().unwrap();
    let (packaged, _) = with_launch(work.path());
    std::fs::write(
        packaged.join("titles/t5/title.toml"),
        "name = \"Launch\"\nregions = [\"*\"]\naudience = -1\n",
    )
    .unwrap();
    let config = work.path().join("steering.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n",
            work.path().join("s.db").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary("steering"))
        .args(["catalog", "import"])
        .arg(&packaged)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audience must be between 0 and 100"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
