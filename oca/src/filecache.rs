//! Per-worker cache of open objects, so a hot object costs no open(2) per request.
//!
//! Each worker thread has its own cache (no lock, no cross-core traffic). Entries
//! are trusted for `valid` and then reopened, so an object replaced or removed on
//! disk stops being served within that time (as nginx's `open_file_cache_valid`).
//!
//! Each entry also counts its requests; the count goes to the store's access
//! statistics when the entry is reopened or evicted, so those statistics cost
//! the hot path one thread-local increment.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::store::{LookupError, OpenObject, Store};

thread_local! {
    static CACHE: RefCell<Option<LruCache<Box<str>, Entry>>> = const { RefCell::new(None) };
}

struct Entry {
    obj: Arc<OpenObject>,
    /// Requests served from this entry not yet reported to the store.
    hits: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The open object for `key`, from this thread's cache or freshly opened.
pub fn open(
    store: &Store,
    key: &str,
    capacity: usize,
    valid: Duration,
    now: Instant,
) -> Result<Arc<OpenObject>, LookupError> {
    CACHE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cache = slot.get_or_insert_with(|| {
            LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN))
        });
        let mut pending = 0;
        if let Some(e) = cache.get_mut(key) {
            if now.saturating_duration_since(e.obj.opened_at) < valid {
                e.hits += 1;
                return Ok(Arc::clone(&e.obj));
            }
            pending = e.hits;
        }
        let result = match store.open_object(key) {
            Ok(obj) => {
                let obj = Arc::new(obj);
                let entry = Entry {
                    obj: Arc::clone(&obj),
                    hits: 0,
                };
                if let Some((old_key, old)) = cache.push(key.into(), entry)
                    && *old_key != *key
                    && old.hits > 0
                {
                    store.note_access(&old_key, old.hits, unix_now());
                }
                pending += 1;
                Ok(obj)
            }
            Err(e) => {
                cache.pop(key);
                Err(e)
            }
        };
        if pending > 0 {
            store.note_access(key, pending, unix_now());
        }
        result
    })
}

/// Drop `key` from this thread's cache (e.g. the file turned out shorter than indexed).
pub fn forget(key: &str) {
    CACHE.with(|cell| {
        // Never called with the cache borrowed (from inside `open`); if it
        // were, the failed open pops the entry itself.
        if let Ok(mut slot) = cell.try_borrow_mut()
            && let Some(cache) = slot.as_mut()
        {
            cache.pop(key);
        }
    });
}
