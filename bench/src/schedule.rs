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

/// The send schedule of one connection: one request every `period`, starting
/// at `phase`. Connections get evenly staggered phases so the aggregate is
/// smooth rather than N requests at once every period.
#[derive(Debug, Clone)]
pub struct Schedule {
    phase_ns: f64,
    period_ns: f64,
    /// Index of the next request.
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
        let period_ns = 1e9 * connections as f64 / total_rate;
        Schedule {
            phase_ns: period_ns * index as f64 / connections as f64,
            period_ns,
            next: 0,
        }
    }

    /// Intended time of the next request, without consuming it.
    pub fn peek(&self) -> Duration {
        // Computed from the index, not accumulated, so no drift over long runs.
        Duration::from_nanos((self.phase_ns + self.next as f64 * self.period_ns).round() as u64)
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

    /// Time between two requests of this connection.
    #[cfg(test)]
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
