//! The global rate cap: a token bucket in bytes, shared by every download.
//! Pure: callers pass `now` and sleep for what `take` returns.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// Most bytes that may go at once (keeps bursts short so the average over
    /// any window of a second or more stays at the cap).
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate_bps: u64, now: Instant) -> Bucket {
        let rate = (rate_bps as f64 / 8.0).max(1.0);
        // 20 ms worth, at least one 16 KiB read.
        let burst = (rate / 50.0).max(16_384.0);
        Bucket {
            rate,
            burst,
            tokens: 0.0,
            last: now,
        }
    }

    /// Account for `bytes` just received; returns how long to pause so that the
    /// total stays under the rate. Debt is allowed (a read already happened), and
    /// paid back by the pause.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive the bucket as a reader would, with the clock advanced by the
    /// pauses it asks for: the average stays at the cap.
    #[test]
    fn average_rate_stays_at_the_cap() {
        let t0 = Instant::now();
        let mut now = t0;
        let rate_bps = 80_000_000; // 10 MB/s
        let mut b = Bucket::new(rate_bps, now);
        let mut total = 0u64;
        for i in 0..5_000u64 {
            let chunk = 8_192 + (i * 7919) % 57_000;
            total += chunk;
            now += b.take(chunk, now);
        }
        let secs = now.duration_since(t0).as_secs_f64();
        let achieved = total as f64 * 8.0 / secs;
        assert!(
            (achieved / rate_bps as f64 - 1.0).abs() < 0.02,
            "{achieved}"
        );
    }

    #[test]
    fn idle_time_buys_only_a_short_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(8_000_000, t0); // 1 MB/s, 20 KB burst
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(16_384, later), Duration::ZERO);
        let wait = b.take(1_000_000, later);
        assert!(wait > Duration::from_millis(950), "{wait:?}");
    }
}
