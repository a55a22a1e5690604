//! What every daemon of the stack does the same way under a service manager.
//!
//! - [`notify`]: `READY=1`, `STATUS=`, `STOPPING=1`, `RELOADING=1` to systemd
//!   (`Type=notify`); nothing at all when `NOTIFY_SOCKET` is unset.
//! - [`Liveness`] and [`Watchdog`]: each event loop beats once a second from a
//!   task of its own, and the watchdog thread pings systemd (`WATCHDOG=1`) only
//!   while every loop has beaten recently. A wedged loop (a blocking call or a
//!   busy task that never yields) stops the pings, and systemd restarts the
//!   service after `WatchdogSec`.
//! - [`signals`]: SIGTERM/SIGINT stop, SIGHUP reloads.
//! - [`Runtimes`]: the daemon's tokio runtimes, so `/metrics` can say how
//!   many tasks are alive (a leak of tasks shows as a rising count).
//! - [`config`]: reading the TOML file, one-line errors, exit status 64.
//! - [`logging`]: the tracing subscriber (env filter, text or JSON, stderr).
//! - [`metrics`]: `/metrics` as OpenMetrics text.

pub mod config;
pub mod logging;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod notify {
    //! sd_notify(3) messages. Failures are logged, never fatal: a daemon run
    //! by hand or under another supervisor has no socket to tell.

    use sd_notify::NotifyState;

    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set).
    pub fn enabled() -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }

    /// Startup is complete: sockets bound, state loaded, serving.
    pub fn ready(status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A one-line status shown by `systemctl status`.
    pub fn status(status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// Shutdown has begun (draining).
    pub fn stopping(status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// A reload (SIGHUP) has begun; call [`ready`] when it is done.
    pub fn reloading() {
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// The watchdog keep-alive.
    pub(crate) fn ping() {
        send(&[NotifyState::Watchdog]);
    }
}

/// How often each loop beats.
pub const BEAT: Duration = Duration::from_secs(1);

/// How often STATUS= is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Last beat of each named event loop.
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    names: Vec<String>,
    /// Milliseconds after `base` of each loop's last beat.
    beats: Box<[AtomicU64]>,
}

impl Liveness {
    /// One slot per loop; every slot counts as having beaten now.
    pub fn new(names: Vec<String>) -> Arc<Liveness> {
        let beats = names.iter().map(|_| AtomicU64::new(0)).collect();
        Arc::new(Liveness {
            base: Instant::now(),
            names,
            beats,
        })
    }

    /// Loop `slot` is alive now.
    pub fn beat(&self, slot: usize) {
        if let Some(b) = self.beats.get(slot) {
            b.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// The loops whose last beat is older than `max_age` at `now`.
    pub fn stalled(&self, now: Instant, max_age: Duration) -> Vec<&str> {
        let now_ms = now.saturating_duration_since(self.base).as_millis() as u64;
        let beats: Vec<u64> = self
            .beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        stalled_slots(&beats, now_ms, max_age.as_millis() as u64)
            .into_iter()
            .map(|i| self.names[i].as_str())
            .collect()
    }

    /// Beat for loop `slot` forever, from a task on that loop: the beat only
    /// happens when the loop gets round to running it.
    pub async fn heartbeat(self: Arc<Self>, slot: usize) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat(slot);
        }
    }
}

/// Indexes of the slots that last beat more than `max_age_ms` before `now_ms`.
pub fn stalled_slots(beats: &[u64], now_ms: u64, max_age_ms: u64) -> Vec<usize> {
    beats
        .iter()
        .enumerate()
        .filter(|(_, b)| now_ms.saturating_sub(**b) > max_age_ms)
        .map(|(i, _)| i)
        .collect()
}

/// What the watchdog thread does at each wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Time between wake-ups.
    pub every: Duration,
    /// A loop silent for longer than this is wedged.
    pub max_silence: Duration,
    /// Send `WATCHDOG=1` while no loop is wedged.
    pub ping: bool,
}

impl Plan {
    /// From systemd's `WATCHDOG_USEC` (None: no watchdog configured). Pings
    /// come three times per period so one late wake-up does not cost a
    /// restart; a loop counts as wedged after half the period (at least 3 s,
    /// so a loaded machine's scheduling jitter is not a wedge).
    pub fn new(watchdog: Option<Duration>) -> Plan {
        match watchdog {
            Some(period) if !period.is_zero() => Plan {
                every: (period / 3).clamp(Duration::from_millis(100), STATUS_EVERY),
                max_silence: (period / 2).max(Duration::from_secs(3)),
                ping: true,
            },
            _ => Plan {
                every: STATUS_EVERY,
                max_silence: Duration::from_secs(10),
                ping: false,
            },
        }
    }
}

/// The watchdog thread: pings while every loop beats, refreshes STATUS=, and
/// logs a wedged loop. Stops when dropped.
#[derive(Debug)]
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Start it with the plan from the environment (`WATCHDOG_USEC`).
    pub fn start(
        liveness: Arc<Liveness>,
        status: impl Fn() -> String + Send + 'static,
    ) -> std::io::Result<Watchdog> {
        let plan = Plan::new(sd_notify::watchdog_enabled());
        Watchdog::start_with(plan, liveness, status, Systemd)
    }

    /// Start it with an explicit plan, telling `sink` (tests capture it).
    pub fn start_with(
        plan: Plan,
        liveness: Arc<Liveness>,
        status: impl Fn() -> String + Send + 'static,
        sink: impl Sink + Send + 'static,
    ) -> std::io::Result<Watchdog> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || run(plan, &liveness, &status, &sink, &rx))?;
        Ok(Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the watchdog's messages go.
pub trait Sink {
    fn ping(&self);
    fn status(&self, status: &str);
    /// Whether anyone listens for STATUS= (skip building it otherwise).
    fn listening(&self) -> bool;
}

/// The service manager, through `NOTIFY_SOCKET`.
#[derive(Debug, Clone, Copy)]
pub struct Systemd;

impl Sink for Systemd {
    fn ping(&self) {
        notify::ping();
    }
    fn status(&self, status: &str) {
        notify::status(status);
    }
    fn listening(&self) -> bool {
        notify::enabled()
    }
}

fn run(
    plan: Plan,
    liveness: &Liveness,
    status: &dyn Fn() -> String,
    sink: &dyn Sink,
    stop: &mpsc::Receiver<()>,
) {
    let notifying = sink.listening();
    let mut last_status: Option<Instant> = None;
    let mut wedged = false;
    // Disconnected (the Watchdog dropped) ends the loop; a timeout is a tick.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(plan.every) {
        let stalled = liveness.stalled(Instant::now(), plan.max_silence);
        if stalled.is_empty() {
            if wedged {
                tracing::warn!("every event loop is running again");
                wedged = false;
            }
            if plan.ping {
                sink.ping();
            }
        } else if !wedged {
            wedged = true;
            tracing::error!(
                loops = ?stalled,
                silent_for_s = plan.max_silence.as_secs_f64(),
                "event loop wedged; no more watchdog pings (systemd restarts the service)"
            );
        }
        if notifying && last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            last_status = Some(Instant::now());
            sink.status(&status());
        }
    }
}

