//! The object store: one or more disk roots, and an in-memory index of the
//! committed objects on them.
//!
//! Layout of a disk root (documented in README):
//! - `<root>/objects/<key>`: committed objects, served at `/<key>`.
//! - `<root>/tmp/`: work in progress (the fill agent writes here and renames into
//!   `objects/`, so a partial object is never visible). Never served or indexed.
//!
//! Dot-files under `objects/` (e.g. rsync's `.name.XXXXXX` temporaries) are ignored.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{mime, sys};

/// Health of one disk root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// Indexed and serving.
    Ok,
    /// Root missing or unreadable at start; its objects are not served.
    Missing,
    /// I/O errors seen while serving (still tried, but reported).
    Degraded,
}

impl DiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Missing => "missing",
            DiskState::Degraded => "degraded",
        }
    }
    fn from_u8(v: u8) -> DiskState {
        match v {
            0 => DiskState::Ok,
            1 => DiskState::Missing,
            _ => DiskState::Degraded,
        }
    }
}

/// One disk root.
pub struct Disk {
    pub root: PathBuf,
    objects_path: PathBuf,
    /// Open directory handle of `<root>/objects`, the anchor for every lookup.
    objects_dir: Option<File>,
    state: AtomicU8,
    pub io_errors: AtomicU64,
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    /// Why the disk is missing, for /health.
    pub problem: Option<String>,
}

impl Disk {
    pub fn state(&self) -> DiskState {
        DiskState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// What the index knows about a committed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    disk: u16,
    size: u64,
}

/// An open object ready to serve: the file handle plus its validators, computed
/// once per open rather than per request.
#[derive(Debug)]
pub struct OpenObject {
    pub file: File,
    pub size: u64,
    pub modified: SystemTime,
    /// Strong entity-tag including quotes: `"<mtime hex>-<size hex>"` (as nginx).
    pub etag: Box<str>,
    /// IMF-fixdate of `modified`.
    pub last_modified: Box<str>,
    pub content_type: &'static str,
    pub disk: u16,
    pub opened_at: Instant,
}

/// Why a lookup did not produce an object.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no such object")]
    NotFound,
    #[error("disk {disk} I/O error: {source}")]
    Io { disk: u16, source: io::Error },
}

/// Summary of a start-up scan, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanReport {
    pub objects: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub elapsed: Duration,
}

/// Requests per rendition (directory) and when it was last requested, for the
/// fill agent's eviction order. Fed in batches from the per-worker open-file
/// caches, so the hot path never takes this lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub hits: u64,
    /// Unix seconds.
    pub last: u64,
}

/// The index of every disk's committed objects.
pub struct Store {
    pub disks: Vec<Disk>,
    index: RwLock<HashMap<Box<str>, IndexEntry>>,
    access: std::sync::Mutex<HashMap<Box<str>, Access>>,
}

/// One rendition as `/store/renditions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RenditionStats {
    pub rendition: String,
    pub objects: u64,
    pub bytes: u64,
    pub hits: u64,
    pub last_access: u64,
}

