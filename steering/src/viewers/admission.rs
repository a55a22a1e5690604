//! Admission control for new plays: steering decides plays only as fast as
//! it can decide them well, and refuses the rest at once with `503` and a
//! `Retry-After` (jittered, so refused players do not come back together)
//! instead of letting every play's latency grow. Per client address and per
//! account, token buckets refuse a single source's excess with `429`.
//!
//! Only `POST /v1/play` is admitted here: manifests, content steering,
//! licences, bookmarks and everything appliances call (heartbeats, reports,
//! fill plans) are never refused by it, so a flash crowd of new viewers
//! cannot starve the viewers already playing or the fleet.
//!
//! The concurrency limit adapts (AIMD on latency, as TCP does on loss): each
//! play finished within `target_latency` raises the limit by 1/limit, and
//! while plays take longer it is cut by a tenth, at most once per target
//! interval. So the limit settles where plays are still fast on this machine
//! and this load, between `min_concurrent` and `max_concurrent`. Pure: every
//! decision takes `now`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::config::AdmissionConfig;

/// Why a play is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Steering is at its concurrency limit: 503.
    Overloaded { retry_after_s: u64 },
    /// This client address is over its rate: 429.
    ClientRate { retry_after_s: u64 },
    /// This account is over its rate: 429.
    AccountRate { retry_after_s: u64 },
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Overloaded { .. } => "overloaded",
            Refusal::ClientRate { .. } => "client_rate_limited",
            Refusal::AccountRate { .. } => "account_rate_limited",
        }
    }

    pub fn retry_after_s(self) -> u64 {
        match self {
            Refusal::Overloaded { retry_after_s }
            | Refusal::ClientRate { retry_after_s }
            | Refusal::AccountRate { retry_after_s } => retry_after_s,
        }
    }
}

/// The adaptive concurrency limit.
#[derive(Debug)]
struct Limiter {
    limit: f64,
    inflight: usize,
    last_cut: Option<Instant>,
}

/// A token bucket: `rate` per second, up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Take one token at `now`; `Err(seconds until one is there)`.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), f64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / rate)
        }
    }
}

/// Per-key buckets, the least recently seen forgotten beyond a bound (a
/// forgotten key starts again with a full bucket: generous, never wrong).
struct Buckets<K: Hash + Eq>(Mutex<LruCache<K, Bucket>>);

impl<K: Hash + Eq> Buckets<K> {
    fn new() -> Buckets<K> {
        Buckets(Mutex::new(LruCache::new(
            NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
        )))
    }

    fn take(&self, key: K, now: Instant, per_min: u32, burst: u32) -> Result<(), f64> {
        if per_min == 0 {
            return Ok(());
        }
        let (rate, burst) = (f64::from(per_min) / 60.0, f64::from(burst.max(1)));
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let b = map.get_or_insert_mut(key, || Bucket {
            tokens: burst,
            at: now,
        });
        b.take(now, rate, burst)
    }
}

/// A number to spread one refusal's `Retry-After` by.
fn seed(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Admission for one steering instance.
pub struct Admission {
    cfg: AdmissionConfig,
    limiter: Mutex<Limiter>,
    clients: Buckets<IpAddr>,
    accounts: Buckets<String>,
}

/// A play being decided: holds one unit of the concurrency limit until it
/// is finished (dropped), and reports how long it took.
pub struct Permit {
    admission: Arc<Admission>,
    started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission
            .finished(Instant::now(), self.started.elapsed());
    }
}

impl Admission {
    pub fn new(cfg: AdmissionConfig) -> Admission {
        Admission {
            limiter: Mutex::new(Limiter {
                limit: cfg.max_concurrent as f64,
                inflight: 0,
                last_cut: None,
            }),
            cfg,
            clients: Buckets::new(),
            accounts: Buckets::new(),
        }
    }

    /// The concurrency limit now, and the plays being decided.
    pub fn state(&self) -> (usize, usize) {
        let l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        (l.limit as usize, l.inflight)
    }

    /// A `Retry-After` of about `base`, spread over [base, 2·base) by `seed`
    /// so refused players do not all return in the same second.
    fn retry_after(&self, seed: u64, at_least: f64) -> u64 {
        let base = self.cfg.retry_after.as_secs().max(1);
        let spread = seed % base;
        (base + spread).max(at_least.ceil() as u64)
    }

    /// Admit a new play from `client` at `now`: the client's rate first
    /// (cheap, before any work), then a unit of the concurrency limit.
    pub fn admit(self: &Arc<Self>, client: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        if !self.cfg.enabled {
            return Ok(self.permit(now));
        }
        if let Err(wait) = self.clients.take(
            client,
            now,
            self.cfg.client_plays_per_min,
            self.cfg.client_burst,
        ) {
            return Err(Refusal::ClientRate {
                retry_after_s: self.retry_after(seed((client, now)), wait),
            });
        }
        {
            let mut l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
            if l.inflight >= (l.limit as usize).max(1) {
                return Err(Refusal::Overloaded {
                    retry_after_s: self.retry_after(seed((client, now)), 0.0),
                });
            }
            l.inflight += 1;
        }
        Ok(Permit {
            admission: Arc::clone(self),
            started: now,
        })
    }