/// The runtimes a daemon runs on; it adds each as it builds it.
#[derive(Debug, Default)]
pub struct Runtimes(std::sync::Mutex<Vec<tokio::runtime::Handle>>);

impl Runtimes {
    pub fn add(&self, handle: tokio::runtime::Handle) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Tasks alive across every runtime added (spawned and not yet finished).
    pub fn alive_tasks(&self) -> usize {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|h| h.metrics().num_alive_tasks()).sum()
    }
}

pub mod signals {
    //! SIGTERM and SIGINT stop a daemon; SIGHUP asks it to reload.

    use tokio::signal::unix::{Signal, SignalKind, signal};

    /// What a signal asks for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Request {
        /// SIGTERM or SIGINT (the name).
        Stop(&'static str),
        /// SIGHUP.
        Reload,
    }

    /// The daemon's signal handlers, installed at once (so a signal that
    /// arrives before the first `next` is not lost and does not kill).
    #[derive(Debug)]
    pub struct Signals {
        term: Signal,
        int: Signal,
        hup: Signal,
    }

    impl Signals {
        pub fn install() -> std::io::Result<Signals> {
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }

        /// The next request.
        pub async fn next(&mut self) -> Request {
            tokio::select! {
                _ = self.term.recv() => Request::Stop("SIGTERM"),
                _ = self.int.recv() => Request::Stop("SIGINT"),
                _ = self.hup.recv() => Request::Reload,
            }
        }

