use super::*;

/// A region's hourly plays, most recent first, for `days` days ending at an
/// hour-aligned `now` that is midnight: `per_hour(day_index_from_oldest, hour_of_day)`.
fn hourly(days: usize, per_hour: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(days * 24);
    for ago in 0..days * 24 {
        // `ago` hours before midnight: day `days - 1 - ago / 24`, hour `23 - ago % 24`.
        out.push(per_hour(days - 1 - ago / 24, 23 - ago % 24));
    }
    out
}

fn meta(id: &str) -> TitleMeta<'_> {
    TitleMeta {
        id,
        release: None,
        audience: 0.0,
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-9)
}

const NOW: u64 = 1_000 * DAY;

#[test]
fn weekly_seasonality_is_in_the_volume_not_in_each_title() {
    // Weekends (days 5 and 6 of each week, counted from the oldest) play 1.5×.
    let day_volume = |d: usize| if d % 7 >= 5 { 1500.0 } else { 1000.0 };
    let hours = hourly(14, |d, _| day_volume(d) / 24.0);
    // A title with a steady 10% share of every day.
    let series: Vec<f64> = (0..14).map(|ago| 0.1 * day_volume(13 - ago)).collect();
    let history = History {
        hourly: hours,
        daily: HashMap::from([("a".to_owned(), series)]),
    };
    let f = forecast(&history, &[meta("a")], NOW, &Params::default());
    // The coming day is day 14 ≡ 0 (mod 7): a weekday.
    assert!(close(f.total, 1000.0, 0.01), "total {}", f.total);
    assert!(close(f.next_day["a"], 100.0, 0.02), "a {}", f.next_day["a"]);
    // Flat hours: a flat profile.
    assert!(f.profile.iter().all(|p| close(*p, 1.0 / 24.0, 1e-9)));

    // Two days later the coming day is a weekend day.
    let hours = hourly(14, |d, _| day_volume(d + 5) / 24.0);
    let history = History {
        hourly: hours,
        daily: HashMap::new(),
    };
    let f = forecast(&history, &[], NOW, &Params::default());
    assert!(close(f.total, 1500.0, 0.01), "total {}", f.total);
}

#[test]
fn a_fading_title_keeps_fading_and_a_steady_one_stays() {
    let hours = hourly(14, |_, _| 10_000.0 / 24.0);
    // Halving every two days, 2,000 plays a day now.
    let fading: Vec<f64> = (0..14)
        .map(|ago| 2000.0 * 2f64.powf(ago as f64 / 2.0))
        .collect();
    let steady: Vec<f64> = vec![500.0; 14];
    let history = History {
        hourly: hours,
        daily: HashMap::from([("fade".to_owned(), fading), ("steady".to_owned(), steady)]),
    };
    let f = forecast(
        &history,
        &[meta("fade"), meta("steady")],
        NOW,
        &Params::default(),
    );
    let expected = 2000.0 / 2f64.sqrt();
    assert!(
        close(f.next_day["fade"], expected, 0.05),
        "{}",
        f.next_day["fade"]
    );
    assert!(
        close(f.next_day["steady"], 500.0, 0.01),
        "{}",
        f.next_day["steady"]
    );
}

