//! Eviction order: what to delete when planned content needs the space.
//! Only renditions the plan no longer wants are candidates, least valuable
//! first, where value is popularity-weighted recency from oca's access
//! statistics: requests, discounted by hours since the last one.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub rendition: String,
    pub bytes: u64,
    pub hits: u64,
    /// Unix seconds of the last request (0: never).
    pub last_access: u64,
}

/// Higher is more worth keeping.
pub fn value(c: &Candidate, now: u64) -> f64 {
    let age_hours = now.saturating_sub(c.last_access) as f64 / 3600.0;
    (1.0 + c.hits as f64) / (1.0 + age_hours)
}

/// Candidates to evict, in order, until at least `need` bytes are freed (or
/// every unplanned rendition is chosen). Planned renditions are never chosen.
pub fn choose(
    mut candidates: Vec<Candidate>,
    planned: &HashSet<&str>,
    need: u64,
    now: u64,
) -> Vec<Candidate> {
    candidates.retain(|c| !planned.contains(c.rendition.as_str()));
    candidates.sort_by(|a, b| {
        value(a, now)
            .total_cmp(&value(b, now))
            .then_with(|| a.rendition.cmp(&b.rendition))
    });
    let mut freed = 0u64;
    let mut out = Vec::new();
    for c in candidates {
        if freed >= need {
            break;
        }
        freed += c.bytes;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(r: &str, bytes: u64, hits: u64, last_access: u64) -> Candidate {
        Candidate {
            rendition: r.into(),
            bytes,
            hits,
            last_access,
        }
    }

    #[test]
    fn least_valuable_unplanned_first_until_enough() {
        let now = 100 * 3600;
        let cands = vec![
            c("hot", 10, 1000, now),
            c("stale", 10, 1000, now - 90 * 3600), // many hits, long ago
            c("never", 10, 0, 0),
            c("recent-few", 10, 3, now - 1800),
            c("planned", 10, 0, 0),
        ];
        let planned: HashSet<&str> = ["planned"].into();
        let order: Vec<String> = choose(cands.clone(), &planned, u64::MAX, now)
            .into_iter()
            .map(|c| c.rendition)
            .collect();
        assert_eq!(order, ["never", "recent-few", "stale", "hot"]);
        let some = choose(cands.clone(), &planned, 15, now);
        assert_eq!(some.len(), 2, "stops once enough is freed");
        assert!(choose(cands, &planned, 0, now).is_empty());
    }
}