        /// Wait for a stop request, calling `on_reload` for each SIGHUP on the way.
        pub async fn until_stop(&mut self, mut on_reload: impl FnMut()) -> &'static str {
            loop {
                match self.next().await {
                    Request::Stop(name) => return name,
                    Request::Reload => on_reload(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_count_the_tasks_alive_on_all_of_them() {
        let a = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let all = Runtimes::default();
        all.add(a.handle().clone());
        all.add(b.handle().clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = a.spawn(async move {
            let _ = rx.await;
        });
        let _idle = b.spawn(std::future::pending::<()>());
        assert_eq!(all.alive_tasks(), 2);
        tx.send(()).unwrap();
        a.block_on(waiting).unwrap();
        assert_eq!(all.alive_tasks(), 1);
    }

    #[test]
    fn a_slot_is_stalled_only_past_the_maximum_age() {
        assert_eq!(stalled_slots(&[1000, 500, 0], 1500, 1000), vec![2]);
        assert_eq!(stalled_slots(&[1000, 500], 1500, 1000), Vec::<usize>::new());
        // A beat "after" now (clock read order across threads) is fresh.
        assert_eq!(stalled_slots(&[2000], 1500, 0), Vec::<usize>::new());
    }

    #[test]
    fn the_plan_follows_watchdog_usec() {
        let p = Plan::new(Some(Duration::from_secs(30)));
        assert!(p.ping);
        assert_eq!(p.every, Duration::from_secs(5));
        assert_eq!(p.max_silence, Duration::from_secs(15));
        let p = Plan::new(Some(Duration::from_secs(3)));
        assert_eq!(p.every, Duration::from_secs(1));
        assert_eq!(p.max_silence, Duration::from_secs(3));
        let p = Plan::new(None);
        assert!(!p.ping);
        assert!(!Plan::new(Some(Duration::ZERO)).ping);
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<String>>>);

    impl Sink for Capture {
        fn ping(&self) {
            self.0.lock().unwrap().push("WATCHDOG=1".into());
        }
        fn status(&self, status: &str) {
            self.0.lock().unwrap().push(format!("STATUS={status}"));
        }
        fn listening(&self) -> bool {
            true
        }
    }

    impl Capture {
        fn pings(&self) -> usize {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|m| *m == "WATCHDOG=1")
                .count()
        }
        /// Wait (bounded) until `f` holds for the ping count.
        fn wait(&self, what: &str, mut f: impl FnMut(usize) -> bool) {
            let until = Instant::now() + Duration::from_secs(20);
            while !f(self.pings()) {
                assert!(Instant::now() < until, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// A real single-threaded event loop that beats, then blocks inside a task
    /// (the wedge) while the watchdog watches: the pings stop during the
    /// wedge and come back after it.
    #[test]
    fn a_wedged_event_loop_stops_the_pings_until_it_runs_again() {
        let liveness = Liveness::new(vec!["worker-0".into()]);
        let sink = Capture::default();
        let plan = Plan {
            every: Duration::from_millis(50),
            max_silence: Duration::from_millis(1500),
            ping: true,
        };
        let (wedge_tx, wedge_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let l = Arc::clone(&liveness);
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::spawn(l.heartbeat(0));
                let _ = wedge_rx.await;
                // The wedge: a blocking call on the event loop's own thread.
                std::thread::sleep(Duration::from_secs(4));
                let _ = tokio::time::timeout(Duration::from_secs(20), done_rx).await;
            });
        });
        let dog = Watchdog::start_with(plan, liveness, || "serving".into(), sink.clone()).unwrap();
        sink.wait("pings while the loop runs", |n| n >= 5);
        wedge_tx.send(()).unwrap();
        // Pings stop once the loop has been silent for max_silence...
        let mut last = sink.pings();
        let mut still = Instant::now();
        sink.wait("the pings to stop", |n| {
            if n != last {
                last = n;
                still = Instant::now();
            }
            still.elapsed() > Duration::from_millis(500)
        });
        let stopped_at = sink.pings();
        // ...and resume when it runs again (after the 4 s block).
        sink.wait("pings after the wedge", |n| n > stopped_at + 3);
        drop(dog);
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        let msgs = sink.0.lock().unwrap().clone();
        assert!(msgs.iter().any(|m| m == "STATUS=serving"), "{msgs:?}");
    }

    #[test]
    fn liveness_names_the_silent_loop() {
        let l = Liveness::new(vec!["worker-0".into(), "worker-1".into()]);
        let later = Instant::now() + Duration::from_secs(5);
        l.beat(0);
        assert_eq!(
            l.stalled(later, Duration::from_secs(3)),
            vec!["worker-0", "worker-1"]
        );
        assert!(l.stalled(Instant::now(), Duration::from_secs(3)).is_empty());
        l.beat(7); // no such slot: ignored
    }
}