    /// The account's rate, checked once the play's token names it.
    pub fn account(&self, account: &str, now: Instant) -> Result<(), Refusal> {
        if !self.cfg.enabled {
            return Ok(());
        }
        if self.cfg.account_plays_per_min == 0 {
            return Ok(());
        }
        self.accounts
            .take(
                account.to_owned(),
                now,
                self.cfg.account_plays_per_min,
                self.cfg.account_burst,
            )
            .map_err(|wait| Refusal::AccountRate {
                retry_after_s: self.retry_after(seed((account, now)), wait),
            })
    }

    fn permit(self: &Arc<Self>, now: Instant) -> Permit {
        self.limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .inflight += 1;
        Permit {
            admission: Arc::clone(self),
            started: now,
        }
    }

    /// A play took `took`; adapt the limit (AIMD).
    fn finished(&self, now: Instant, took: Duration) {
        let (min, max) = (
            self.cfg.min_concurrent as f64,
            self.cfg.max_concurrent as f64,
        );
        let target = self.cfg.target_latency;
        let mut l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.inflight = l.inflight.saturating_sub(1);
        if took <= target {
            l.limit = (l.limit + 1.0 / l.limit.max(1.0)).min(max);
        } else if l
            .last_cut
            .is_none_or(|t| now.saturating_duration_since(t) >= target)
        {
            l.limit = (l.limit * 0.9).max(min);
            l.last_cut = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            enabled: true,
            max_concurrent: 8,
            min_concurrent: 2,
            target_latency: Duration::from_millis(100),
            retry_after: Duration::from_secs(2),
            client_plays_per_min: 60,
            client_burst: 5,
            account_plays_per_min: 6,
            account_burst: 2,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(100, 65, 0, 9));

    #[test]
    fn plays_beyond_the_limit_are_refused_until_one_finishes() {
        let mut c = cfg();
        c.client_plays_per_min = 0; // no rate limit here
        let adm = Arc::new(Admission::new(c));
        let t0 = Instant::now();
        let permits: Vec<Permit> = (0..8).map(|_| adm.admit(A, t0).unwrap()).collect();
        let refused = adm.admit(A, t0).err().unwrap();
        assert_eq!(refused.code(), "overloaded");
        // Jittered over [2, 4) seconds.
        assert!((2..4).contains(&refused.retry_after_s()), "{refused:?}");
        drop(permits);
        assert_eq!(adm.state().1, 0);
        assert!(adm.admit(A, t0).is_ok());
    }

    #[test]
    fn slow_plays_shrink_the_limit_and_fast_ones_grow_it_back() {
        let adm = Admission::new(cfg());
        let t0 = Instant::now();
        let slow = Duration::from_millis(300);
        // Many slow plays at once: cut once per target interval, not per play.
        for _ in 0..10 {
            adm.limiter.lock().unwrap().inflight += 1;
            adm.finished(t0, slow);
        }
        assert_eq!(adm.state().0, 7, "8 × 0.9, once");
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::from_millis(100);
            adm.limiter.lock().unwrap().inflight += 1;
            adm.finished(t, slow);
        }
        assert_eq!(adm.state().0, 2, "never below min_concurrent");
        for _ in 0..200 {
            adm.limiter.lock().unwrap().inflight += 1;
            adm.finished(t, Duration::from_millis(20));
        }
        assert_eq!(adm.state().0, 8, "back up to max_concurrent, no further");
    }

    #[test]
    fn a_client_and_an_account_each_get_their_burst_then_their_rate() {
        let adm = Arc::new(Admission::new(cfg()));
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(adm.admit(A, t0).unwrap());
        }
        let r = adm.admit(A, t0).err().unwrap();
        assert_eq!(r.code(), "client_rate_limited");
        // Another address is not affected; one second later (1/s) A may again.
        let b: IpAddr = "100.66.0.9".parse().unwrap();
        assert!(adm.admit(b, t0).is_ok());
        assert!(adm.admit(A, t0 + Duration::from_secs(1)).is_ok());

        assert!(adm.account("alice", t0).is_ok());
        assert!(adm.account("alice", t0).is_ok());
        let r = adm.account("alice", t0).unwrap_err();
        assert_eq!(r.code(), "account_rate_limited");
        // 6 a minute: the next token in 10 s, and Retry-After says at least that.
        assert!(r.retry_after_s() >= 10, "{r:?}");
        assert!(adm.account("bob", t0).is_ok());
        assert!(adm.account("alice", t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn disabled_admits_everything() {
        let mut c = cfg();
        c.enabled = false;
        let adm = Arc::new(Admission::new(c));
        let t0 = Instant::now();
        let held: Vec<Permit> = (0..100).map(|_| adm.admit(A, t0).unwrap()).collect();
        assert_eq!(adm.state().1, 100);
        drop(held);
        for _ in 0..100 {
            assert!(adm.account("alice", t0).is_ok());
        }
    }
}
