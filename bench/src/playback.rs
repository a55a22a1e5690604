//! The playback buffer of one simulated viewer, as a state machine: segments
//! are added as they arrive, wall-clock time (passed in, never read here)
//! drains the buffer while playing, and transitions come out as events.
//!
//! A transition between two calls (the buffer ran dry at 12.3 s, the caller
//! looked at 12.9 s) is placed at the instant it happened, so stall and play
//! time do not depend on when the IO layer happens to wake up.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Pressed play; filling the startup buffer.
    Starting,
    Playing,
    /// Ran dry before the end (a rebuffer); waiting for the buffer to refill.
    Stalled,
    /// Everything was played.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Playback began `startup` after play was pressed.
    Started { startup: Duration },
    /// The buffer ran dry before the end.
    Stalled,
    /// Playback went on after a stall of `stall`.
    Resumed { stall: Duration },
    /// The last of the media was played.
    Ended,
}

#[derive(Debug, Clone)]
pub struct Playback {
    pressed: Instant,
    /// Buffer needed to start, and to resume after a stall (never more than
    /// what is left to play).
    threshold: Duration,
    /// Media in this play (from the start position to the end).
    total: Duration,
    downloaded: Duration,
    /// Playhead as of `at`, from the start position.
    position: Duration,
    at: Instant,
    phase: Phase,
    /// When the current phase began (for stalls: when the buffer ran dry).
    since: Instant,
    startup: Option<Duration>,
    played: Duration,
    stalled: Duration,
    rebuffers: u32,
}

impl Playback {
    /// A play pressed at `pressed` of `total` media, starting once `startup`
    /// is buffered (capped by `max_buffer`, so the downloader, which stops at
    /// `max_buffer`, can always reach it).
    pub fn new(
        pressed: Instant,
        now: Instant,
        total: Duration,
        startup: Duration,
        max_buffer: Duration,
    ) -> Playback {
        Playback {
            pressed,
            threshold: startup.min(max_buffer).min(total),
            total,
            downloaded: Duration::ZERO,
            position: Duration::ZERO,
            at: now.max(pressed),
            phase: Phase::Starting,
            since: pressed,
            startup: None,
            played: Duration::ZERO,
            stalled: Duration::ZERO,
            rebuffers: 0,
        }
    }

    /// Moves the clock to `now`, returning the transition that playing
    /// caused on the way (running dry or reaching the end), if any.
    pub fn advance(&mut self, now: Instant) -> Option<Event> {
        let now = now.max(self.at);
        let elapsed = now - self.at;
        self.at = now;
        if self.phase != Phase::Playing {
            return None;
        }
        let ahead = self.buffer_unchecked();
        if elapsed < ahead {
            self.position += elapsed;
            self.played += elapsed;
            return None;
        }
        self.position = self.downloaded;
        self.played += ahead;
        self.since = now - (elapsed - ahead);
        if self.downloaded >= self.total {
            self.phase = Phase::Ended;
            Some(Event::Ended)
        } else {
            self.phase = Phase::Stalled;
            self.rebuffers += 1;
            Some(Event::Stalled)
        }
    }

    /// A segment of `media` arrived at `now`. Returns what happened up to
    /// and at `now` (at most a stall or end, then a start or resume).
    pub fn add(&mut self, now: Instant, media: Duration) -> Vec<Event> {
        let mut events: Vec<Event> = self.advance(now).into_iter().collect();
        let now = self.at;
        self.downloaded = (self.downloaded + media).min(self.total);
        let left = self.total.saturating_sub(self.position);
        let enough = self.buffer_unchecked() >= self.threshold.min(left);
        match self.phase {
            Phase::Starting if enough => {
                let startup = now - self.pressed;
                self.startup = Some(startup);
                self.phase = Phase::Playing;
                self.since = now;
                events.push(Event::Started { startup });
            }
            Phase::Stalled if enough => {
                let stall = now - self.since;
                self.stalled += stall;
                self.phase = Phase::Playing;
                self.since = now;
                events.push(Event::Resumed { stall });
            }
            _ => {}
        }
        events
    }

