//! What the store said recently, for when it cannot answer (a database
//! outage, a failover in progress): plays for accounts seen within
//! `play.outage_grace` go ahead from memory, marked `"degraded": ["store"]`.
//! Only reads are recalled. A stream started meanwhile is kept here (so its
//! manifests and content steering are served by this instance) and written
//! once the store is back; the stream limit cannot be checked until then,
//! which is the price of keeping playback up.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::store::{StreamRow, UserRow};
use crate::store::{StoreError, TitleRecord};

pub struct Recall {
    grace: Duration,
    users: Mutex<LruCache<String, (UserRow, Instant)>>,
    profiles: Mutex<LruCache<String, (Vec<(String, String)>, Instant)>>,
    titles: Mutex<LruCache<String, (TitleRecord, Instant)>>,
    /// Streams started while the store was unreachable: (row, region).
    unsaved: Mutex<LruCache<String, (StreamRow, String)>>,
}

const ACCOUNTS: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();
const TITLES: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();
const UNSAVED: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read through the store, remembered when it answers and recalled (if
/// fresh) when it cannot be reached: the value, and whether it came from
/// memory.
fn through<T: Clone>(
    cache: &Mutex<LruCache<String, (T, Instant)>>,
    grace: Duration,
    key: &str,
    read: Result<T, StoreError>,
) -> Result<(T, bool), StoreError> {
    match read {
        Ok(v) => {
            lock(cache).put(key.to_owned(), (v.clone(), Instant::now()));
            Ok((v, false))
        }
        Err(e) if e.is_unavailable() => match lock(cache).get(key) {
            Some((v, at)) if at.elapsed() < grace => Ok((v.clone(), true)),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

impl Recall {
    pub fn new(grace: Duration) -> Recall {
        Recall {
            grace,
            users: Mutex::new(LruCache::new(ACCOUNTS)),
            profiles: Mutex::new(LruCache::new(ACCOUNTS)),
            titles: Mutex::new(LruCache::new(TITLES)),
            unsaved: Mutex::new(LruCache::new(UNSAVED)),
        }
    }

    /// The account of a (hashed) viewer token. Only found accounts are
    /// remembered: an unknown token is never let in from memory.
    pub fn user(
        &self,
        token_sha256: &str,
        read: Result<Option<UserRow>, StoreError>,
    ) -> Result<(Option<UserRow>, bool), StoreError> {
        match read {
            Ok(None) => {
                lock(&self.users).pop(token_sha256);
                Ok((None, false))
            }
            Ok(Some(u)) => {
                through(&self.users, self.grace, token_sha256, Ok(u)).map(|(u, m)| (Some(u), m))
            }
            Err(e) => {
                through(&self.users, self.grace, token_sha256, Err(e)).map(|(u, m)| (Some(u), m))
            }
        }
    }

    pub fn profiles(
        &self,
        user: &str,
        read: Result<Vec<(String, String)>, StoreError>,
    ) -> Result<(Vec<(String, String)>, bool), StoreError> {
        through(&self.profiles, self.grace, user, read)
    }

    /// A title read within `max_age`, without asking the store: a play
    /// needs its title, the same few titles are played over and over, and
    /// catalog imports are rare (one is seen within `max_age`).
    pub fn recent_title(&self, id: &str, max_age: Duration) -> Option<TitleRecord> {
        lock(&self.titles)
            .get(id)
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(t, _)| t.clone())
    }

    pub fn title(
        &self,
        id: &str,
        read: Result<Option<TitleRecord>, StoreError>,
    ) -> Result<(Option<TitleRecord>, bool), StoreError> {
        match read {
            Ok(None) => Ok((None, false)),
            Ok(Some(t)) => through(&self.titles, self.grace, id, Ok(t)).map(|(t, m)| (Some(t), m)),
            Err(e) => through(&self.titles, self.grace, id, Err(e)).map(|(t, m)| (Some(t), m)),
        }
    }

    /// Keep a stream the store could not take, to serve and to write later.
    pub fn keep_unsaved(&self, row: StreamRow, region: String) {
        lock(&self.unsaved).put(row.id.clone(), (row, region));
    }

    /// A stream kept here, not yet in the store.
    pub fn unsaved(&self, id: &str) -> Option<StreamRow> {
        lock(&self.unsaved).peek(id).map(|(r, _)| r.clone())
    }

    /// Forget an unsaved stream (it ended); whether it was here.
    pub fn drop_unsaved(&self, id: &str, user: &str) -> bool {
        let mut unsaved = lock(&self.unsaved);
        if unsaved.peek(id).is_some_and(|(r, _)| r.user == user) {
            unsaved.pop(id);
            true
        } else {
            false
        }
    }

    /// Every unsaved stream, oldest first, for writing.
    pub fn all_unsaved(&self) -> Vec<(StreamRow, String)> {
        lock(&self.unsaved)
            .iter()
            .rev()
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Write unsaved streams once the store takes them again, every second
/// until `stop` turns true. Each is recorded as started (and as a play for
/// popularity) without the stream limit: it is already playing.
pub async fn save_loop(
    viewers: std::sync::Arc<super::Viewers>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for (row, region) in viewers.recall.all_unsaved() {
            match viewers.store.start_stream(&row, &region, u32::MAX, 0).await {
                Ok(_) => {
                    lock(&viewers.recall.unsaved).pop(&row.id);
                    tracing::info!(play = %row.id, "stream started during the store outage saved");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "store still not taking unsaved streams");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRow {
        UserRow {
            id: id.into(),
            plan: "basic".into(),
            subscription: "active".into(),
            country: "NL".into(),
            region: "eu".into(),
        }
    }

    #[test]
    fn only_fresh_answers_are_recalled_and_only_in_an_outage() {
        let r = Recall::new(Duration::from_secs(600));
        let down = || Err(StoreError::Unavailable("down".into()));
        // Never seen: the outage is an error.
        assert!(r.user("h", down()).is_err());
        assert_eq!(
            r.user("h", Ok(Some(user("u")))).unwrap(),
            (Some(user("u")), false)
        );
        assert_eq!(r.user("h", down()).unwrap(), (Some(user("u")), true));
        // Other failures are not papered over.
        assert!(r.user("h", Err(StoreError::Corrupt("x".into()))).is_err());
        // A token the store no longer knows is forgotten at once.
        assert_eq!(r.user("h", Ok(None)).unwrap(), (None, false));
        assert!(r.user("h", down()).is_err());
        // Stale entries are not recalled (with no grace, every one is stale).
        let r = Recall::new(Duration::ZERO);
        r.user("h", Ok(Some(user("u")))).unwrap();
        assert!(r.user("h", down()).is_err());
    }
}