#[test]
fn a_tail_title_is_forecast_by_its_level_not_its_noise() {
    let hours = hourly(14, |_, _| 100_000.0 / 24.0);
    // 0, 0, 0, 0, 0, 0, 3 plays (most recent last): a blip, not a trend of ×∞.
    let series = vec![3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let history = History {
        hourly: hours,
        daily: HashMap::from([("tail".to_owned(), series)]),
    };
    let f = forecast(&history, &[meta("tail")], NOW, &Params::default());
    let v = f.next_day["tail"];
    assert!(v > 0.1 && v < 3.0, "{v}");
}

#[test]
fn the_daily_profile_follows_the_evening_peak() {
    // Three times the plays 20:00-22:00 as at any other hour.
    let hours = hourly(7, |_, h| if (20..22).contains(&h) { 300.0 } else { 100.0 });
    let history = History {
        hourly: hours,
        daily: HashMap::new(),
    };
    // `now` is midnight: hour 20 of the coming day is profile[20].
    let f = forecast(&history, &[], NOW, &Params::default());
    let day = 22.0 * 100.0 + 2.0 * 300.0;
    assert!(close(f.profile[20], 300.0 / day, 1e-9));
    assert!(close(f.profile[3], 100.0 / day, 1e-9));
    assert!(close(f.peak_share(), 300.0 / day, 1e-9));
}

#[test]
fn a_launch_is_forecast_from_its_audience_before_release() {
    let hours = hourly(14, |_, h| if h >= 12 { 150.0 } else { 50.0 });
    let history = History {
        hourly: hours,
        daily: HashMap::from([("big".to_owned(), vec![400.0; 14])]),
    };
    let titles = [
        meta("big"),
        TitleMeta {
            id: "soon",
            release: Some(NOW + 12 * HOUR),
            audience: 2.0,
        },
        TitleMeta {
            id: "later",
            release: Some(NOW + 5 * DAY),
            audience: 0.5,
        },
    ];
    let f = forecast(&history, &titles, NOW, &Params::default());
    let top = f.next_day["big"];
    assert!(close(top, 400.0, 0.01));
    assert!(close(f.first_day["soon"], 2.0 * top, 1e-9));
    // Released at noon: the afternoon carries three quarters of a day's plays.
    assert!(
        close(f.next_day["soon"], 2.0 * top * 0.75, 1e-9),
        "{}",
        f.next_day["soon"]
    );
    assert!(close(f.first_day["later"], 0.5 * top, 1e-9));
    assert_eq!(f.next_day["later"], 0.0);
    // Planning looks at the first day for a title not out yet.
    assert!(close(f.value("later"), 0.5 * top, 1e-9));
    assert!(close(f.value("big"), top, 1e-9));
}

#[test]
fn a_launch_that_beats_its_prior_is_believed_within_hours() {
    // Evening-heavy region: 19:00-23:00 carries half of the day.
    let hours = hourly(14, |_, h| {
        if (19..23).contains(&h) {
            250.0
        } else {
            1000.0 / 20.0
        }
    });
    let history_with = |launch_plays: f64| History {
        hourly: hours.clone(),
        daily: HashMap::from([
            ("big".to_owned(), vec![100.0; 14]),
            ("new".to_owned(), vec![launch_plays]),
        ]),
    };
    let titles = [
        meta("big"),
        TitleMeta {
            id: "new",
            // Released at 19:00; `now` is midnight: five hours, 19:00-24:00.
            release: Some(NOW - 5 * HOUR),
            audience: 1.0,
        },
    ];
    let params = Params::default();
    // Five hours that carry 1,050 of the day's 2,000 plays (52.5%) saw 1,050
    // plays of it: a day's worth of about 2,000, ten times its prior.
    let f = forecast(&history_with(1050.0), &titles, NOW, &params);
    let decayed = |v: f64| v * 0.5f64.powf((5.0 / 24.0 + 0.5) / 3.0);
    let prior = decayed(100.0);
    let rate = decayed(2000.0);
    let got = f.next_day["new"];
    assert!(got > 0.45 * rate && got < rate, "{got} vs {rate}");
    // Not one play in hours that should have seen about fifty: well below
    // its prior.
    let f = forecast(&history_with(0.0), &titles, NOW, &params);
    let got = f.next_day["new"];
    assert!(got > 0.3 * prior && got < 0.7 * prior, "{got} vs {prior}");
}

#[test]
fn no_history_gives_an_empty_forecast_not_a_panic() {
    let f = forecast(
        &History::default(),
        &[
            meta("a"),
            TitleMeta {
                id: "b",
                release: Some(NOW + HOUR),
                audience: 1.0,
            },
        ],
        NOW,
        &Params::default(),
    );
    assert_eq!(f.total, 0.0);
    assert_eq!(f.value("a"), 0.0);
    assert_eq!(f.value("b"), 0.0);
    assert!(close(f.profile.iter().sum::<f64>(), 1.0, 1e-9));
}

#[test]
fn store_counts_become_histories_as_long_as_the_region_has_plays() {
    let counts = Counts {
        daily: vec![
            ("eu".into(), "a".into(), 0, 5.0),
            ("eu".into(), "a".into(), 2, 3.0),
            ("eu".into(), "b".into(), 1, 1.0),
            ("us".into(), "a".into(), 0, 2.0),
            // Beyond what was asked: ignored.
            ("eu".into(), "a".into(), 20, 9.0),
        ],
        hourly: vec![
            ("eu".into(), 0, 4.0),
            ("eu".into(), 5, 1.0),
            ("eu".into(), 60, 3.0),
            ("eu".into(), 25, 1.0),
            ("us".into(), 3, 2.0),
        ],
    };
    let h = histories(&counts, 14);
    let eu = &h["eu"];
    // Plays go back three days (hour 60 is in day 2).
    assert_eq!(eu.hourly.len(), 72);
    assert_eq!(eu.hourly[0], 4.0);
    assert_eq!(eu.hourly[60], 3.0);
    assert_eq!(eu.daily["a"], [5.0, 0.0, 3.0]);
    assert_eq!(eu.daily["b"], [0.0, 1.0, 0.0]);
    let us = &h["us"];
    assert_eq!(us.hourly.len(), 24);
    assert_eq!(us.daily["a"], [2.0]);
}
