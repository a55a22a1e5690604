//! Open-loop arrival schedule: when each request of one connection is meant to
//! be sent, whatever the server does.
//!
//! A closed-loop client waits for each response before sending the next
//! request, so when the server stalls the client stops asking, and the stall
//! shows up as one slow request instead of the hundreds a real audience would
//! have suffered ("coordinated omission"). With a fixed schedule, latency is
//! measured from the *intended* send time: a connection that falls behind sends
//! at once but keeps its schedule, so the backlog's waiting time is counted, as
//! wrk2 does.
//!
//! Pure: times are offsets from the start of the run and `now` is passed in.

use std::time::Duration;

/// A flash crowd: from `at`, the total rate rises linearly to `factor`
/// times itself over `over`, then stays there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Surge {
    pub factor: f64,
    pub at: Duration,
    pub over: Duration,
}

impl Surge {
    /// The part of the run `t` (from its start) is in.
    pub fn phase(&self, t: Duration) -> Phase {
        if t < self.at {
            Phase::Calm
        } else if t < self.at + self.over {
            Phase::Rise
        } else {
            Phase::Peak
        }
    }
}

/// The parts of a surge's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Calm,
    Rise,
    Peak,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Calm, Phase::Rise, Phase::Peak];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Calm => "calm",
            Phase::Rise => "rise",
            Phase::Peak => "peak",
        }
    }
}

/// The send schedule of one connection: the `index`-th of every
/// `connections` arrivals of the whole run, whose times follow the total
/// rate (constant, or a surge). Connections interleave, so the aggregate is
/// smooth rather than N requests at once.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    surge: Option<Surge>,
    connections: u64,
    index: u64,
    /// Index of this connection's next request.
    next: u64,
}

/// What to do for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When the request was meant to be sent; latency is measured from here.
    pub intended: Duration,
    /// When to send it: `intended`, or `now` if the connection is behind.
    pub send_at: Duration,
}

impl Slot {
    /// How far behind schedule the connection is when sending at `send_at`.
    #[cfg(test)]
    pub fn lag(&self) -> Duration {
        self.send_at - self.intended
    }
}

impl Schedule {
    /// Schedule for connection `index` of `connections` sharing `total_rate`
    /// requests per second (each gets `total_rate / connections`).
    pub fn new(total_rate: f64, connections: usize, index: usize) -> Schedule {
        assert!(total_rate > 0.0 && connections > 0 && index < connections);
        Schedule {
            rate: total_rate,
            surge: None,
            connections: connections as u64,
            index: index as u64,
            next: 0,
        }
    }

    /// The same schedule with the total rate surging as `surge` says.
    pub fn with_surge(mut self, surge: Surge) -> Schedule {
        assert!(surge.factor >= 1.0);
        self.surge = Some(surge);
        self
    }

    /// When the `k`-th arrival of the whole run (from 0) is due, in seconds:
    /// the inverse of the arrivals expected by then.
    fn time_of(&self, k: f64) -> f64 {
        let r = self.rate;
        let Some(s) = self.surge else {
            return k / r;
        };
        let (a, d, f) = (s.at.as_secs_f64(), s.over.as_secs_f64(), s.factor);
        if k <= r * a {
            return k / r;
        }
        let k = k - r * a;
        // Arrivals over the rise: r·d + r·(f−1)·d/2.
        let rise = r * d * (1.0 + (f - 1.0) / 2.0);
        if k > rise || d == 0.0 {
            return a + d + (k - rise.min(k)) / (r * f);
        }
        if f == 1.0 {
            return a + k / r;
        }
        // r·x + r·(f−1)·x²/(2d) = k, for x in [0, d].
        let c = r * (f - 1.0) / d;
        a + (-r + (r * r + 2.0 * c * k).sqrt()) / c
    }

    /// Intended time of the next request, without consuming it.
    pub fn peek(&self) -> Duration {
        // Computed from the index, not accumulated, so no drift over long runs.
        let k = (self.index + self.next * self.connections) as f64;
        Duration::from_nanos((self.time_of(k) * 1e9).round() as u64)
    }

    /// Takes the next slot. Never skips one: if `now` is past several intended
    /// times, they are all sent back to back, each timed from its own intended time.
    pub fn next_slot(&mut self, now: Duration) -> Slot {
        let intended = self.peek();
        self.next += 1;
        Slot {
            intended,
            send_at: intended.max(now),
        }
    }

