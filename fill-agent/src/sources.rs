//! Which sources to try: a source that failed (unreachable, error status,
//! corrupt bytes, too slow) is skipped for a while, doubling each time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use control_client::wire::FillSource;

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    until: Option<Instant>,
}

#[derive(Debug)]
pub struct Sources {
    state: HashMap<String, State>,
    base: Duration,
    max: Duration,
}

impl Sources {
    pub fn new(base: Duration, max: Duration) -> Sources {
        Sources {
            state: HashMap::new(),
            base,
            max,
        }
    }

    pub fn usable(&self, id: &str, now: Instant) -> bool {
        self.state
            .get(id)
            .and_then(|s| s.until)
            .is_none_or(|until| now >= until)
    }

    /// The plan's sources for an object, in plan order, minus those backing off.
    pub fn order<'a>(&self, sources: &'a [FillSource], now: Instant) -> Vec<&'a FillSource> {
        sources.iter().filter(|s| self.usable(&s.id, now)).collect()
    }

    /// When the first backed-off source of `sources` becomes usable again.
    pub fn next_usable(&self, sources: &[FillSource]) -> Option<Instant> {
        sources
            .iter()
            .filter_map(|s| self.state.get(&s.id).and_then(|st| st.until))
            .min()
    }

    pub fn failed(&mut self, id: &str, now: Instant) -> Duration {
        let s = self.state.entry(id.to_owned()).or_default();
        s.failures = s.failures.saturating_add(1);
        let backoff = self
            .base
            .saturating_mul(1u32 << (s.failures - 1).min(16))
            .min(self.max);
        s.until = Some(now + backoff);
        backoff
    }

    pub fn succeeded(&mut self, id: &str) {
        self.state.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(id: &str) -> FillSource {
        FillSource {
            id: id.into(),
            kind: "peer".into(),
            base_url: format!("http://{id}/"),
        }
    }

    #[test]
    fn failing_sources_back_off_exponentially_then_return() {
        let t = Instant::now();
        let mut s = Sources::new(Duration::from_secs(1), Duration::from_secs(8));
        let list = [src("peer"), src("parent"), src("origin")];
        let ids = |v: Vec<&FillSource>| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(s.order(&list, t)), ["peer", "parent", "origin"]);
        assert_eq!(s.failed("peer", t), Duration::from_secs(1));
        assert_eq!(ids(s.order(&list, t)), ["parent", "origin"]);
        assert_eq!(
            ids(s.order(&list, t + Duration::from_secs(1))),
            ["peer", "parent", "origin"]
        );
        assert_eq!(s.failed("peer", t), Duration::from_secs(2));
        assert_eq!(s.failed("peer", t), Duration::from_secs(4));
        assert_eq!(s.failed("peer", t), Duration::from_secs(8));
        assert_eq!(s.failed("peer", t), Duration::from_secs(8), "capped");
        assert_eq!(s.next_usable(&list), Some(t + Duration::from_secs(8)));
        s.succeeded("peer");
        assert!(s.usable("peer", t));
    }
}
