//! Per-worker cache of open objects, so a hot object costs no open(2) per request.
//!
//! Each worker thread has its own cache (no lock, no cross-core traffic). Entries
//! are trusted for `valid` and then reopened, so an object replaced or removed on
//! disk stops being served within that time (as nginx's `open_file_cache_valid`).

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::store::{LookupError, OpenObject, Store};

thread_local! {
    static CACHE: RefCell<Option<LruCache<Box<str>, Arc<OpenObject>>>> = const { RefCell::new(None) };
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
        if let Some(obj) = cache.get(key)
            && now.saturating_duration_since(obj.opened_at) < valid
        {
            return Ok(Arc::clone(obj));
        }
        match store.open_object(key) {
            Ok(obj) => {
                let obj = Arc::new(obj);
                cache.put(key.into(), Arc::clone(&obj));
                Ok(obj)
            }
            Err(e) => {
                cache.pop(key);
                Err(e)
            }
        }
    })
}

/// Drop `key` from this thread's cache (e.g. the file turned out shorter than indexed).
pub fn forget(key: &str) {
    CACHE.with(|cell| {
        if let Some(cache) = cell.borrow_mut().as_mut() {
            cache.pop(key);
        }
    });
}
