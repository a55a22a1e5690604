//! What makes a playback heartbeat cheap: the plays being watched, in memory,
//! and their writes batched.
//!
//! A heartbeat from every active play every few seconds is many times the
//! rate of new plays, so it must cost far less than one. Two writes (the
//! stream's last sighting, the bookmark) and a read of the play's record per
//! heartbeat would cost about as much as a play (measured: a heartbeat at
//! 0.8 of a play's CPU, docs/BENCHMARKS.md). Instead:
//!
//! - **Plays in memory.** What a heartbeat needs of its play (whose it is,
//!   the profile and title its position belongs to, the client network and
//!   the pathways its samples may name) is kept per play id, put there when
//!   the play starts here or read once from the store when it started on
//!   another instance; bounded, least recently used dropped first.
//! - **Writes batched and thinned.** Sightings and positions wait in
//!   memory, one per play and one per (account, profile, title), and are
//!   written every `play.heartbeat_flush` in transactions of at most
//!   `CHUNK` rows (so a new play's write never waits behind a long one). A
//!   play's sighting is written only when the stored one is a quarter of
//!   `play.stream_timeout` old: that is all the stream limit needs, and it
//!   keeps the main store's writes (durable, one writer) to a small share of
//!   the heartbeats. A position goes to the bookmark store at the first
//!   flush after it arrives, then at most every `play.heartbeat_position_every`
//!   for the same title (later ones replace it while it waits): a resume a
//!   few seconds early costs the viewer nothing, and every write a flush
//!   makes is latency that plays arriving meanwhile share.
//! - **What must not wait does not.** `ended` ends the stream and saves the
//!   position before it is answered: the viewer may press play again right
//!   away, on any instance, and the stream must not count against the plan
//!   then. Ends are group-committed: those arriving while one transaction
//!   commits go together in the next, so a durable store's sync is paid per
//!   batch, not per play, and no end waits for a timer. A new play's resume
//!   position reads a waiting position first.
//!
//! A play ended elsewhere (a DELETE on another instance, the stream timing
//! out) is noticed when its sighting is next written (within a quarter of
//! `stream_timeout`) and the update does not find it active: it is dropped
//! from memory, so its next heartbeat reads the store and is answered 404.
//! At most `heartbeat_position_every` of positions is lost if the process
//! dies (a graceful stop writes them all); they are positions, rewritten by
//! the next heartbeat.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// What a heartbeat needs of its play.
#[derive(Debug, Clone, PartialEq)]
pub struct Watching {
    pub user: String,
    pub profile: String,
    pub title: String,
    /// The client the play was steered for (its network files the samples).
    pub client: Option<IpAddr>,
    /// The play's pathway ids (appliances, `origin`).
    pub pathways: Vec<String>,
}

/// A position waiting to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub user: String,
    pub profile: String,
    pub title: String,
    pub position: f64,
    pub at: u64,
}

/// Writes waiting for the next flush.
#[derive(Debug, Default)]
pub struct Pending {
    /// Play id → (user, last seen).
    pub seen: HashMap<String, (String, u64)>,
    /// (user, profile, title) → the latest position.
    pub marks: HashMap<(String, String, String), Mark>,
}

/// An end waiting for the next group commit, and who waits for it.
type EndRequest = (
    (String, String, u64),
    tokio::sync::oneshot::Sender<Result<bool, String>>,
);

/// Most ends in one transaction.
const MAX_ENDS: usize = 1024;
/// Most sightings or positions in one flush transaction.
const CHUNK: usize = 512;

/// A play in memory, and when its sighting was last queued for the store.
struct Entry {
    w: Arc<Watching>,
    touched: u64,
}

