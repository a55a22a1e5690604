//! The fill window: whether `now` falls inside the appliance's off-peak hours.

use control_client::wire::FillWindow;

/// Minutes after local midnight of an `HH:MM` string.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

/// Whether unix time `now` is inside `w` (start inclusive, end exclusive; an end
/// before the start wraps over midnight; equal start and end means all day).
/// A malformed window is treated as closed: filling at peak is the failure to avoid.
pub fn is_open(w: &FillWindow, now: u64) -> bool {
    let (Some(start), Some(end)) = (parse_hhmm(&w.start), parse_hhmm(&w.end)) else {
        return false;
    };
    let local = now as i64 + i64::from(w.utc_offset_minutes) * 60;
    let minute = (local.rem_euclid(86_400) / 60) as u32;
    match start.cmp(&end) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => (start..end).contains(&minute),
        std::cmp::Ordering::Greater => minute >= start || minute < end,
    }
}

/// Seconds from `now` until the window next opens (0 if open now).
pub fn until_open(w: &FillWindow, now: u64) -> Option<u64> {
    let start = parse_hhmm(&w.start)?;
    parse_hhmm(&w.end)?;
    if is_open(w, now) {
        return Some(0);
    }
    let local = now as i64 + i64::from(w.utc_offset_minutes) * 60;
    let secs_today = local.rem_euclid(86_400) as u64;
    let start_secs = u64::from(start) * 60;
    Some(if start_secs > secs_today {
        start_secs - secs_today
    } else {
        86_400 - secs_today + start_secs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: &str, end: &str, offset: i32) -> FillWindow {
        FillWindow {
            start: start.into(),
            end: end.into(),
            utc_offset_minutes: offset,
        }
    }

    const DAY: u64 = 86_400 * 20_000; // some midnight UTC

    fn at(h: u64, m: u64) -> u64 {
        DAY + h * 3600 + m * 60
    }

    #[test]
    fn windows_with_offsets_and_midnight() {
        let cases = [
            (w("02:00", "06:00", 0), at(1, 59), false),
            (w("02:00", "06:00", 0), at(2, 0), true),
            (w("02:00", "06:00", 0), at(5, 59), true),
            (w("02:00", "06:00", 0), at(6, 0), false),
            // 02:00-06:00 at UTC+1 is 01:00-05:00 UTC.
            (w("02:00", "06:00", 60), at(1, 0), true),
            (w("02:00", "06:00", 60), at(5, 0), false),
            (w("02:00", "06:00", -300), at(7, 0), true),
            // Over midnight.
            (w("23:00", "03:00", 0), at(23, 30), true),
            (w("23:00", "03:00", 0), at(2, 59), true),
            (w("23:00", "03:00", 0), at(12, 0), false),
            (w("00:00", "00:00", 0), at(12, 0), true),
            // Malformed: closed.
            (w("25:00", "03:00", 0), at(1, 0), false),
            (w("2:00", "03:00", 0), at(2, 30), false),
        ];
        for (win, now, open) in cases {
            assert_eq!(is_open(&win, now), open, "{win:?} at {}", (now - DAY) / 60);
        }
    }

    #[test]
    fn time_until_the_window_opens() {
        let win = w("02:00", "06:00", 0);
        assert_eq!(until_open(&win, at(3, 0)), Some(0));
        assert_eq!(until_open(&win, at(1, 0)), Some(3600));
        assert_eq!(until_open(&win, at(7, 0)), Some(19 * 3600));
        assert_eq!(until_open(&w("x", "06:00", 0), at(7, 0)), None);
    }
}
