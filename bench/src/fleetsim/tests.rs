use super::sim::{self, Planner, Setup};
use super::trace::{DAY, EPOCH, HOUR, NO_PROFILE, Region, Session, Site, Title, World};
use super::*;

/// 10 minutes at 1,000 kbit/s: 75 MB.
fn title(id: &str, release: Option<u64>) -> Title {
    Title {
        id: id.into(),
        minutes: 10.0,
        ladder_kbps: vec![1000],
        release,
        audience: if release.is_some() { 1.0 } else { 0.0 },
        regions: vec!["*".into()],
    }
}

fn at(day: u64, hour: u64, minute: u64) -> u64 {
    EPOCH + day * DAY + hour * HOUR + minute * 60
}

fn session(start: u64, title: u32, watch_s: u32) -> Session {
    Session {
        start,
        title,
        site: 0,
        watch_s,
        kbps: 1000,
        profile: NO_PROFILE,
    }
}

fn world(titles: Vec<Title>, mut sessions: Vec<Session>, days: usize) -> World {
    sessions.sort_by_key(|s| s.start);
    World {
        start: EPOCH,
        days,
        regions: vec![Region {
            name: "r".into(),
            utc_offset_minutes: 0,
        }],
        sites: vec![Site {
            isp: "isp".into(),
            region: 0,
            appliances: 1,
        }],
        titles,
        sessions,
    }
}

fn setup(planner: Planner, disk_fraction: f64) -> Setup {
    Setup {
        planner,
        disk_fraction,
        ixp_disk_fraction: 0.0,
        ixps_per_region: 0,
        fill_rate: 1e12,
        window: ("02:00".into(), "06:00".into()),
        warmup_days: 1,
        rules: Rules::default(),
        half_life: 86_400.0,
        lookback: 7 * 86_400,
        seed: 1,
    }
}

const MB75: f64 = 75e6;

#[test]
fn bytes_are_accounted_by_hand() {
    // x may be played in region r but is licensed to no appliance's region:
    // always from the origin.
    let mut x = title("x", None);
    x.regions = vec!["elsewhere".into()];
    let w = world(
        vec![title("a", None), title("b", None), x],
        vec![
            // Day 0 (warm-up): the history; a and b go on the disk that night.
            session(at(0, 10, 0), 0, 600),
            session(at(0, 11, 0), 1, 600),
            // Day 1: twenty minutes of x across 01:00-02:00 and 02:00-03:00.
            session(at(1, 1, 50), 2, 1200),
            // Day 1, evening: a and b, from the disk.
            session(at(1, 20, 0), 0, 600),
            session(at(1, 20, 30), 1, 600),
        ],
        2,
    );
    for planner in [Planner::Current, Planner::Forecast, Planner::Oracle] {
        let o = sim::run(&w, &setup(planner, 1.0));
        let h = &o.hourly;
        assert_eq!(h.inside_isp.len(), 24, "{planner:?}");
        assert_eq!(h.origin[1], MB75, "{planner:?}: 01:50-02:00");
        assert_eq!(h.origin[2], MB75, "{planner:?}: 02:00-02:10");
        assert_eq!(h.origin.iter().sum::<f64>(), 2.0 * MB75);
        assert_eq!(h.inside_isp[20], 2.0 * MB75, "{planner:?}");
        assert_eq!(h.inside_isp.iter().sum::<f64>(), 2.0 * MB75);
        assert_eq!(o.inside_isp_share, 0.5);
        assert_eq!(o.origin_share, 0.5);
        assert_eq!(o.ixp_share, 0.0);
        assert_eq!(
            o.peak_inside_isp_share, 1.0,
            "{planner:?}: 20:00 is the peak"
        );
        assert_eq!(o.days.len(), 1);
        assert_eq!(
            o.days[0].fill_bytes, 0.0,
            "{planner:?}: filled in the warm-up"
        );
        assert_eq!(o.churn_bytes, 0.0);
    }
}

#[test]
fn a_disk_for_one_title_holds_the_one_more_watched() {
    let w = world(
        vec![title("a", None), title("b", None)],
        vec![
            session(at(0, 10, 0), 0, 600),
            session(at(0, 11, 0), 0, 600),
            session(at(0, 12, 0), 0, 600),
            session(at(0, 13, 0), 1, 600),
            session(at(1, 20, 0), 0, 600),
            session(at(1, 21, 0), 1, 600),
        ],
        2,
    );
    for planner in [Planner::Current, Planner::Forecast] {
        // Half the catalogue: one title.
        let o = sim::run(&w, &setup(planner, 0.5));
        assert_eq!(o.hourly.inside_isp[20], MB75, "{planner:?}");
        assert_eq!(o.hourly.origin[21], MB75, "{planner:?}");
    }
    // The oracle knows day 1 has one play of each: a tie, broken by id.
    let o = sim::run(&w, &setup(Planner::Oracle, 0.5));
    assert_eq!(o.hourly.inside_isp[20], MB75);
}