pub struct Beats {
    plays: Mutex<LruCache<String, Entry>>,
    /// A sighting is written when the stored one is this old (seconds).
    touch_every: u64,
    ends: tokio::sync::mpsc::UnboundedSender<EndRequest>,
    /// Taken by `end_loop` when the service runs.
    end_queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<EndRequest>>>,
    pending: Mutex<Pending>,
    /// A position is written at most this often per (account, profile,
    /// title), seconds.
    position_every: u64,
    /// (account, profile, title) → when its position was last taken for a
    /// write, while that is less than `position_every` ago.
    marked: Mutex<HashMap<(String, String, String), u64>>,
    /// The last flush of positions failed (heartbeats say `bookmarks` degraded).
    marks_failing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Beats {
    /// `stream_timeout`: a stream stops counting after this long unseen;
    /// `position_every`: a title's position is written at most this often.
    pub fn new(
        plays: usize,
        stream_timeout: std::time::Duration,
        position_every: std::time::Duration,
    ) -> Beats {
        let (ends, queue) = tokio::sync::mpsc::unbounded_channel();
        Beats {
            touch_every: (stream_timeout.as_secs() / 4).max(1),
            ends,
            end_queue: Mutex::new(Some(queue)),
            plays: Mutex::new(LruCache::new(
                NonZeroUsize::new(plays).unwrap_or(NonZeroUsize::MIN),
            )),
            pending: Mutex::default(),
            position_every: position_every.as_secs(),
            marked: Mutex::default(),
            marks_failing: AtomicBool::new(false),
        }
    }

    pub fn watching(&self, play: &str) -> Option<Arc<Watching>> {
        lock(&self.plays).get(play).map(|e| Arc::clone(&e.w))
    }

    /// A play to keep: `stored_at`, when the store last saw it (the play
    /// started now; 0: unknown).
    pub fn started(&self, play: &str, w: Watching, stored_at: u64) -> Arc<Watching> {
        let w = Arc::new(w);
        let e = Entry {
            w: Arc::clone(&w),
            touched: stored_at,
        };
        lock(&self.plays).put(play.to_owned(), e);
        w
    }

    /// Its sighting could not be written: the next heartbeat queues it again.
    pub fn untouch(&self, play: &str) {
        if let Some(e) = lock(&self.plays).get_mut(play) {
            e.touched = 0;
        }
    }

    /// The play ended (here, or a flush found it no longer active).
    pub fn forget(&self, play: &str) {
        lock(&self.plays).pop(play);
        lock(&self.pending).seen.remove(play);
    }

    /// A heartbeat's writes, for the next flush.
    pub fn seen(&self, play: &str, w: &Watching, position: Option<f64>, now: u64) {
        let due = match lock(&self.plays).get_mut(play) {
            Some(e) if now < e.touched.saturating_add(self.touch_every) => false,
            Some(e) => {
                e.touched = now;
                true
            }
            None => true,
        };
        if due {
            lock(&self.pending)
                .seen
                .insert(play.to_owned(), (w.user.clone(), now));
        }
        if let Some(position) = position {
            self.wait_position(w, position, now);
        }
    }

    /// `position` of `w`'s title waits for the next flush, replacing an
    /// older one.
    pub fn wait_position(&self, w: &Watching, position: f64, now: u64) {
        let key = (w.user.clone(), w.profile.clone(), w.title.clone());
        let mark = Mark {
            user: w.user.clone(),
            profile: w.profile.clone(),
            title: w.title.clone(),
            position,
            at: now,
        };
        lock(&self.pending).marks.insert(key, mark);
    }

    /// Drops a waiting position (a newer one was written at once).
    pub fn written(&self, user: &str, profile: &str, title: &str) {
        let key = (user.to_owned(), profile.to_owned(), title.to_owned());
        lock(&self.pending).marks.remove(&key);
    }

    /// A position not yet written, newer than the store's.
    pub fn waiting_position(&self, user: &str, profile: &str, title: &str) -> Option<f64> {
        let key = (user.to_owned(), profile.to_owned(), title.to_owned());
        lock(&self.pending).marks.get(&key).map(|m| m.position)
    }

    /// What is due at `now`, for a flush: every sighting, and each position
    /// whose title's last was taken `position_every` ago or more (all of
    /// them if `all`: a stopping service writes everything).
    pub fn take(&self, now: u64, all: bool) -> Pending {
        let mut pending = lock(&self.pending);
        let mut marked = lock(&self.marked);
        let every = self.position_every;
        marked.retain(|_, at| now < at.saturating_add(every));
        let due: HashMap<_, _> = pending
            .marks
            .extract_if(|key, _| all || !marked.contains_key(key))
            .collect();
        for key in due.keys() {
            marked.insert(key.clone(), now);
        }
        Pending {
            seen: std::mem::take(&mut pending.seen),
            marks: due,
        }
    }

    /// Puts back positions a failed flush could not write, unless newer
    /// ones arrived meanwhile.
    pub fn retry_marks(&self, marks: HashMap<(String, String, String), Mark>) {
        let mut p = lock(&self.pending);
        let mut marked = lock(&self.marked);
        for (k, m) in marks {
            // Not written: due again at the next flush.
            marked.remove(&k);
            p.marks.entry(k).or_insert(m);
        }
    }

    pub fn set_marks_failing(&self, failing: bool) {
        self.marks_failing.store(failing, Ordering::Relaxed);
    }

    pub fn marks_failing(&self) -> bool {
        self.marks_failing.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn plays(&self) -> usize {
        lock(&self.plays).len()
    }
}

/// Ends `play` (of `user`) in the next group commit; Ok(false) if it was
/// not an active stream of theirs.
pub async fn end(
    viewers: &super::Viewers,
    play: &str,
    user: &str,
    now: u64,
) -> Result<bool, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = ((play.to_owned(), user.to_owned(), now), tx);
    if viewers.beats.ends.send(req).is_err() {
        return Err("the service is stopping".into());
    }
    rx.await
        .unwrap_or_else(|_| Err("the service is stopping".into()))
}

/// Group commit of ends: takes every end waiting, writes them in one
/// transaction, answers each; until `stop`.
pub async fn end_loop(viewers: Arc<super::Viewers>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(mut queue) = lock(&viewers.beats.end_queue).take() else {
        return;
    };
    let mut batch: Vec<EndRequest> = Vec::new();
    loop {
        tokio::select! {
            n = queue.recv_many(&mut batch, MAX_ENDS) => if n == 0 { return },
            _ = stop.changed() => return,
        }
        let ends: Vec<(String, String, u64)> = batch.iter().map(|(e, _)| e.clone()).collect();
        let result = viewers.store.end_streams(&ends).await;
        for (end, (_, reply)) in ends.iter().zip(batch.drain(..)) {
            let _ = reply.send(match &result {
                Ok(missed) => Ok(!missed.contains(&end.0)),
                Err(e) => Err(e.to_string()),
            });
        }
    }
}

/// Writes what heartbeats left waiting, every `every`, and once more when
/// `stop` turns true (a graceful stop loses no position).
pub async fn flush_loop(
    viewers: Arc<super::Viewers>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        flush(&viewers, crate::unix_now(), stopping).await;
        if stopping {
            return;
        }
    }
}