    /// Time between two requests of this connection (at the base rate).
    #[cfg(test)]
    pub fn period(&self) -> Duration {
        Duration::from_nanos((1e9 * self.connections as f64 / self.rate).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_surge_rises_linearly_to_its_factor_and_stays() {
        // 100/s, ×20 from 10 s over 10 s: 1,000 arrivals calm, 100·10·10.5 =
        // 10,500 over the rise, then 2,000/s.
        let surge = Surge {
            factor: 20.0,
            at: Duration::from_secs(10),
            over: Duration::from_secs(10),
        };
        let s = Schedule::new(100.0, 1, 0).with_surge(surge);
        let t = |k: f64| s.time_of(k);
        assert!((t(500.0) - 5.0).abs() < 1e-9);
        assert!((t(1000.0) - 10.0).abs() < 1e-9);
        assert!((t(11_500.0) - 20.0).abs() < 1e-9);
        assert!((t(13_500.0) - 21.0).abs() < 1e-9, "2,000/s at the peak");
        // Halfway through the rise: 100·5 + 100·19·25/20 = 2,875 arrivals.
        assert!((t(1000.0 + 2875.0) - 15.0).abs() < 1e-6);
        // Arrivals per second grow through the rise.
        let per_s = |from: f64| {
            let mut n = 0.0;
            while t(n) < from {
                n += 1.0;
            }
            let start = n;
            while t(n) < from + 1.0 {
                n += 1.0;
            }
            n - start
        };
        assert!((per_s(2.0) - 100.0).abs() <= 1.0);
        assert!(per_s(12.0) > 300.0 && per_s(17.0) > per_s(12.0));
        assert!((per_s(25.0) - 2000.0).abs() <= 1.0);
        assert_eq!(surge.phase(Duration::from_secs(9)), Phase::Calm);
        assert_eq!(surge.phase(Duration::from_secs(10)), Phase::Rise);
        assert_eq!(surge.phase(Duration::from_secs(20)), Phase::Peak);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn intended_times_follow_the_rate() {
        // 1000 req/s over 10 connections: 100 req/s each, every 10 ms.
        let mut s = Schedule::new(1000.0, 10, 0);
        assert_eq!(s.period(), 10 * MS);
        let mut now = Duration::ZERO;
        for k in 0..1000u32 {
            let slot = s.next_slot(now);
            assert_eq!(slot.intended, k * 10 * MS);
            assert_eq!(slot.send_at, slot.intended, "on time: wait for the slot");
            now = slot.send_at + MS; // a 1 ms response
        }
    }

    #[test]
    fn falling_behind_sends_at_once_but_keeps_intended_times() {
        let mut s = Schedule::new(100.0, 1, 0); // every 10 ms
        assert_eq!(s.next_slot(Duration::ZERO).intended, Duration::ZERO);
        // The first response stalls for 35 ms: the slots at 10, 20 and 30 ms are
        // late and go out back to back at the current time, each still timed
        // from its intended time; the one at 40 ms is on time again.
        let mut now = 35 * MS;
        let mut lags = Vec::new();
        for want in [10, 20, 30] {
            let slot = s.next_slot(now);
            assert_eq!(slot.intended, want * MS);
            assert_eq!(slot.send_at, now);
            lags.push(slot.lag());
            now += Duration::from_micros(100);
        }
        assert_eq!(lags[0], 25 * MS);
        let slot = s.next_slot(now);
        assert_eq!((slot.intended, slot.send_at), (40 * MS, 40 * MS));
        assert_eq!(slot.lag(), Duration::ZERO);
    }

    #[test]
    fn connections_are_staggered_evenly() {
        // 400 req/s over 4 connections: each every 10 ms, phases 0, 2.5, 5, 7.5 ms.
        let firsts: Vec<Duration> = (0..4).map(|i| Schedule::new(400.0, 4, i).peek()).collect();
        assert_eq!(
            firsts,
            [0, 2500, 5000, 7500].map(Duration::from_micros).to_vec()
        );
        // Merged, the connections' sends are evenly spaced at the total rate.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|i| {
                let mut s = Schedule::new(400.0, 4, i);
                (0..100).map(move |_| s.next_slot(Duration::ZERO).intended)
            })
            .collect();
        all.sort();
        for w in all.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_micros(2500));
        }
    }

    #[test]
    fn low_rates_do_not_drift() {
        // 3 req/s: a period of 333.33… ms that is not a whole number of ns.
        let mut s = Schedule::new(3.0, 1, 0);
        for _ in 0..3000 {
            s.next_slot(Duration::ZERO);
        }
        assert_eq!(s.peek(), Duration::from_secs(1000));
    }
}