#[test]
fn a_launch_is_on_the_disk_before_its_first_evening() {
    let w = world(
        vec![title("a", None), title("new", Some(at(1, 8, 0)))],
        vec![
            session(at(0, 20, 0), 0, 600),
            // Released at 08:00 on day 1, watched that evening.
            session(at(1, 19, 0), 1, 600),
            session(at(1, 20, 0), 1, 600),
            session(at(1, 21, 0), 0, 600),
        ],
        3,
    );
    for planner in [Planner::Current, Planner::Forecast, Planner::Oracle] {
        let o = sim::run(&w, &setup(planner, 1.0));
        assert_eq!(o.launches, 1);
        assert_eq!(o.launch_inside_isp_share, Some(1.0), "{planner:?}");
    }
}

#[test]
fn what_is_evicted_and_filled_again_is_churn() {
    // Day 1 wants a, day 2 wants b, day 3 wants a again; the disk holds one.
    let w = world(
        vec![title("a", None), title("b", None)],
        vec![
            session(at(0, 10, 0), 0, 600),
            session(at(1, 10, 0), 1, 600),
            session(at(1, 11, 0), 1, 600),
            session(at(2, 10, 0), 0, 600),
            session(at(2, 11, 0), 0, 600),
            session(at(2, 12, 0), 0, 600),
        ],
        4,
    );
    // The popularity policy, whose one-day half-life follows each day's plays:
    // night 0 (warm-up) fills a (no plays yet: by id); night 1 keeps it; night
    // 2, b replaces it; night 3, a comes back: churn.
    let o = sim::run(&w, &setup(Planner::Current, 0.5));
    let fills: Vec<f64> = o.days.iter().map(|d| d.fill_bytes).collect();
    assert_eq!(fills, [0.0, MB75, MB75]);
    assert_eq!(o.evicted_bytes, 2.0 * MB75);
    assert_eq!(o.churn_bytes, MB75);
}

fn args(extra: &[&str]) -> FleetSimArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: FleetSimArgs,
    }
    let mut argv = vec!["fleet-sim"];
    argv.extend_from_slice(extra);
    Wrap::parse_from(argv).args
}

#[test]
fn the_report_names_each_planner_and_the_curve() {
    let a = args(&[
        "--days",
        "3",
        "--warmup-days",
        "2",
        "--titles",
        "300",
        "--sites",
        "8",
        "--sessions-per-day",
        "20000",
        "--disk-fraction",
        "0.05,0.2",
        "--threads",
        "2",
    ]);
    let report = fleet_sim(&a).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for p in ["current", "forecast", "oracle"] {
        let share = json["planners"][p]["peak_inside_isp_share"]
            .as_f64()
            .unwrap();
        assert!(share > 0.0 && share <= 1.0, "{p}: {share}");
        assert!(
            json["planners"][p]["launch_inside_isp_share"].is_number()
                || json["planners"][p]["launch_inside_isp_share"].is_null()
        );
        assert_eq!(json["planners"][p]["days"].as_array().unwrap().len(), 3);
        assert_eq!(
            json["planners"][p]["hourly"]["origin"]
                .as_array()
                .unwrap()
                .len(),
            72
        );
    }
    assert_eq!(report.curve.len(), 6);
    // More disk never keeps less inside, for a given planner.
    for p in [Planner::Current, Planner::Forecast, Planner::Oracle] {
        let at = |f: f64| {
            report
                .curve
                .iter()
                .find(|c| c.planner == p && c.disk_fraction == f)
                .unwrap()
                .inside_isp_share
        };
        assert!(at(0.2) >= at(0.05), "{p:?}");
    }
    let svg = svg::hourly(&report);
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    assert_eq!(svg.matches("<polygon").count(), 3 * 4);
    assert!(report.table().contains("forecast"));
}

#[test]
fn a_written_trace_replays_to_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let small = [
        "--days",
        "2",
        "--warmup-days",
        "2",
        "--titles",
        "200",
        "--sites",
        "6",
        "--sessions-per-day",
        "5000",
        "--planner",
        "forecast,current",
    ];
    let mut first: Vec<&str> = small.to_vec();
    first.extend(["--write-trace", trace.to_str().unwrap()]);
    let generated = fleet_sim(&args(&first)).unwrap();
    let mut again: Vec<&str> = small.to_vec();
    again.extend(["--trace", trace.to_str().unwrap()]);
    let replayed = fleet_sim(&args(&again)).unwrap();
    assert_eq!(replayed.sessions, generated.sessions);
    for (a, b) in generated.curve.iter().zip(&replayed.curve) {
        assert_eq!(a.planner, b.planner);
        assert_eq!(a.peak_inside_isp_share, b.peak_inside_isp_share);
        assert_eq!(a.fill_bytes_per_night, b.fill_bytes_per_night);
    }
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    for (extra, says) in [
        (&["--planner", "magic"][..], "--planner"),
        (&["--disk-fraction", "0"][..], "--disk-fraction"),
        (&["--disk-fraction", "1.5"][..], "--disk-fraction"),
        (&["--days", "0"][..], "--days"),
        (&["--fill-window", "02:00-02:00"][..], "--fill-window"),
        (&["--titles", "3"][..], "--titles"),
    ] {
        let err = fleet_sim(&args(extra)).unwrap_err().to_string();
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}