/// One flush: sightings of streams, then the positions due (all of them if
/// `all`), in transactions of at most `CHUNK` rows.
pub async fn flush(viewers: &super::Viewers, now: u64, all: bool) {
    let beats = &viewers.beats;
    let pending = beats.take(now, all);
    let seen: Vec<(String, String, u64)> = pending
        .seen
        .into_iter()
        .map(|(play, (user, at))| (play, user, at))
        .collect();
    for chunk in seen.chunks(CHUNK) {
        match viewers.store.touch_streams(chunk).await {
            Ok(gone) => {
                for play in gone {
                    beats.forget(&play);
                }
            }
            // Due again at the play's next heartbeat; a stream only stops
            // counting after `stream_timeout` without a sighting.
            Err(e) => {
                tracing::warn!(error = %e, plays = chunk.len(), "cannot save heartbeats' sightings");
                for (play, _, _) in chunk {
                    beats.untouch(play);
                }
            }
        }
    }
    let marks: Vec<Mark> = pending.marks.values().cloned().collect();
    let mut failed = false;
    for chunk in marks.chunks(CHUNK) {
        if let Err(e) = viewers.bookmarks.put_many(chunk).await {
            tracing::warn!(error = %e, positions = chunk.len(), "cannot save heartbeats' positions");
            failed = true;
            break;
        }
    }
    if failed {
        beats.retry_marks(pending.marks);
    }
    if !marks.is_empty() {
        beats.set_marks_failing(failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watching(user: &str) -> Watching {
        Watching {
            user: user.into(),
            profile: "main".into(),
            title: "t1".into(),
            client: None,
            pathways: vec!["oca-a1".into()],
        }
    }

    fn beats(plays: usize) -> Beats {
        let s = std::time::Duration::from_secs;
        Beats::new(plays, s(120), s(10))
    }

    #[test]
    fn heartbeats_coalesce_into_one_write_per_play_and_position() {
        let b = beats(10);
        let w = b.started("p1", watching("u"), 0);
        for (i, pos) in [1.0, 5.0, 9.0].into_iter().enumerate() {
            b.seen("p1", &w, Some(pos), 100 + i as u64);
        }
        b.seen("p2", &watching("v"), None, 103);
        assert_eq!(b.waiting_position("u", "main", "t1"), Some(9.0));
        let p = b.take(103, false);
        assert_eq!(p.seen.len(), 2);
        assert_eq!(
            p.seen["p1"],
            ("u".to_owned(), 100),
            "the first due sighting"
        );
        assert_eq!(p.marks.len(), 1, "one position per account, profile, title");
        assert_eq!(b.waiting_position("u", "main", "t1"), None, "taken");
        // A failed write comes back, unless a newer position arrived.
        b.seen("p1", &w, Some(12.0), 110);
        b.retry_marks(p.marks);
        assert_eq!(b.waiting_position("u", "main", "t1"), Some(12.0));
        // Not written, so due again at once.
        assert_eq!(b.take(111, false).marks.len(), 1);
    }

    #[test]
    fn a_titles_position_is_written_at_most_every_position_every() {
        let b = beats(10);
        let w = b.started("p1", watching("u"), 0);
        b.seen("p1", &w, Some(1.0), 100);
        assert_eq!(b.take(100, false).marks.len(), 1, "the first at once");
        b.seen("p1", &w, Some(6.0), 105);
        assert!(b.take(105, false).marks.is_empty(), "5 s later: waits");
        assert_eq!(b.waiting_position("u", "main", "t1"), Some(6.0));
        b.seen("p1", &w, Some(9.0), 108);
        let p = b.take(110, false);
        assert_eq!(p.marks.len(), 1, "due 10 s after the last");
        assert_eq!(p.marks.values().next().unwrap().position, 9.0, "the latest");
        // Another title of the same profile is not held back by this one.
        let mut other = watching("u");
        other.title = "t2".into();
        b.seen("p2", &other, Some(3.0), 111);
        b.seen("p1", &w, Some(12.0), 111);
        let p = b.take(111, false);
        assert_eq!(p.marks.len(), 1);
        assert!(
            p.marks
                .contains_key(&("u".into(), "main".into(), "t2".into()))
        );
        // A stopping service writes what waits.
        assert_eq!(b.take(112, true).marks.len(), 1);
    }

    #[test]
    fn a_sighting_is_written_once_a_quarter_of_the_stream_timeout() {
        let b = beats(10);
        // Started at 100: the store saw it then.
        let w = b.started("p1", watching("u"), 100);
        for now in [105, 110, 129] {
            b.seen("p1", &w, Some(1.0), now);
        }
        assert!(
            b.take(129, false).seen.is_empty(),
            "the stored sighting is fresh enough"
        );
        b.seen("p1", &w, Some(1.0), 130);
        b.seen("p1", &w, Some(1.0), 135);
        assert_eq!(
            b.take(135, false).seen["p1"],
            ("u".to_owned(), 130),
            "due at 100 + 30"
        );
        // A failed write is due again at the next heartbeat.
        b.untouch("p1");
        b.seen("p1", &w, None, 136);
        assert_eq!(b.take(136, false).seen.len(), 1);
    }

    #[test]
    fn plays_are_bounded_and_forgotten() {
        let b = beats(2);
        for id in ["a", "b", "c"] {
            b.started(id, watching("u"), 0);
        }
        assert_eq!(b.plays(), 2);
        assert!(b.watching("a").is_none(), "least recently used dropped");
        b.seen("c", &watching("u"), None, 1);
        b.forget("c");
        assert!(b.watching("c").is_none());
        assert!(
            b.take(1, false).seen.is_empty(),
            "a forgotten play's sighting is not written"
        );
    }
}