impl Store {
    /// Open every disk root and index what is committed there. A root that is
    /// missing or unreadable is logged and skipped; the rest keep serving.
    pub fn open(roots: &[PathBuf]) -> (Store, ScanReport) {
        let started = Instant::now();
        let mut disks: Vec<Disk> = roots.iter().map(|r| prepare_disk(r)).collect();
        // Scan disks in parallel: start-up time is bound by the slowest disk, not the sum.
        let scans: Vec<DiskScan> = std::thread::scope(|s| {
            let handles: Vec<_> = disks
                .iter()
                .map(|d| s.spawn(move || scan_disk(d)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut index = HashMap::with_capacity(scans.iter().map(|s| s.objects.len()).sum());
        let mut report = ScanReport::default();
        for (disk_no, DiskScan { objects, skipped }) in scans.into_iter().enumerate() {
            report.skipped += skipped;
            let disk = &mut disks[disk_no];
            for (key, size) in objects {
                if index.contains_key(&key) {
                    report.duplicates += 1;
                    tracing::warn!(key = %key, disk = %disk.root.display(), "object present on two disks; serving the first");
                    continue;
                }
                index.insert(
                    key,
                    IndexEntry {
                        disk: disk_no as u16,
                        size,
                    },
                );
                *disk.objects.get_mut() += 1;
                *disk.bytes.get_mut() += size;
                report.objects += 1;
                report.bytes += size;
            }
        }
        report.elapsed = started.elapsed();
        (
            Store {
                disks,
                index: RwLock::new(index),
                access: std::sync::Mutex::new(HashMap::new()),
            },
            report,
        )
    }

    /// Objects and bytes currently indexed, across all disks.
    pub fn totals(&self) -> (u64, u64) {
        self.disks.iter().fold((0, 0), |(o, b), d| {
            (
                o + d.objects.load(Ordering::Relaxed),
                b + d.bytes.load(Ordering::Relaxed),
            )
        })
    }

    /// What this appliance holds, per rendition: objects grouped by their parent
    /// directory (`titles/t1/v720/seg-1.m4s` belongs to `titles/t1/v720`), with
    /// counts and bytes, so the control plane can tell complete renditions from
    /// partial ones against its catalog.
    pub fn renditions(&self) -> Vec<control_client::wire::RenditionHolding> {
        let mut by: std::collections::BTreeMap<&str, (u64, u64)> =
            std::collections::BTreeMap::new();
        let index = self.read_index();
        for (key, e) in index.iter() {
            let Some((dir, _)) = key.rsplit_once('/') else {
                continue;
            };
            let slot = by.entry(dir).or_default();
            slot.0 += 1;
            slot.1 += e.size;
        }
        by.into_iter()
            .map(
                |(r, (objects, bytes))| control_client::wire::RenditionHolding {
                    rendition: r.to_owned(),
                    objects,
                    bytes,
                },
            )
            .collect()
    }

    /// Count `hits` requests for `key` at `now` (unix seconds).
    pub fn note_access(&self, key: &str, hits: u64, now: u64) {
        let Some((dir, _)) = key.rsplit_once('/') else {
            return;
        };
        let mut access = self.access.lock().unwrap_or_else(|p| p.into_inner());
        match access.get_mut(dir) {
            Some(a) => {
                a.hits += hits;
                a.last = a.last.max(now);
            }
            None => {
                access.insert(dir.into(), Access { hits, last: now });
            }
        }
    }

    /// Per-rendition holdings with their access statistics.
    pub fn rendition_stats(&self) -> Vec<RenditionStats> {
        let access = self
            .access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.renditions()
            .into_iter()
            .map(|r| {
                let a = access
                    .get(r.rendition.as_str())
                    .copied()
                    .unwrap_or_default();
                RenditionStats {
                    rendition: r.rendition,
                    objects: r.objects,
                    bytes: r.bytes,
                    hits: a.hits,
                    last_access: a.last,
                }
            })
            .collect()
    }

    /// Look `key` up on disk again: index it if it is there (a fill agent just
    /// committed it), drop it if not (evicted). Returns the size if present.
    pub fn refresh(&self, key: &str) -> Result<Option<u64>, LookupError> {
        self.forget(key);
        for disk_no in 0..self.disks.len() as u16 {
            match self.open_on(disk_no, key) {
                Ok(obj) => {
                    self.remember(key, disk_no, obj.size);
                    return Ok(Some(obj.size));
                }
                Err(LookupError::NotFound) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Total size of the filesystems holding the usable disk roots, each
    /// filesystem counted once.
    pub fn storage_bytes(&self) -> u64 {
        let mut seen = Vec::new();
        let mut total = 0u64;
        for d in self
            .disks
            .iter()
            .filter(|d| d.state() != DiskState::Missing)
        {
            let (Ok(st), Ok(vfs)) = (rustix::fs::stat(&d.root), rustix::fs::statvfs(&d.root))
            else {
                continue;
            };
            if !seen.contains(&st.st_dev) {
                seen.push(st.st_dev);
                total = total.saturating_add(vfs.f_blocks.saturating_mul(vfs.f_frsize));
            }
        }
        total
    }

    /// Whether the index holds `key` (no I/O).
    pub fn contains(&self, key: &str) -> bool {
        self.read_index().contains_key(key)
    }

    /// Open a committed object by key.
    ///
    /// Unknown keys are looked for on disk too, so objects an operator copies in
    /// after start are served (and indexed) without a restart; an indexed object
    /// that has disappeared is dropped from the index.
    pub fn open_object(&self, key: &str) -> Result<OpenObject, LookupError> {
        let entry = self.read_index().get(key).copied();
        match entry {
            Some(e) => match self.open_on(e.disk, key) {
                Ok(obj) => Ok(obj),
                Err(LookupError::NotFound) => {
                    self.forget(key);
                    Err(LookupError::NotFound)
                }
                Err(err) => Err(err),
            },
            None => {
                for disk_no in 0..self.disks.len() as u16 {
                    match self.open_on(disk_no, key) {
                        Ok(obj) => {
                            self.remember(key, disk_no, obj.size);
                            return Ok(obj);
                        }
                        Err(LookupError::NotFound) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(LookupError::NotFound)
            }
        }
    }

    /// Record an I/O error against a disk (e.g. sendfile failing with EIO).
    pub fn record_io_error(&self, disk: u16) {
        if let Some(d) = self.disks.get(disk as usize) {
            d.io_errors.fetch_add(1, Ordering::Relaxed);
            let _ = d.state.compare_exchange(
                DiskState::Ok as u8,
                DiskState::Degraded as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn open_on(&self, disk_no: u16, key: &str) -> Result<OpenObject, LookupError> {
        let disk = &self.disks[disk_no as usize];
        let Some(dir) = &disk.objects_dir else {
            return Err(LookupError::NotFound);
        };
        let file = match sys::open_beneath(dir, &disk.objects_path, key) {
            Ok(f) => f,
            Err(e) if sys::is_absent(&e) => return Err(LookupError::NotFound),
            Err(source) => {
                self.record_io_error(disk_no);
                return Err(LookupError::Io {
                    disk: disk_no,
                    source,
                });
            }
        };
        let meta = file.metadata().map_err(|source| {
            self.record_io_error(disk_no);
            LookupError::Io {
                disk: disk_no,
                source,
            }
        })?;
        if !meta.is_file() {
            return Err(LookupError::NotFound);
        }
        sys::advise_sequential(&file);
        let mtime_secs = meta.mtime().max(0) as u64;
        let modified = UNIX_EPOCH + Duration::from_secs(mtime_secs);
        Ok(OpenObject {
            etag: format!("\"{:x}-{:x}\"", mtime_secs, meta.len()).into_boxed_str(),
            last_modified: httpdate::fmt_http_date(modified).into_boxed_str(),
            content_type: mime::for_key(key),
            size: meta.len(),
            modified,
            file,
            disk: disk_no,
            opened_at: Instant::now(),
        })
    }

    fn remember(&self, key: &str, disk: u16, size: u64) {
        let mut index = self.write_index();
        if index
            .insert(key.into(), IndexEntry { disk, size })
            .is_none()
        {
            let d = &self.disks[disk as usize];
            d.objects.fetch_add(1, Ordering::Relaxed);
            d.bytes.fetch_add(size, Ordering::Relaxed);
        }
    }

    fn forget(&self, key: &str) {
        if let Some(e) = self.write_index().remove(key) {
            let d = &self.disks[e.disk as usize];
            d.objects.fetch_sub(1, Ordering::Relaxed);
            d.bytes.fetch_sub(e.size, Ordering::Relaxed);
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, IndexEntry>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // write is a single insert/remove), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, IndexEntry>> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn prepare_disk(root: &Path) -> Disk {
    let objects_path = root.join("objects");
    let mut problem = None;
    let objects_dir = match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {
            // Create the layout on a fresh disk; an existing one is left alone.
            for sub in ["objects", "tmp"] {
                let p = root.join(sub);
                if !p.exists()
                    && let Err(e) = std::fs::create_dir(&p)
                {
                    tracing::warn!(path = %p.display(), error = %e, "cannot create store directory");
                }
            }
            match File::open(&objects_path) {
                Ok(f) => Some(f),
                Err(e) => {
                    problem = Some(format!("cannot open {}: {e}", objects_path.display()));
                    None
                }
            }
        }
        Ok(_) => {
            problem = Some(format!("{} is not a directory", root.display()));
            None
        }
        Err(e) => {
            problem = Some(format!("cannot access {}: {e}", root.display()));
            None
        }
    };
    if let Some(p) = &problem {
        tracing::error!(root = %root.display(), problem = %p, "disk root skipped");
    }
    Disk {
        root: root.to_owned(),
        objects_path,
        state: AtomicU8::new(if objects_dir.is_some() {
            DiskState::Ok as u8
        } else {
            DiskState::Missing as u8
        }),
        objects_dir,
        io_errors: AtomicU64::new(0),
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        problem,
    }
}

/// What one disk's start-up walk found.
#[derive(Default)]
struct DiskScan {
    /// (key, size) of every committed object.
    objects: Vec<(Box<str>, u64)>,
    skipped: u64,
}

/// Walk `<root>/objects`, returning (key, size) for every regular file and the
/// number of entries skipped (dot-files, names that are not valid keys, symlinks
/// leading out of the root, unreadable entries).
fn scan_disk(disk: &Disk) -> DiskScan {
    let mut found = Vec::new();
    let mut skipped = 0;
    let Some(dir) = &disk.objects_dir else {
        return DiskScan::default();
    };
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        let path = disk.objects_path.join(&prefix);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable directory skipped");
                skipped += 1;
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped += 1;
                continue;
            };
            if name.starts_with('.') || !crate::path::is_valid_segment(name) {
                skipped += 1;
                continue;
            }
            let key = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(ft) = entry.file_type() else {
                skipped += 1;
                continue;
            };
            if ft.is_dir() {
                stack.push(key);
            } else if ft.is_file() {
                match entry.metadata() {
                    Ok(m) => found.push((key.into_boxed_str(), m.len())),
                    Err(_) => skipped += 1,
                }
            } else if ft.is_symlink() {
                // Only symlinks that resolve inside the root count; serving goes through
                // the same beneath-the-root open, so this keeps index and serving in step.
                match sys::open_beneath(dir, &disk.objects_path, &key).and_then(|f| f.metadata()) {
                    Ok(m) if m.is_file() => found.push((key.into_boxed_str(), m.len())),
                    _ => skipped += 1,
                }
            } else {
                skipped += 1;
            }
        }
    }
    DiskScan {
        objects: found,
        skipped,
    }
}