    /// Ends the play at `now` (watched long enough, or the run is over): an
    /// open stall counts up to `now`.
    pub fn finish(&mut self, now: Instant) -> Option<Event> {
        let event = self.advance(now);
        if self.phase == Phase::Stalled {
            self.stalled += self.at - self.since;
            self.since = self.at;
        }
        event
    }

    /// Media buffered ahead of the playhead (as of the last call).
    pub fn buffer(&self) -> Duration {
        self.buffer_unchecked()
    }

    fn buffer_unchecked(&self) -> Duration {
        self.downloaded.saturating_sub(self.position)
    }

    /// Playhead, from the play's start position.
    pub fn position(&self) -> Duration {
        self.position
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When playing on would change the phase (run dry or end), if playing.
    pub fn next_change(&self) -> Option<Instant> {
        (self.phase == Phase::Playing).then(|| self.at + self.buffer_unchecked())
    }

    /// `None` if the buffer is below `max` now (fetch the next segment);
    /// otherwise the first instant it will be. A player keeps loading while
    /// the buffer is under its target, as hls.js does with maxBufferLength.
    pub fn room_at(&self, max: Duration) -> Option<Instant> {
        let buffer = self.buffer_unchecked();
        // Only playing drains the buffer; in any other phase the buffer is
        // below the start threshold (≤ max), so there is room anyway.
        (buffer >= max && self.phase == Phase::Playing)
            .then(|| self.at + (buffer - max) + Duration::from_nanos(1))
    }

    pub fn startup(&self) -> Option<Duration> {
        self.startup
    }

    pub fn played(&self) -> Duration {
        self.played
    }

    pub fn stalled(&self) -> Duration {
        self.stalled
    }

    pub fn rebuffers(&self) -> u32 {
        self.rebuffers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    /// 12 s of media in 4 s segments, starting once 8 s are buffered.
    fn twelve(t0: Instant) -> Playback {
        Playback::new(t0, t0, s(12.0), s(8.0), s(30.0))
    }

    #[test]
    fn starts_once_the_startup_buffer_is_full() {
        let t0 = Instant::now();
        let mut p = twelve(t0);
        assert_eq!(p.add(t0 + s(0.1), s(4.0)), []);
        assert_eq!(p.phase(), Phase::Starting);
        assert_eq!(p.next_change(), None, "not playing: nothing drains");
        assert_eq!(p.advance(t0 + s(5.0)), None);
        assert_eq!(p.buffer(), s(4.0), "waiting does not drain");
        assert_eq!(
            p.add(t0 + s(5.2), s(4.0)),
            [Event::Started { startup: s(5.2) }]
        );
        assert_eq!(p.startup(), Some(s(5.2)));
        assert_eq!(p.next_change(), Some(t0 + s(13.2)));
    }

    #[test]
    fn drains_stalls_refills_and_ends() {
        let t0 = Instant::now();
        let mut p = twelve(t0);
        p.add(t0, s(4.0));
        p.add(t0 + s(1.0), s(4.0)); // playing from 1 s with 8 s
        assert_eq!(p.advance(t0 + s(5.0)), None);
        assert_eq!((p.buffer(), p.position()), (s(4.0), s(4.0)));
        // Dry at 9 s, noticed at 10 s: the stall began at 9 s.
        assert_eq!(p.advance(t0 + s(10.0)), Some(Event::Stalled));
        assert_eq!(
            (p.phase(), p.rebuffers(), p.played()),
            (Phase::Stalled, 1, s(8.0))
        );
        // The last segment: 4 s left, 4 s buffered, resume.
        assert_eq!(
            p.add(t0 + s(11.0), s(4.0)),
            [Event::Resumed { stall: s(2.0) }]
        );
        assert_eq!(p.stalled(), s(2.0));
        assert_eq!(p.room_at(s(30.0)), None);
        // Running out at the end is the end, not a stall.
        assert_eq!(p.advance(t0 + s(20.0)), Some(Event::Ended));
        assert_eq!((p.phase(), p.rebuffers()), (Phase::Ended, 1));
        assert_eq!((p.played(), p.stalled()), (s(12.0), s(2.0)));
        assert_eq!(p.advance(t0 + s(30.0)), None);
        assert_eq!(p.next_change(), None);
    }

    #[test]
    fn a_late_segment_reports_the_stall_then_the_resume() {
        let t0 = Instant::now();
        let mut p = Playback::new(t0, t0, s(40.0), s(4.0), s(30.0));
        assert_eq!(p.add(t0, s(4.0)), [Event::Started { startup: s(0.0) }]);
        // Dry at 4 s; the next segment only arrives at 7 s.
        assert_eq!(
            p.add(t0 + s(7.0), s(4.0)),
            [Event::Stalled, Event::Resumed { stall: s(3.0) }]
        );
    }

    #[test]
    fn resume_needs_the_threshold_unless_less_is_left() {
        let t0 = Instant::now();
        let mut p = Playback::new(t0, t0, s(20.0), s(8.0), s(30.0));
        p.add(t0, s(8.0));
        assert_eq!(p.advance(t0 + s(9.0)), Some(Event::Stalled));
        assert_eq!(p.add(t0 + s(9.5), s(4.0)), [], "4 s < 8 s threshold");
        assert_eq!(
            p.add(t0 + s(10.0), s(4.0)),
            [Event::Resumed { stall: s(2.0) }]
        );
    }

    #[test]
    fn room_while_under_the_maximum() {
        let t0 = Instant::now();
        let mut p = Playback::new(t0, t0, s(100.0), s(4.0), s(10.0));
        p.add(t0, s(4.0));
        p.add(t0, s(4.0));
        assert_eq!(p.room_at(s(10.0)), None, "8 s < 10 s");
        p.add(t0, s(4.0));
        // 12 s buffered: under 10 s once 2 s have played.
        let at = p.room_at(s(10.0)).unwrap();
        assert_eq!(at, t0 + s(2.0) + Duration::from_nanos(1));
        p.advance(at);
        assert_eq!(p.room_at(s(10.0)), None, "woken at that instant: room");
    }

    #[test]
    fn thresholds_are_capped() {
        let t0 = Instant::now();
        // A title shorter than the startup buffer starts when all is there.
        let mut p = Playback::new(t0, t0, s(3.0), s(8.0), s(30.0));
        assert_eq!(
            p.add(t0 + s(1.0), s(3.0)),
            [Event::Started { startup: s(1.0) }]
        );
        // A startup buffer above the maximum could never be reached.
        let mut p = Playback::new(t0, t0, s(60.0), s(20.0), s(6.0));
        p.add(t0, s(4.0));
        assert_eq!(p.add(t0, s(4.0)).len(), 1);
    }

    #[test]
    fn finishing_closes_an_open_stall_once() {
        let t0 = Instant::now();
        let mut p = twelve(t0);
        p.add(t0, s(8.0));
        assert_eq!(p.finish(t0 + s(10.0)), Some(Event::Stalled));
        assert_eq!(p.stalled(), s(2.0));
        assert_eq!(p.finish(t0 + s(10.0)), None);
        assert_eq!(p.stalled(), s(2.0));
        assert_eq!(p.finish(t0 + s(11.0)), None);
        assert_eq!(p.stalled(), s(3.0));
        // Abandoned before it started: no startup time.
        let mut q = twelve(t0);
        q.add(t0, s(4.0));
        q.finish(t0 + s(60.0));
        assert_eq!(
            (q.startup(), q.played(), q.stalled()),
            (None, s(0.0), s(0.0))
        );
    }

    #[test]
    fn time_never_runs_backwards() {
        let t0 = Instant::now();
        let mut p = twelve(t0 + s(1.0));
        p.add(t0 + s(1.0), s(8.0));
        assert_eq!(p.advance(t0), None);
        assert_eq!(p.position(), s(0.0));
    }
}
