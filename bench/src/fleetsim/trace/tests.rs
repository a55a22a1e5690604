use super::*;

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        days: 8,
        titles: 400,
        sites: 12,
        sessions_per_day: 20_000.0,
        launches_per_day: 2.0,
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = generate(&spec(7));
    let b = generate(&spec(7));
    let c = generate(&spec(8));
    assert_eq!(a.sessions, b.sessions);
    assert_eq!(a.titles, b.titles);
    assert_ne!(a.sessions, c.sessions);
    assert!(a.sessions.windows(2).all(|w| w[0].start <= w[1].start));
    let per_day = a.sessions.len() as f64 / 8.0;
    assert!((per_day / 20_000.0 - 1.0).abs() < 0.05, "{per_day}");
    assert_eq!(a.sites.len(), 12);
    assert_eq!(a.regions.len(), 4);
}

#[test]
fn viewing_peaks_in_each_regions_evening_and_sessions_fit_their_titles() {
    let w = generate(&spec(1));
    for (r, region) in w.regions.iter().enumerate() {
        let mut by_local_hour = [0u64; 24];
        for s in &w.sessions {
            if w.sites[s.site as usize].region != r {
                continue;
            }
            let local = s.start as i64 + i64::from(region.utc_offset_minutes) * 60;
            by_local_hour[(local.rem_euclid(DAY as i64) / HOUR as i64) as usize] += 1;
        }
        let peak = (0..24).max_by_key(|&h| by_local_hour[h]).unwrap();
        let trough = (0..24).min_by_key(|&h| by_local_hour[h]).unwrap();
        assert!((19..=22).contains(&peak), "{}: peak at {peak}", region.name);
        assert!(
            (1..=5).contains(&trough),
            "{}: trough at {trough}",
            region.name
        );
    }
    for s in &w.sessions {
        let t = &w.titles[s.title as usize];
        assert!(f64::from(s.watch_s) <= (t.minutes * 60.0).max(60.0));
        assert!(
            t.release.is_none_or(|r| s.start >= r),
            "played before release"
        );
        assert!(
            t.ladder_kbps
                .iter()
                .any(|&k| k + AUDIO_KBPS == s.kbps || k == s.kbps)
        );
    }
}

#[test]
fn popularity_is_heavy_tailed_and_launches_spike() {
    let w = generate(&spec(3));
    let mut plays = vec![0u64; w.titles.len()];
    for s in &w.sessions {
        plays[s.title as usize] += 1;
    }
    let mut sorted = plays.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top_tenth: u64 = sorted[..w.titles.len() / 10].iter().sum();
    let all: u64 = sorted.iter().sum();
    assert!(
        top_tenth as f64 > 0.5 * all as f64,
        "top 10%: {top_tenth} of {all}"
    );
    // A launch plays more on its first day than on its third.
    let launches: Vec<usize> = (0..w.titles.len())
        .filter(|&i| {
            w.titles[i]
                .release
                .is_some_and(|r| r + 3 * DAY <= w.start + 8 * DAY)
        })
        .collect();
    assert!(!launches.is_empty());
    let (mut first, mut third) = (0, 0);
    for s in &w.sessions {
        if let Some(r) = w.titles[s.title as usize].release
            && launches.contains(&(s.title as usize))
        {
            match (s.start - r) / DAY {
                0 => first += 1,
                2 => third += 1,
                _ => {}
            }
        }
    }
    assert!(first > third, "first day {first}, third {third}");
}

#[test]
fn a_written_trace_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    let w = generate(&Spec {
        days: 2,
        sessions_per_day: 2_000.0,
        ..spec(5)
    });
    write(&w, &path).unwrap();
    let r = read(&path).unwrap();
    assert_eq!(r.sessions, w.sessions);
    assert_eq!(r.sites, w.sites);
    assert_eq!(r.regions, w.regions);
    assert_eq!(r.start, w.start);
    assert_eq!(r.days, 2);
    assert_eq!(r.titles, w.titles);
}

#[test]
fn profiles_have_their_tastes_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    let mut w = generate(&Spec {
        days: 2,
        sessions_per_day: 4_000.0,
        ..spec(5)
    });
    let plain = w.sessions.clone();
    assign_profiles(&mut w, 20, 8, 0.9, 5);
    // The draws of the trace itself are untouched.
    for (a, b) in plain.iter().zip(&w.sessions) {
        assert_eq!((a.start, a.title, a.site), (b.start, b.title, b.site));
    }
    assert!(w.sessions.iter().all(|s| s.profile < 20));
    write(&w, &path).unwrap();
    assert_eq!(read(&path).unwrap().sessions, w.sessions);
    // With tastes, a profile's sessions concentrate on few titles' genres:
    // fewer distinct (profile, title) pairs than without.
    let distinct = |w: &World| {
        let mut pairs: Vec<(u32, u32, u32)> = w
            .sessions
            .iter()
            .map(|s| (s.site, s.profile, s.title))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs.len()
    };
    let mut alike = w.clone();
    assign_profiles(&mut alike, 20, 8, 0.0, 5);
    assert!(
        distinct(&w) < distinct(&alike),
        "{} vs {}",
        distinct(&w),
        distinct(&alike)
    );
}

#[test]
fn bad_trace_files_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let titles = dir.path().join("t.csv.titles.csv");
    std::fs::write(
        &titles,
        "title,minutes,ladder_kbps,release,audience,regions\na,10,500;128,,,*\n",
    )
    .unwrap();
    let case = |sessions: &str| {
        std::fs::write(&path, sessions).unwrap();
        read(&path).unwrap_err().to_string()
    };
    assert!(case("when,where\n").contains("header"));
    let header = "start,region,isp,title,watch_s,kbps\n";
    assert!(case(&format!("{header}10,r,i,zz,60,500\n")).contains("\"zz\" is not in"));
    assert!(
        case(&format!("{header}10,r,i,a,60,500\n5,r,i,a,60,500\n"))
            .contains(":3: sessions must be sorted")
    );
    assert!(case(&format!("{header}10,r,i,a,sixty,500\n")).contains("watch_s"));
    assert!(case(&format!("{header}10,r,i,a,60\n")).contains("5 fields"));
    assert!(case(header).contains("no sessions"));
    std::fs::remove_file(&titles).unwrap();
    assert!(case(&format!("{header}10,r,i,a,60,500\n")).contains("cannot open"));
}
