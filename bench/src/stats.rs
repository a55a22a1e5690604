//! What one worker thread measured: latency histograms, counters, errors.
//!
//! Each thread owns one [`Stats`] (shared by its connections, which run on the
//! same single-threaded runtime), so recording never contends; threads' stats are
//! merged once at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Why a request failed. Cheap and `Copy`: it is produced on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// TCP connect or TLS handshake failed.
    Connect,
    /// No complete response within `--timeout`, or still running at the hard stop.
    Timeout,
    /// A status other than the one expected (200, or 206 for ranges).
    Status,
    /// Body shorter than announced, or Content-Length / Content-Range not
    /// matching the object or the range asked for.
    Length,
    /// The body's SHA-256 differs from the catalogue's.
    Hash,
    /// Unparseable or unsupported response (e.g. chunked, no Content-Length).
    Protocol,
    /// Connection reset or closed before a response began.
    Reset,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Status,
        ErrorKind::Length,
        ErrorKind::Hash,
        ErrorKind::Protocol,
        ErrorKind::Reset,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Highest latency a histogram tracks, in µs; longer values are clamped
/// (a request can never take longer than the run's hard stop anyway).
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Measurements of the recorded (post-warmup) part of a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Request latency: intended send time to last body byte.
    pub latency: Histogram<u64>,
    /// Time to first byte: intended send time to the first response byte.
    pub ttfb: Histogram<u64>,
    /// Requests that completed without error.
    pub requests: u64,
    /// Response body bytes received, for successful and failed requests alike.
    pub bytes: u64,
    errors: [u64; ErrorKind::ALL.len()],
    /// Unexpected status codes and how often each was seen.
    pub status_codes: BTreeMap<u16, u64>,
    /// Connections opened after a connection's first (server closed, or error).
    pub reconnects: u64,
    /// Open loop only: requests scheduled in the measured window that were never
    /// sent because the connection was still behind when the run ended.
    pub unsent: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            ttfb: histogram(),
            requests: 0,
            bytes: 0,
            errors: [0; ErrorKind::ALL.len()],
            status_codes: BTreeMap::new(),
            reconnects: 0,
            unsent: 0,
        }
    }
}

impl Stats {
    /// Records a successful request.
    pub fn ok(&mut self, latency: Duration, ttfb: Duration) {
        self.requests += 1;
        self.latency.saturating_record(micros(latency));
        self.ttfb.saturating_record(micros(ttfb));
    }

    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind.index()] += 1;
    }

    pub fn status_error(&mut self, code: u16) {
        self.error(ErrorKind::Status);
        *self.status_codes.entry(code).or_default() += 1;
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Adds another thread's measurements into this one.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttfb.add(&other.ttfb);
        self.requests += other.requests;
        self.bytes += other.bytes;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (code, n) in &other.status_codes {
            *self.status_codes.entry(*code).or_default() += n;
        }
        self.reconnects += other.reconnects;
        self.unsent += other.unsent;
    }
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=100u64 {
            a.ok(Duration::from_millis(ms), Duration::from_micros(ms * 10));
        }
        for ms in 101..=200u64 {
            b.ok(Duration::from_millis(ms), Duration::from_micros(ms * 10));
        }
        a.bytes = 10;
        b.bytes = 32;
        a.status_error(404);
        b.status_error(404);
        b.status_error(503);
        b.error(ErrorKind::Timeout);
        b.reconnects = 3;
        a.merge(&b);
        assert_eq!(a.requests, 200);
        assert_eq!(a.bytes, 42);
        assert_eq!(a.latency.len(), 200);
        assert_eq!(a.ttfb.len(), 200);
        // The merged median is the whole population's, not either part's.
        let p50 = a.latency.value_at_quantile(0.5);
        assert!((99_900..=100_100).contains(&p50), "{p50}");
        assert!(a.latency.max() >= 199_900);
        assert_eq!(a.errors(ErrorKind::Status), 3);
        assert_eq!(a.errors(ErrorKind::Timeout), 1);
        assert_eq!(a.total_errors(), 4);
        assert_eq!(a.status_codes[&404], 2);
        assert_eq!(a.status_codes[&503], 1);
        assert_eq!(a.reconnects, 3);
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut s = Stats::default();
        s.ok(Duration::ZERO, Duration::ZERO);
        s.ok(Duration::from_secs(100_000), Duration::from_secs(100_000));
        assert_eq!(s.latency.len(), 2);
        assert_eq!(s.latency.min(), 1);
    }

    #[test]
    fn kinds_index_their_counters() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
