//! Calls to dependencies that must never block playback (the bookmark store,
//! the recommendation backend): each goes through a `Guard`, a timeout plus a
//! circuit breaker whose state is a metric, and the caller falls back on error.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use control_client::retry::{Breaker, BreakerState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::GuardConfig;
use crate::metrics::{DependencyLabel, DependencyOutcome, Metrics};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepError {
    #[error("{0}: circuit open after repeated failures")]
    Open(&'static str),
    #[error("{0}: timed out")]
    Timeout(&'static str),
    #[error("{0}: {1}")]
    Failed(&'static str, String),
}

pub struct Guard {
    name: &'static str,
    timeout: Duration,
    breaker: Mutex<Breaker>,
    state: Gauge,
    calls: Family<DependencyOutcome, Counter>,
}

impl Guard {
    pub fn new(name: &'static str, cfg: &GuardConfig, metrics: &Metrics) -> Guard {
        let state = metrics
            .dependency_state
            .get_or_create(&DependencyLabel { dependency: name })
            .clone();
        state.set(0);
        Guard {
            name,
            timeout: cfg.timeout,
            breaker: Mutex::new(Breaker::new(cfg.failures, cfg.cool_down)),
            state,
            calls: metrics.dependency_calls.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `closed`, `open` or `half-open`.
    pub fn state(&self) -> &'static str {
        match self.lock().state() {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, outcome: &'static str) {
        self.calls
            .get_or_create(&DependencyOutcome {
                dependency: self.name,
                outcome,
            })
            .inc();
    }

    fn publish(&self, b: &Breaker) {
        self.state.set(match b.state() {
            BreakerState::Closed { .. } => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        });
    }

    /// Run `call` unless the breaker is open, bounded by the timeout; the
    /// outcome feeds the breaker.
    pub async fn call<T, E: std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, DepError> {
        {
            let mut b = self.lock();
            let allowed = b.allow(now());
            self.publish(&b);
            if !allowed {
                self.count("rejected");
                return Err(DepError::Open(self.name));
            }
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DepError::Failed(self.name, e.to_string())),
            Err(_) => Err(DepError::Timeout(self.name)),
        };
        self.count(match &result {
            Ok(_) => "ok",
            Err(DepError::Timeout(_)) => "timeout",
            Err(_) => "error",
        });
        let mut b = self.lock();
        b.record(now(), result.is_ok());
        self.publish(&b);
        if let Err(e) = &result {
            tracing::warn!(dependency = self.name, error = %e, breaker = ?b.state(), "dependency call failed");
        }
        result
    }
}

/// The runtime's clock, so tests with paused time drive the breaker too.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_fails_fast_then_half_opens_and_closes() {
        let metrics = Metrics::new();
        let cfg = GuardConfig {
            timeout: Duration::from_millis(100),
            failures: 2,
            cool_down: Duration::from_secs(5),
        };
        let g = Guard::new("test", &cfg, &metrics);
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, String>(1)
        };
        assert_eq!(g.call(slow()).await, Err(DepError::Timeout("test")));
        assert_eq!(g.state(), "closed");
        assert_eq!(
            g.call(async { Err::<u8, _>("boom") }).await,
            Err(DepError::Failed("test", "boom".into()))
        );
        assert_eq!(g.state(), "open");
        assert_eq!(
            g.call(async { Ok::<_, String>(1) }).await,
            Err(DepError::Open("test")),
            "fails fast while open"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            g.call(async { Ok::<_, String>(7) }).await,
            Ok(7),
            "the half-open trial"
        );
        assert_eq!(g.state(), "closed");
        let text = metrics.render((0, 0, 0));
        assert!(
            text.contains(
                "steering_dependency_calls_total{dependency=\"test\",outcome=\"timeout\"} 1"
            ),
            "{text}"
        );
    }
}
