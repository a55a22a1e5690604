//! When to try again, and when to stop trying: exponential backoff with full
//! jitter, and a circuit breaker. Pure state machines with `now` passed in.

use std::time::{Duration, Instant};

/// How calls to the control plane are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, including the first.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
    /// Timeout of each attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Sleep before attempt `attempt` (1 = the first retry), given a uniform
    /// random `jitter` in [0, 1): "full jitter", so a fleet that lost the control
    /// plane at the same moment does not come back in lockstep.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max);
        cap.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Circuit breaker: after `threshold` consecutive failures, calls fail fast for
/// `cool_down`; then one trial call decides whether to close again.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
            // One trial at a time: the trial's outcome reopens or closes.
            BreakerState::HalfOpen => false,
        }
    }

    /// Record a call's outcome.
    pub fn record(&mut self, now: Instant, ok: bool) {
        self.state = match (self.state, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => BreakerState::Open {
                until: now + self.cool_down,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_and_jittered() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(60, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn breaker_opens_cools_down_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.record(t0, false);
        }
        assert!(b.allow(t0));
        b.record(t0, false);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + Duration::from_secs(10)
            }
        );
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        // Cool-down over: one trial goes out, others wait for its outcome.
        assert!(b.allow(t0 + Duration::from_secs(10)));
        assert!(!b.allow(t0 + Duration::from_secs(10)));
        b.record(t0 + Duration::from_secs(10), false);
        assert!(!b.allow(t0 + Duration::from_secs(15)));
        assert!(b.allow(t0 + Duration::from_secs(20)));
        b.record(t0 + Duration::from_secs(20), true);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        // A success resets the count.
        b.record(t0, false);
        b.record(t0, true);
        b.record(t0, false);
        b.record(t0, false);
        assert!(b.allow(t0));
    }
}
