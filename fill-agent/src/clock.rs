//! The agent's idea of the time: the wall clock, or (for labs and tests) a
//! given start time running at a given speed, so fill windows can be
//! exercised without waiting for the night.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: f64,
    speed: f64,
    started: Instant,
}

impl Clock {
    pub fn real() -> Clock {
        Clock::starting_at(wall(), 1.0)
    }

    /// A clock reading `unix` now and advancing `speed` seconds per second.
    pub fn starting_at(unix: f64, speed: f64) -> Clock {
        Clock {
            base: unix,
            speed,
            started: Instant::now(),
        }
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        (self.base + self.started.elapsed().as_secs_f64() * self.speed).max(0.0) as u64
    }
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
