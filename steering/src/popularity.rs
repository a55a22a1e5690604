//! Popularity from the demand log: home rows (viewers), fill plans (fleet)
//! and the recommender's trending rows rank titles by recent plays.

use std::collections::HashMap;

/// Titles ranked by plays with exponential time decay (`half_life` seconds):
/// a play an hour ago counts more than one last week. Ties break by id so the
/// order is stable.
pub fn popularity<'a>(
    plays: impl IntoIterator<Item = (&'a str, u64)>,
    now: u64,
    half_life: f64,
) -> Vec<(&'a str, f64)> {
    let mut score: HashMap<&str, f64> = HashMap::new();
    for (title, at) in plays {
        let age = now.saturating_sub(at) as f64;
        *score.entry(title).or_default() += (-age * std::f64::consts::LN_2 / half_life).exp();
    }
    let mut ranked: Vec<(&str, f64)> = score.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_plays_outweigh_old_ones() {
        let day = 86_400;
        let now = 10 * day;
        let plays: Vec<(String, u64)> = [
            ("old", now - 5 * day),
            ("old", now - 5 * day),
            ("old", now - 5 * day),
            ("new", now - 100),
            ("new", now - 200),
            ("b", now),
            ("a", now),
        ]
        .iter()
        .map(|(t, at)| (t.to_string(), *at))
        .collect();
        let ranked: Vec<&str> = popularity(
            plays.iter().map(|(t, at)| (t.as_str(), *at)),
            now,
            day as f64,
        )
        .into_iter()
        .map(|(t, _)| t)
        .collect();
        assert_eq!(ranked, ["new", "a", "b", "old"]);
    }
}
